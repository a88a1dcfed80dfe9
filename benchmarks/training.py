"""The training pipeline's costs, in one run against a real local MLflow server.

``python -m benchmarks.training`` (the ``training`` extra) runs the job
``training_pipeline`` of :mod:`dagma.examples.training` for the last day and reports:

- the model's artifacts (the MLflow 3 logged model: ``model.skops`` and its metadata
  files): size, and the time of their uploads through the server's artifact proxy while
  the asset logged them; against a direct ``MlflowClient`` upload of the same files to
  the same server (``log_artifact`` of ``model.skops``, ``log_artifacts`` of the model);
- the whole pipeline's wall time: in this process (first run: cold, imports included;
  second: warm), split into time in MLflow requests, in training (fit and per-stage
  scoring), in the steps' other code (data, plot, model serialization and loading), and
  in Dagster (the rest: planning, event log, resources, check); and ``dagster job execute``
  in a fresh process, what ``make demo-training`` runs.

Time in requests is measured where every MLflow client request passes
(``requests.Session.send``, as :mod:`benchmarks.http_count` counts them); the requests
go to the real server. Writes ``benchmarks/training_results.json`` and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Telemetry would reach outside this machine; progress bars would bury the summary.
os.environ.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
os.environ.update(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")

from benchmarks.__main__ import machine  # noqa: E402
from benchmarks.contenders import QUIET  # noqa: E402
from dagma.dev import local_mlflow  # noqa: E402

RESULTS = Path(__file__).parent / "training_results.json"
EXPERIMENT = "bench-training"
MODEL_FILE = "model.skops"
DIRECT_REPEATS = 5
Interval = tuple[float, float]


@contextmanager
def recording_requests(base_url: str) -> Iterator[list[dict[str, Any]]]:
    """Yield a list that fills with (start, end, method, path, bytes sent) of each request."""
    import requests

    recorded: list[dict[str, Any]] = []
    original = requests.Session.send

    def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
        started = time.time()
        try:
            return original(self, request, **kwargs)
        finally:
            if request.url.startswith(base_url):
                body = request.body
                size = int(request.headers.get("Content-Length") or 0) or (
                    len(body) if isinstance(body, bytes | str) else 0
                )
                recorded.append({"start": started, "end": time.time(), "method": request.method,
                                 "path": request.path_url, "bytes": size})  # fmt: skip

    requests.Session.send = send  # type: ignore[method-assign]
    try:
        yield recorded
    finally:
        requests.Session.send = original  # type: ignore[method-assign]


@contextmanager
def timing_training() -> Iterator[list[Interval]]:
    """Yield a list of the (start, end) of every ``model.train`` call (the real one runs)."""
    from dagma.examples.training import model

    spans: list[Interval] = []
    original = model.train

    def train(*args, **kwargs):  # type: ignore[no-untyped-def]
        started = time.time()
        try:
            return original(*args, **kwargs)
        finally:
            spans.append((started, time.time()))

    model.train = train  # type: ignore[assignment]
    try:
        yield spans
    finally:
        model.train = original  # type: ignore[assignment]


def _union(intervals: list[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _length(intervals: list[Interval]) -> float:
    return sum(end - start for start, end in _union(intervals))


def _step_spans(instance: Any, run_id: str) -> list[Interval]:
    """(start, end) of each step of the run, from Dagster's event log."""
    from dagster import DagsterEventType

    ends = {DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}
    starts: dict[str, float] = {}
    spans = []
    for record in instance.get_records_for_run(run_id).records:
        event = record.event_log_entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            starts[event.step_key] = record.event_log_entry.timestamp
        elif event.event_type in ends and event.step_key in starts:
            spans.append((starts[event.step_key], record.event_log_entry.timestamp))
    return spans


def pipeline_in_process(url: str, instance: Any, day: str) -> dict[str, Any]:
    """One run of the job in this process, its wall time split by where it went."""
    from dagma import MlflowTrackingResource
    from dagma.examples.training import contract
    from dagma.examples.training.definitions import build_definitions

    tracking = MlflowTrackingResource(tracking_uri=url, experiment=EXPERIMENT)
    job = build_definitions(tracking).resolve_job_def(contract.JOB)
    with recording_requests(url) as requests, timing_training() as training:
        started = time.time()
        result = job.execute_in_process(instance=instance, partition_key=day, run_config=QUIET)
        ended = time.time()
    assert result.success
    wall = ended - started
    http = [(r["start"], r["end"]) for r in requests]
    steps = _step_spans(instance, result.run_id)
    in_mlflow = _length(http)
    in_training = _length(http + training) - in_mlflow
    in_steps_other = _length(http + training + steps) - in_mlflow - in_training
    model_puts = [r for r in requests if r["method"] == "PUT" and "/models/m-" in r["path"]]
    return {
        "day": day,
        "dagster_run_id": result.run_id,
        "wall_seconds": wall,
        "seconds": {
            "mlflow_requests": in_mlflow,
            "training": in_training,
            "steps_other": in_steps_other,
            "dagster": wall - in_mlflow - in_training - in_steps_other,
        },
        "requests": len(requests),
        "model_upload": {
            "files": len(model_puts),
            "bytes": sum(r["bytes"] for r in model_puts),
            "seconds": _length([(r["start"], r["end"]) for r in model_puts]),
            "model_file_seconds": sum(
                r["end"] - r["start"] for r in model_puts if r["path"].endswith(MODEL_FILE)
            ),
        },
        "model_version": str(
            result.asset_materializations_for_node(contract.TRAINED_MODEL)[0]
            .metadata["model_version"]
            .value
        ),
    }


def direct_upload(url: str, model_version: str, repeats: int) -> dict[str, Any]:
    """The registered model's files uploaded again with a bare MlflowClient, to a new run."""
    import mlflow.artifacts
    from mlflow import MlflowClient

    from dagma.examples.training import contract

    client = MlflowClient(tracking_uri=url)
    source = client.get_model_version(contract.MODEL_NAME, model_version).source
    logged = client.get_logged_model(source.removeprefix("models:/"))
    local = Path(tempfile.mkdtemp(prefix="dagma-bench-model-"))
    mlflow.artifacts.download_artifacts(
        artifact_uri=logged.artifact_location, dst_path=str(local), tracking_uri=url
    )
    files = [path for path in local.rglob("*") if path.is_file()]
    [model_file] = [path for path in files if path.name == MODEL_FILE]
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    run_id = client.create_run(experiment_id, run_name="direct-upload").info.run_id
    one_file, whole_model = [], []
    for repeat in range(repeats):
        started = time.perf_counter()
        client.log_artifact(run_id, str(model_file), f"file-{repeat}")
        one_file.append(time.perf_counter() - started)
        started = time.perf_counter()
        client.log_artifacts(run_id, str(local), f"model-{repeat}")
        whole_model.append(time.perf_counter() - started)
    client.set_terminated(run_id)
    return {
        "files": len(files),
        "bytes": sum(path.stat().st_size for path in files),
        "model_file_bytes": model_file.stat().st_size,
        "model_file_seconds_median": statistics.median(one_file),
        "model_seconds_median": statistics.median(whole_model),
        "repeats": repeats,
    }


def pipeline_fresh_process(url: str, day: str) -> float:
    """Seconds of ``dagster job execute`` of the pipeline in a new process (make demo-training)."""
    from dagma.examples.training import contract

    home = tempfile.mkdtemp(prefix="dagma-bench-dagster-")
    env = {**os.environ, "MLFLOW_USE_TRACKING": "true", "MLFLOW_TRACKING_URI": url,
           "MLFLOW_EXPERIMENT": EXPERIMENT, "DAGSTER_HOME": home}  # fmt: skip
    command = [sys.executable, "-m", "dagster", "job", "execute", "-m",
               "dagma.examples.training.definitions", "-j", contract.JOB,
               "--tags", json.dumps({"dagster/partition": day})]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - started


def run(output: Path, tracking_uri: str | None = None) -> dict[str, Any]:
    """Every measurement, against ``tracking_uri`` or a server started for the run."""
    from dagster import DagsterInstance

    from dagma.examples.training import contract

    if tracking_uri is None:
        print("==> starting a local MLflow server for the benchmark", flush=True)
        server = local_mlflow.start(Path(tempfile.mkdtemp(prefix="dagma-bench-")))
    else:
        server = local_mlflow.LocalMlflowServer(url=tracking_uri, data_dir=None, process=None)
    results: dict[str, Any] = {"machine": machine()}
    try:
        day = contract.LAST_DAY
        with DagsterInstance.local_temp(tempfile.mkdtemp(prefix="dagma-bench-dagster-")) as inst:
            print(f"==> {contract.JOB} for {day} in this process: cold, then warm", flush=True)
            results["in_process_cold"] = pipeline_in_process(server.url, inst, day)
            results["in_process_warm"] = pipeline_in_process(server.url, inst, day)
        version = results["in_process_warm"]["model_version"]
        print(f"==> version {version}'s files again with a bare MlflowClient", flush=True)
        results["direct_upload"] = direct_upload(server.url, version, DIRECT_REPEATS)
        print("==> dagster job execute in a fresh process", flush=True)
        results["fresh_process_seconds"] = pipeline_fresh_process(server.url, day)
    finally:
        server.stop()
    output.write_text(json.dumps(results, indent=2) + "\n")
    return results


def summary(results: dict[str, Any]) -> str:
    """The figures docs/performance.md shows."""
    warm, direct = results["in_process_warm"], results["direct_upload"]
    upload = warm["model_upload"]
    lines = [
        f"- model: {direct['files']} files, {direct['bytes'] / 1024:.0f} KiB "
        f"({MODEL_FILE}: {direct['model_file_bytes'] / 1024:.0f} KiB)",
        f"- upload through the proxy in the asset (log_model): {upload['files']} files, "
        f"{upload['seconds'] * 1000:.0f} ms ({MODEL_FILE}: "
        f"{upload['model_file_seconds'] * 1000:.0f} ms)",
        f"- bare MlflowClient, same server, median of {direct['repeats']}: log_artifacts "
        f"{direct['model_seconds_median'] * 1000:.0f} ms, log_artifact({MODEL_FILE}) "
        f"{direct['model_file_seconds_median'] * 1000:.0f} ms",
    ]
    for name in ("in_process_cold", "in_process_warm"):
        measured = results[name]
        wall, parts = measured["wall_seconds"], measured["seconds"]
        shares = ", ".join(
            f"{part} {seconds:.2f} s ({seconds / wall:.0%})" for part, seconds in parts.items()
        )
        lines.append(f"- pipeline {name}: {wall:.2f} s, {measured['requests']} requests: {shares}")
    lines.append(f"- dagster job execute, fresh process: {results['fresh_process_seconds']:.1f} s")
    m = results["machine"]
    load = ", ".join(f"{x:.1f}" for x in m["load_average_at_start"])
    lines.append(f"- machine: {m['cpu']}, {m['cpus']} CPUs, load average at start {load}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON")
    parser.add_argument("--tracking-uri", help="an MLflow server to use instead of starting one")
    args = parser.parse_args()
    print(summary(run(args.output, args.tracking_uri)))
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
