"""The ``mlflow ui`` command a local-store run prints runs as printed and shows that run.

A shell without the virtualenv on PATH (as a user's, before ``source .venv/bin/activate``)
runs the command from the materialization's metadata, in the repository; the UI it starts
must answer on the printed port and serve the run just recorded.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

from dagster import DagsterInstance, materialize
from mlflow import MlflowClient
from support.mlflow_servers import is_healthy
from support.pasted_commands import fresh_shell_env

from dagma import mlflow_resource_from_env
from dagma.defs.train_model import train_model_stub
from dagma.dev.local_mlflow import stop_process_group

ROOT = Path(__file__).resolve().parents[2]
UI_START_TIMEOUT = 180


def test_printed_ui_command_runs_as_printed_and_serves_the_run(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    resource = mlflow_resource_from_env({"MLFLOW_USE_TRACKING": "true", "MLFLOW_TRACKING_URI": uri})
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [train_model_stub], resources={"tracking": resource}, instance=instance
        )
    [event] = result.asset_materializations_for_node("train_model_stub")
    command = event.metadata["mlflow_ui_command"].value
    run_id = result.output_for_node("train_model_stub")["run_id"]
    words = shlex.split(command)
    port = int(words[words.index("--port") + 1])
    assert port != 5000  # MLflow's default, and make demo's: taken while the demo runs

    log = tmp_path / "ui.log"
    with log.open("wb") as out:
        ui = subprocess.Popen(
            command, shell=True, cwd=ROOT, env=fresh_shell_env(),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + UI_START_TIMEOUT
        while not is_healthy(url):
            assert ui.poll() is None, f"`{command}` exited {ui.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"`{command}` never answered:\n{log.read_text()}"
            time.sleep(0.5)
        run = MlflowClient(tracking_uri=url).get_run(run_id)
        assert run.data.params == {"n_estimators": "10"}
        assert run.data.metrics == {"rmse": 0.123}
    finally:
        stop_process_group(ui.pid, child=ui)
