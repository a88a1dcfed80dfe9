"""Local stores, no server: ``sqlite:////ABS/mlflow.db`` and ``file:///ABS/mlruns``, end to end.

Each materializes ``train_model_stub`` through the resource the environment builds,
then reads params, metric and artifact back with MLflow's own client.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize
from mlflow import MlflowClient

from dagma import SettingsError, mlflow_resource_from_env
from dagma.defs.train_model import train_model_stub

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@pytest.fixture
def file_store_opt_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # MLflow reads its opt-in from the process environment itself, as run pods would have it.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    yield


def _store_uri(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    return f"file://{tmp_path / 'store' / 'mlruns'}"


def _materialize(env: dict[str, str]) -> tuple[str, list[str], dict]:
    """Run train_model_stub; return its MLflow run id, the step's log lines and metadata."""
    resource = mlflow_resource_from_env({"MLFLOW_USE_TRACKING": "true", **env})
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [train_model_stub], resources={"tracking": resource}, instance=instance
        )
        messages = [
            r.event_log_entry.user_message
            for r in instance.get_records_for_run(result.run_id).records
        ]
    [event] = result.asset_materializations_for_node("train_model_stub")
    return result.output_for_node("train_model_stub")["run_id"], messages, dict(event.metadata)


@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_local_store_records_params_metric_and_artifact(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file_store_opt_in: None
) -> None:
    uri = _store_uri(kind, tmp_path)
    (tmp_path / "store").mkdir()
    # Another working directory than the store's: nothing may land relative to it.
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    run_id, messages, metadata = _materialize(
        {"MLFLOW_TRACKING_URI": uri, "MLFLOW_ALLOW_FILE_STORE": "true"}
    )

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"n_estimators": "10"}
    assert run.data.metrics == {"rmse": 0.123}
    downloaded = client.download_artifacts(run_id, "train_summary.txt", str(tmp_path))
    assert Path(downloaded).read_text() == "n_estimators=10\nrmse=0.123\n"
    # Artifacts live with the store, not under the working directory.
    [stored] = (tmp_path / "store").rglob("train_summary.txt")
    assert run_id in stored.parts
    assert list(workdir.iterdir()) == []

    # No server: the log line and the metadata say how to open the UI on this store.
    command = metadata["mlflow_ui_command"].value  # run as printed: test_mlflow_ui_command.py
    assert command.startswith(
        f"{Path(sys.executable).parent / 'mlflow'} ui --backend-store-uri {uri} "
    )
    assert "mlflow_run_url" not in metadata
    assert any(m.startswith(f"MLflow run {run_id}") and command in m for m in messages)


def test_local_store_links_to_mlflow_ui_url_when_set(tmp_path: Path) -> None:
    uri = _store_uri("sqlite", tmp_path)
    (tmp_path / "store").mkdir()
    run_id, _, metadata = _materialize(
        {"MLFLOW_TRACKING_URI": uri, "MLFLOW_UI_URL": "http://127.0.0.1:5999"}
    )
    experiment_id = MlflowClient(tracking_uri=uri).get_run(run_id).info.experiment_id
    assert metadata["mlflow_run_url"].value == (
        f"http://127.0.0.1:5999/#/experiments/{experiment_id}/runs/{run_id}"
    )


def test_local_store_makes_no_network_request(tmp_path: Path) -> None:
    # No /health, no server: a fresh interpreter reports every socket connect.
    uri = _store_uri("sqlite", tmp_path)
    (tmp_path / "store").mkdir()
    script = (
        "import sys\n"
        "connects = []\n"
        "sys.addaudithook(lambda e, a: e == 'socket.connect' and connects.append(a))\n"
        "from dagster import materialize\n"
        "from dagma.defs.train_model import train_model_stub\n"
        "from dagma import mlflow_resource_from_env\n"
        "r = materialize([train_model_stub], resources={'tracking': mlflow_resource_from_env()})\n"
        "assert r.success\n"
        "print('connects:', connects)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_USE_TRACKING="true", MLFLOW_TRACKING_URI=uri, MLFLOW_DISABLE_TELEMETRY="true")
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "connects: []" in result.stdout


def test_file_store_without_opt_in_stops_the_code_location_loading(tmp_path: Path) -> None:
    uri = _store_uri("file", tmp_path)
    with pytest.raises(SettingsError) as error:
        mlflow_resource_from_env({"MLFLOW_USE_TRACKING": "true", "MLFLOW_TRACKING_URI": uri})
    assert "set MLFLOW_ALLOW_FILE_STORE=true" in str(error.value)
    assert f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}" in str(error.value)
    # The same, from Dagster's command line: refused at load, before any run starts.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_USE_TRACKING="true", MLFLOW_TRACKING_URI=uri, DAGSTER_HOME=str(tmp_path))
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize",
        "-m", "dagma.definitions", "--select", "train_model_stub",
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "MLFLOW_ALLOW_FILE_STORE=true" in result.stdout + result.stderr
    assert not (tmp_path / "store").exists()  # nothing half-written


def test_demo_with_a_sqlite_store_prints_what_mlflow_holds(tmp_path: Path) -> None:
    # `make demo STORE=sqlite`: no server; the printout is read back from the local store.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    result = subprocess.run(
        [sys.executable, "-m", "dagma.dev.demo", "--store", "sqlite"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    uri = f"sqlite:///{tmp_path / '.mlflow-local' / 'local-store' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.get_experiment_by_name("Default").experiment_id
    [parent] = client.search_runs([experiment_id], "tags.`dagster.job_name` = '__ASSET_JOB'")
    [run] = client.search_runs([experiment_id], "tags.`dagster.asset_key` = 'train_model_stub'")
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    out = result.stdout
    assert f"MLflow run   {run.info.run_id}  (FINISHED)" in out
    assert run.data.params == {"n_estimators": "10"}
    assert f"params       {run.data.params}" in out
    assert f"metrics      {run.data.metrics}" in out
    assert "n_estimators=10" in out and "rmse=0.123" in out  # the artifact's content
    assert (
        f"UI           {Path(sys.executable).parent / 'mlflow'} ui --backend-store-uri {uri} "
        in out
    )
