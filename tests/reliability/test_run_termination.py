"""A Dagster run stopped inside an open MLflow run: the MLflow run never stays RUNNING.

Kubernetes stops a run pod (Dagster's run termination deletes its Job) with SIGTERM; Dagster's
own termination of a local run sends SIGINT. Either signal reaches a real ``dagster asset
materialize`` process whose asset waits inside its MLflow run
(tests/reliability/locations/paused_training.py); the session's MLflow server stays up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

LOCATIONS = Path(__file__).parent / "locations"
STOP_BOUND_SECONDS = 120


def _materialize(mlflow_server: str, home: Path, experiment: str, log: Path) -> subprocess.Popen:
    home.mkdir()
    env = {
        **os.environ,
        "MLFLOW_USE_TRACKING": "true",
        "MLFLOW_TRACKING_URI": mlflow_server,
        "MLFLOW_EXPERIMENT": experiment,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "NO_PROXY": "127.0.0.1,localhost",
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(LOCATIONS), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "dagster", "asset", "materialize"]
    command += ["-m", "paused_training", "--select", "paused_training"]
    with log.open("w") as handle:
        return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)


def _wait_for_run(client: MlflowClient, experiment: str, process: subprocess.Popen, log: Path):
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id]) if found else []
        # Paused inside its run: the param is flushed once the run is open. A run merely
        # created may still be on its way back to the client, which then never learns its
        # id (a signal then leaves it to the next materialization's sweep).
        if runs and runs[0].data.params.get("stage") == "started":
            return runs[0]
        time.sleep(0.5)
    raise AssertionError("the paused run never reached the server")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_stopped_run_ends_its_mlflow_run_failed_or_killed(
    mlflow_server: str, tmp_path: Path, stop: signal.Signals
) -> None:
    experiment = f"terminated-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(mlflow_server)
    log = tmp_path / "materialize.log"
    process = _materialize(mlflow_server, tmp_path / "home", experiment, log)
    try:
        run = _wait_for_run(client, experiment, process, log)
        assert run.info.status == "RUNNING"
        process.send_signal(stop)
        process.wait(timeout=STOP_BOUND_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
    ended = client.get_run(run.info.run_id)
    status = ended.info.status
    print(f"{stop.name}: the process exited {process.returncode}, the MLflow run is {status}")
    assert process.returncode != 0, log.read_text()[-3000:]
    assert status in {"FAILED", "KILLED"}, log.read_text()[-3000:]
    assert "dagster.failure" in ended.data.tags  # why, on the run itself
