"""`make bench`: stub vs MLflow tracking, side by side in one run, with counts where they exist.

Measures, against a real local MLflow server started for the run:
- importing the code location with tracking off vs on (fresh interpreters);
- one in-process materialization of ``train_model_stub`` with the stub vs the tracking
  resource (median of several), and the HTTP requests the tracking resource makes;
- how long an unreachable server takes to fail with dagma's check vs the MLflow
  client's default retry policy (bounded: the default is cut off after a limit).
Results are printed and written to ``benchmarks/results.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dagma import devserver

REPEATS = 5
DEFAULT_POLICY_LIMIT_SECONDS = 30
RESULTS = Path(__file__).parent / "results.json"
# Dagster's console logger off: its output is not what is measured, and an expected
# failure would print a stack trace.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def _timed(fn: Callable[[], object], repeats: int = REPEATS) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def _import_seconds(tracking: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_USE_TRACKING=tracking, MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    script = (
        "import time; t = time.perf_counter(); import dagma.definitions, sys; "
        "'mlflow' in sys.modules or __import__('mlflow'); print(time.perf_counter() - t)"
    )
    if tracking == "false":
        script = script.replace(" or __import__('mlflow')", "")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    return float(out.stdout.strip())


def _count_requests(fn: Callable[[], object]) -> int:
    """HTTP requests made while ``fn`` runs (counted at requests' session, not mocked)."""
    import requests

    count = 0
    original = requests.Session.send

    def counting(self, request, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal count
        count += 1
        return original(self, request, **kwargs)

    requests.Session.send = counting  # type: ignore[method-assign]
    try:
        fn()
    finally:
        requests.Session.send = original  # type: ignore[method-assign]
    return count


def _mlflow_default_failure_seconds(url: str) -> float | None:
    """Seconds the MLflow client's default policy takes on a closed port, None past the limit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP")}
    script = f"from mlflow import MlflowClient; MlflowClient({url!r}).get_experiment_by_name('x')"
    started = time.perf_counter()
    try:
        subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                       timeout=DEFAULT_POLICY_LIMIT_SECONDS)  # fmt: skip
    except subprocess.TimeoutExpired:
        return None
    return time.perf_counter() - started


def main() -> None:
    from dagster import materialize

    from dagma.defs.models.assets import train_model_stub
    from dagma.defs.models.resources import MlflowStubResource, MlflowTrackingResource

    print("==> starting a local MLflow server for the benchmark", flush=True)
    server = devserver.start(Path(tempfile.mkdtemp(prefix="dagma-bench-")))
    try:
        results: dict[str, object] = {}
        print("==> importing the code location (fresh interpreters)", flush=True)
        stub_import = min(_import_seconds("false") for _ in range(3))  # min: least disturbed
        tracking_import = min(_import_seconds("true") for _ in range(3))
        results["import_seconds"] = {"stub": stub_import, "tracking": tracking_import,
                                     "ratio": tracking_import / stub_import}  # fmt: skip

        print(f"==> materializing train_model_stub {REPEATS}x with each resource", flush=True)
        stub = MlflowStubResource()
        closed = f"http://127.0.0.1:{devserver.free_port()}"
        unreachable = MlflowTrackingResource(tracking_uri=closed)
        tracking = MlflowTrackingResource(tracking_uri=server.url, experiment="bench")

        def run(resource: object) -> None:
            # Errors raise, except for the unreachable server, whose failure is the point.
            materialize(
                [train_model_stub], resources={"tracking": resource}, run_config=QUIET,
                raise_on_error=resource is not unreachable,
            )  # fmt: skip

        run(tracking)  # warm up imports and the experiment
        stub_runs = _timed(lambda: run(stub))
        tracked_runs = _timed(lambda: run(tracking))
        requests_per_run = _count_requests(lambda: run(tracking))
        stub_median, tracked_median = statistics.median(stub_runs), statistics.median(tracked_runs)
        results["materialization_seconds"] = {
            "stub": stub_median, "tracking": tracked_median,
            "ratio": tracked_median / stub_median, "repeats": REPEATS,
        }  # fmt: skip
        results["http_requests_per_tracked_materialization"] = requests_per_run

        print("==> failing against a closed port: dagma vs MLflow's default policy", flush=True)
        [dagma_fail] = _timed(lambda: run(unreachable), repeats=1)
        default_fail = _mlflow_default_failure_seconds(closed)
        results["unreachable_failure_seconds"] = {
            "dagma": dagma_fail,
            "mlflow_default": default_fail,
            "mlflow_default_limit": DEFAULT_POLICY_LIMIT_SECONDS,
        }
    finally:
        server.stop()

    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    imp, mat = results["import_seconds"], results["materialization_seconds"]
    fail = results["unreachable_failure_seconds"]
    default = (f"{fail['mlflow_default']:.1f} s" if fail["mlflow_default"] is not None
               else f"> {DEFAULT_POLICY_LIMIT_SECONDS} s (cut off)")  # fmt: skip
    print()
    print(f"{'measure':44} {'stub / dagma':>14} {'tracking / default':>20} {'ratio':>8}")
    print(f"{'import dagma.definitions (s)':44} {imp['stub']:14.2f} {imp['tracking']:20.2f} "
          f"{imp['ratio']:8.2f}")  # fmt: skip
    print(f"{'materialize train_model_stub, median (s)':44} {mat['stub']:14.3f} "
          f"{mat['tracking']:20.3f} {mat['ratio']:8.2f}")  # fmt: skip
    print(f"{'HTTP requests per tracked materialization':44} {'0':>14} "
          f"{results['http_requests_per_tracked_materialization']:>20}")  # fmt: skip
    print(f"{'closed port: time to fail':44} {fail['dagma']:13.1f}s {default:>20}")
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
