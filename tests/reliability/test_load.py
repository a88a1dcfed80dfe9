"""Load on one MLflow server as the chart runs it: materializations at once, in a row, raising.

One release per module (charts/mlflow defaults, a free port; support.mlflow_servers). Every run
logs data of its own (its index as a param, a metric and an artifact's content), so reading
back proves each run is complete and holds only its own data. The server's access log gives
its error count; the time per materialization is printed as information, never asserted.
Counts: `make test` 8 at once, 50 in a row, 20 raising; `make soak` 32, 500 and 200
(support.soak). (No ``from __future__ import annotations``: Dagster resolves the Config
annotation at once.)
"""

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from dagster import AssetExecutionContext, Config, DagsterInstance, asset, materialize
from mlflow import MlflowClient
from support import mlflow_servers, soak
from support.helm import render

from dagma import MlflowRunRecorder, MlflowTrackingResource
from dagma.dev.local_mlflow import free_port

AT_ONCE = soak.count(8, 32)  # separate processes
SEQUENTIAL = soak.count(50, 500)
RAISING = soak.count(20, 200)
LOCATIONS = Path(__file__).parent / "locations"
# uvicorn's access log: ... "POST /api/2.0/mlflow/runs/log-batch HTTP/1.1" 200 OK
ACCESS_STATUS = re.compile(r'HTTP/[\d.]+" (\d{3})\b')


class Index(Config):
    index: int


@asset
def indexed_training(
    context: AssetExecutionContext, config: Index, tracking: MlflowRunRecorder
) -> str:
    with tracking.run(context) as run_id:
        tracking.log_param("index", config.index)
        tracking.log_metric("index_value", config.index)
        with tempfile.TemporaryDirectory() as scratch:
            summary = Path(scratch, "summary.txt")
            summary.write_text(f"index={config.index}\n")
            tracking.log_artifact(summary)
    return run_id


@asset
def raising_training(context: AssetExecutionContext, config: Index, tracking: MlflowRunRecorder):
    with tracking.run(context):
        tracking.log_param("index", config.index)
        raise RuntimeError(f"training {config.index} diverged")


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mlflow_servers.ServerPod]:
    rendered = render("mlflow", {"server": {"port": free_port()}})
    with mlflow_servers.serving(rendered, tmp_path_factory.mktemp("mlflow-load")) as started:
        yield started


def _statuses(log: str) -> list[int]:
    return [int(m.group(1)) for line in log.splitlines() if (m := ACCESS_STATUS.search(line))]


def _runs(client: MlflowClient, experiment: str) -> list:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"experiment {experiment} was never created"
    return client.search_runs([found.experiment_id], max_results=5000)


class Served(NamedTuple):
    """What the server holds for an experiment after ``count`` materializations."""

    runs: list
    cross_talk: int
    requests: int
    errors: list[int]


def _served(pod: mlflow_servers.ServerPod, experiment: str, count: int, since: int) -> Served:
    """The experiment's runs read back, their cross-talk, and the server's requests since."""
    client = MlflowClient(pod.url)
    runs = _runs(client, experiment)
    statuses = _statuses(pod.log())[since:]
    errors = [status for status in statuses if status >= 500]
    return Served(runs, _cross_talk(client, runs, count), len(statuses), errors)


def _cross_talk(client: MlflowClient, runs: list, count: int) -> int:
    """How many runs hold anything but their own index; every index must have exactly one run."""
    by_index = {int(run.data.params["index"]): run for run in runs}
    assert len(runs) == count and sorted(by_index) == list(range(count))
    cross_talk = 0
    for index, run in by_index.items():
        assert run.info.status == "FINISHED"
        [artifact] = client.list_artifacts(run.info.run_id)
        content = Path(client.download_artifacts(run.info.run_id, artifact.path)).read_text()
        own = (
            run.data.params == {"index": str(index)}
            and run.data.metrics == {"index_value": float(index)}
            and content == f"index={index}\n"
        )
        cross_talk += not own
    return cross_talk


def _figures(durations: list[float]) -> str:
    quantiles = statistics.quantiles(durations, n=20) if len(durations) > 1 else durations * 19
    return f"p50 {statistics.median(durations):.2f} s, p95 {quantiles[18]:.2f} s"


def test_materializations_in_separate_processes_at_once_are_complete_and_distinct(
    pod: mlflow_servers.ServerPod, tmp_path: Path
) -> None:
    experiment = f"at-once-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "MLFLOW_USE_TRACKING": "true",
        "MLFLOW_TRACKING_URI": pod.url,
        "MLFLOW_EXPERIMENT": experiment,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "NO_PROXY": "127.0.0.1,localhost",
        "PYTHONPATH": os.pathsep.join([str(LOCATIONS), os.environ.get("PYTHONPATH", "")]),
    }
    requests_before = len(_statuses(pod.log()))
    processes = []
    for index in range(AT_ONCE):
        home = tmp_path / f"home-{index}"
        home.mkdir()
        command = [
            sys.executable, "-m", "dagster", "asset", "materialize",
            "-m", "numbered_training", "--select", "numbered_training", "--partition", f"n{index}",
        ]  # fmt: skip
        log = (tmp_path / f"materialize-{index}.log").open("w")
        started = time.monotonic()
        process = subprocess.Popen(
            command, env={**env, "DAGSTER_HOME": str(home)}, stdout=log, stderr=subprocess.STDOUT
        )
        processes.append((process, started, log))
    durations = []
    try:
        for index, (process, started, log) in enumerate(processes):
            process.wait(timeout=900)
            durations.append(time.monotonic() - started)
            log.close()
            output = (tmp_path / f"materialize-{index}.log").read_text()
            assert process.returncode == 0, output[-3000:]
    finally:
        for process, _, _ in processes:
            if process.poll() is None:
                process.kill()

    served = _served(pod, experiment, AT_ONCE, requests_before)
    print(
        f"{AT_ONCE} at once: {len(served.runs)} runs, cross-talk {served.cross_talk}, "
        f"{served.requests} requests, server errors {len(served.errors)}, "
        f"{_figures(durations)} per process"
    )
    assert served.cross_talk == 0
    assert len({run.data.tags["dagster.run_id"] for run in served.runs}) == AT_ONCE
    assert served.errors == []


def test_materializations_in_a_row_are_complete_and_distinct(
    pod: mlflow_servers.ServerPod,
) -> None:
    experiment = f"sequential-{uuid.uuid4().hex[:8]}"
    tracking = MlflowTrackingResource(tracking_uri=pod.url, experiment=experiment)
    requests_before = len(_statuses(pod.log()))
    durations = []
    with DagsterInstance.ephemeral() as instance:
        for index in range(SEQUENTIAL):
            started = time.monotonic()
            result = materialize(
                [indexed_training],
                resources={"tracking": tracking},
                instance=instance,
                run_config={"ops": {"indexed_training": {"config": {"index": index}}}},
            )
            durations.append(time.monotonic() - started)
            assert result.success

    served = _served(pod, experiment, SEQUENTIAL, requests_before)
    print(
        f"{SEQUENTIAL} in a row: {len(served.runs)} runs, cross-talk {served.cross_talk}, "
        f"{served.requests} requests, server errors {len(served.errors)}, {_figures(durations)}"
    )
    assert served.requests > SEQUENTIAL, "the server's access log shows no requests"
    assert served.cross_talk == 0
    assert served.errors == []


def test_raising_assets_leave_as_many_failed_runs_and_none_running(
    pod: mlflow_servers.ServerPod,
) -> None:
    experiment = f"raising-{uuid.uuid4().hex[:8]}"
    tracking = MlflowTrackingResource(tracking_uri=pod.url, experiment=experiment)
    with DagsterInstance.ephemeral() as instance:
        for index in range(RAISING):
            result = materialize(
                [raising_training],
                resources={"tracking": tracking},
                instance=instance,
                run_config={"ops": {"raising_training": {"config": {"index": index}}}},
                raise_on_error=False,
            )
            assert not result.success
    runs = _runs(MlflowClient(pod.url), experiment)
    statuses = [run.info.status for run in runs]
    print(
        f"{RAISING} raising: {statuses.count('FAILED')} FAILED, {statuses.count('RUNNING')} RUNNING"
    )
    assert statuses.count("FAILED") == RAISING and "RUNNING" not in statuses
    assert sorted(int(run.data.params["index"]) for run in runs) == list(range(RAISING))
