"""`make bench`: dagma vs dagster-mlflow vs the raw MlflowClient, side by side in one run.

Against a real local MLflow server started for the run, every contender doing the
same logging in one asset (see :mod:`benchmarks.contenders`):

- HTTP requests per materialization, by endpoint: the first in a fresh process and
  a later one;
- wall time per materialization: all contenders in one process, repetitions
  alternating the order, medians with min/max; the tracking overhead (each
  contender minus the asset that logs nothing; dagma's as tracking minus stub) and
  dagma's overhead relative to the raw client's;
- a training loop logging POINTS metric values with steps: requests and time;
- cold start: ``import dagma.definitions`` (tracking on) vs ``import dagster``;
- how long an unreachable server takes to fail: dagma vs MLflow's default policy;
- dagma against a server with MLflow's basic auth and one without: requests and wall time
  per materialization (:mod:`benchmarks.auth`);
- requests per Dagster run of three steps, by endpoint: dagma's parent and nested runs
  against dagster-mlflow's grouping, in process and multiprocess (:mod:`benchmarks.parent_runs`).

``python -m benchmarks`` writes ``benchmarks/results.json`` and prints a table;
``--smoke`` runs every part once on a small loop (for the test suite).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results.json"
ROOT = Path(__file__).parent.parent
DEFAULT_POLICY_LIMIT_SECONDS = 30
# Telemetry would reach outside this machine; the benchmark talks to 127.0.0.1 only.
os.environ.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")

from benchmarks import auth, cold_start, parent_runs  # noqa: E402
from benchmarks.contenders import (  # noqa: E402
    CONTENDERS,
    EXPERIMENT,
    QUIET,
    TRACKED,
    build_job,
    materialize_once,
)
from benchmarks.http_count import counting_requests  # noqa: E402
from dagma.dev import local_mlflow  # noqa: E402


def _spread(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def _alternating(names: tuple[str, ...], repeats: int) -> list[list[str]]:
    """Each repetition runs every name once, starting one further along each time."""
    return [[names[(i + r) % len(names)] for i in range(len(names))] for r in range(repeats)]


def requests_per_materialization(tracking_uri: str, points: int | None = None) -> dict:
    """First and later materialization of each tracked contender, each in a fresh process."""
    counts = {}
    for contender in TRACKED:
        command = [sys.executable, "-m", "benchmarks.first_in_process", contender, tracking_uri]
        out = subprocess.run(
            command + ([str(points)] if points else []),
            cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        by_endpoint = json.loads(out.stdout.strip().splitlines()[-1])
        counts[contender] = {
            **by_endpoint,
            "first_total": sum(by_endpoint["first"].values()),
            "later_total": sum(by_endpoint["later"].values()),
        }
    return counts


def wall_times(tracking_uri: str, repeats: int) -> dict:
    """Seconds per materialization of every contender, alternating, in this process."""
    jobs = {name: build_job(name, tracking_uri) for name in CONTENDERS}
    for job in jobs.values():
        materialize_once(job)  # warm: imports, experiment lookups, first-run caches
    samples: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for order in _alternating(CONTENDERS, repeats):
        for name in order:
            started = time.perf_counter()
            materialize_once(jobs[name])
            samples[name].append(time.perf_counter() - started)
    seconds = {name: _spread(times) for name, times in samples.items()}
    median = {name: s["median"] for name, s in seconds.items()}
    overhead = {
        "dagma": median["dagma"] - median["stub"],
        "dagster_mlflow": median["dagster_mlflow"] - median["nothing"],
        "raw_client": median["raw_client"] - median["nothing"],
    }
    return {
        "seconds": seconds,
        "overhead_seconds": overhead,
        "dagma_overhead_vs_raw": overhead["dagma"] / overhead["raw_client"],
        "repeats": repeats,
    }


def metric_loop(tracking_uri: str, points: int, repeats: int) -> dict:
    """A loop logging ``points`` metric values with steps, through each contender."""
    jobs = {name: build_job(name, tracking_uri, points) for name in TRACKED}
    samples: dict[str, list[float]] = {name: [] for name in TRACKED}
    requests: dict[str, int] = {}
    for order in _alternating(TRACKED, repeats):
        for name in order:
            with counting_requests(tracking_uri) as counted:
                started = time.perf_counter()
                materialize_once(jobs[name])
                samples[name].append(time.perf_counter() - started)
            requests[name] = sum(counted.values())
    seconds = {name: _spread(times) for name, times in samples.items()}
    return {
        "points": points,
        "seconds": seconds,
        "requests": requests,
        "raw_client_over_dagma": seconds["raw_client"]["median"] / seconds["dagma"]["median"],
        "repeats": repeats,
    }


def unreachable_failure(limit: float) -> dict:
    """Seconds to fail against a closed port: dagma vs the MLflow client's default policy."""
    closed = f"http://127.0.0.1:{local_mlflow.free_port()}"
    job = build_job("dagma", closed)
    started = time.perf_counter()
    result = job.execute_in_process(run_config=QUIET, raise_on_error=False)
    dagma_seconds = time.perf_counter() - started
    assert not result.success
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP")}
    script = (
        f"from mlflow import MlflowClient; MlflowClient({closed!r}).get_experiment_by_name('x')"
    )
    started = time.perf_counter()
    try:
        subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=limit)
        default_seconds: float | None = time.perf_counter() - started
    except subprocess.TimeoutExpired:
        default_seconds = None
    return {
        "dagma": dagma_seconds,
        "mlflow_default": default_seconds,
        "mlflow_default_limit": limit,
    }


def machine() -> dict:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    ) if Path("/proc/cpuinfo").exists() else platform.processor()  # fmt: skip
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def run(smoke: bool, output: Path, tracking_uri: str | None = None) -> dict:
    """Every measurement, against ``tracking_uri`` or a server started for the run."""
    repeats, loop_points, loop_repeats = (1, 50, 1) if smoke else (7, 10_000, 3)
    results: dict = {"machine": machine(), "smoke": smoke}
    if tracking_uri is None:
        print("==> starting a local MLflow server for the benchmark", flush=True)
        server = local_mlflow.start(Path(tempfile.mkdtemp(prefix="dagma-bench-")))
    else:
        server = local_mlflow.LocalMlflowServer(url=tracking_uri, data_dir=None, process=None)
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=server.url)
        if client.get_experiment_by_name(EXPERIMENT) is None:
            client.create_experiment(EXPERIMENT)
        print("==> requests per materialization (fresh processes)", flush=True)
        results["requests_per_materialization"] = requests_per_materialization(server.url)
        print(f"==> wall time per materialization, {repeats} alternating rounds", flush=True)
        results["materialization"] = wall_times(server.url, repeats)
        print(f"==> a loop logging {loop_points} metric values, {loop_repeats}x", flush=True)
        results["metric_loop"] = metric_loop(server.url, loop_points, loop_repeats)
        print("==> cold start (fresh interpreters)", flush=True)
        results["cold_start"] = cold_start.measure(1 if smoke else 5)
        print("==> requests per Dagster run of three steps (fresh processes)", flush=True)
        results["parent_runs"] = parent_runs.measure(server.url, 1 if smoke else 3)
        print("==> failing against a closed port", flush=True)
        results["unreachable_failure_seconds"] = unreachable_failure(
            3 if smoke else DEFAULT_POLICY_LIMIT_SECONDS
        )
    finally:
        server.stop()
    print("==> basic auth on and off (two servers started for it)", flush=True)
    results["basic_auth"] = auth.measure(2 if smoke else 15)
    output.write_text(json.dumps(results, indent=2) + "\n")
    return results


def _ms(spread: dict[str, float]) -> str:
    low, high = spread["min"] * 1000, spread["max"] * 1000
    return f"{spread['median'] * 1000:.0f} ms ({low:.0f}–{high:.0f})"


def table(results: dict) -> str:
    """The results as the Markdown table the README shows."""
    req, mat = results["requests_per_materialization"], results["materialization"]
    loop, cold = results["metric_loop"], results["cold_start"]
    names = {"dagma": "dagma", "dagster_mlflow": "dagster-mlflow", "raw_client": "raw MlflowClient"}
    rows = [
        "| | " + " | ".join(names.values()) + " |",
        "|---|" + "---|" * len(names),
        "| requests, first materialization in a process | "
        + " | ".join(str(req[n]["first_total"]) for n in names) + " |",
        "| requests, later materializations | "
        + " | ".join(str(req[n]["later_total"]) for n in names) + " |",
        "| wall time per materialization, median (min–max) | "
        + " | ".join(_ms(mat["seconds"][n]) for n in names) + " |",
        "| overhead (dagma: tracking − stub; others: − an asset logging nothing) | "
        + " | ".join(f"{mat['overhead_seconds'][n] * 1000:+.0f} ms" for n in names) + " |",
        f"| {loop['points']:,} metric points: requests | "
        + " | ".join(str(loop["requests"][n]) for n in names) + " |",
        f"| {loop['points']:,} metric points: time, median | "
        + " | ".join(f"{loop['seconds'][n]['median']:.2f} s" for n in names) + " |",
    ]  # fmt: skip
    seconds = cold["seconds"]
    rows += [
        "",
        f"- dagma's tracking overhead (tracking − stub) vs the raw client's: "
        f"{mat['dagma_overhead_vs_raw']:.2f}× (goal ≤ 1.2×)",
        f"- {loop['points']:,}-point loop, raw client time / dagma time: "
        f"{loop['raw_client_over_dagma']:.1f}× (goal ≥ 20×)",
        f"- cold start, `import dagma.definitions` (tracking on) / `import dagster`: "
        f"{seconds['dagma.definitions']['median']:.2f} s / {seconds['dagster']['median']:.2f} s"
        f" = {cold['ratio']:.2f}× (goal ≤ 1.15×); mlflow imported: "
        f"{cold['mlflow_imported_by_dagma_definitions']}",
    ]  # fmt: skip
    basic = results["basic_auth"]
    rows += [
        f"- dagma with MLflow's basic auth on / off: requests first "
        f"{basic['requests']['on']['first_total']} / {basic['requests']['off']['first_total']}, "
        f"later {basic['requests']['on']['later_total']} / "
        f"{basic['requests']['off']['later_total']}; wall time per materialization, median "
        f"{_ms(basic['seconds']['on'])} / {_ms(basic['seconds']['off'])} = "
        f"{basic['on_over_off']:.2f}×",
    ]  # fmt: skip
    if "parent_runs" in results:
        rows += ["", *parent_runs.table(results["parent_runs"])]
    endpoints = sorted({e for n in names for w in ("first", "later") for e in req[n][w]})
    rows += [
        "",
        "| requests by endpoint (first / later) | " + " | ".join(names.values()) + " |",
        "|---|" + "---|" * len(names),
    ]
    rows += [
        f"| `{e}` | "
        + " | ".join(f"{req[n]['first'].get(e, 0)} / {req[n]['later'].get(e, 0)}" for n in names)
        + " |"
        for e in endpoints
    ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every part once, a small loop")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON")
    parser.add_argument("--tracking-uri", help="an MLflow server to use instead of starting one")
    args = parser.parse_args()
    results = run(args.smoke, args.output, args.tracking_uri)
    fail = results["unreachable_failure_seconds"]
    default = (
        f"{fail['mlflow_default']:.1f} s" if fail["mlflow_default"] is not None
        else f"> {fail['mlflow_default_limit']} s (cut off)"
    )  # fmt: skip
    print()
    print(table(results))
    print(f"- closed port: dagma fails in {fail['dagma']:.1f} s, MLflow's default policy {default}")
    m = results["machine"]
    load = ", ".join(f"{x:.1f}" for x in m["load_average_at_start"])
    print(f"- machine: {m['cpu']}, {m['cpus']} CPUs, load average at start {load}")
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
