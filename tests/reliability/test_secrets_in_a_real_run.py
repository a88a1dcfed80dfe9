"""A real materialization and `dagma doctor` with a basic-auth login: the password shows nowhere.

charts/mlflow with basic auth runs as the chart runs it (support.mlflow_servers); its admin
password is a marker. The dagma code location materializes ``train_model_stub`` in a real
``dagster asset materialize`` process with that login (MLFLOW_TRACKING_USERNAME/PASSWORD, as a
run pod gets them from the Secret), then ``dagma doctor`` checks the same settings. The marker
must appear in no output of either, no file Dagster wrote (event log, run storage, compute
logs), no param or tag of the MLflow run, and not in the server's log.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from support import mlflow_servers
from support.helm import render

from dagma.dev.local_mlflow import free_port

MARKER = f"Mk9{secrets.token_urlsafe(12)}"
ADMIN = {"username": "dagma-admin", "password": MARKER}
EXPERIMENT = f"secrets-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mlflow_servers.ServerPod]:
    mlflow_servers.require_basic_auth()
    values = {
        "auth": {"enabled": True, "existingSecret": "mlflow-admin"},
        "server": {"port": free_port()},
    }
    with mlflow_servers.serving(
        render("mlflow", values),
        tmp_path_factory.mktemp("mlflow-secrets"),
        secrets={"mlflow-admin": ADMIN},
    ) as started:
        yield started


def _env(pod: mlflow_servers.ServerPod, home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MLFLOW_USE_TRACKING": "true",
        "MLFLOW_TRACKING_URI": pod.url,
        "MLFLOW_EXPERIMENT": EXPERIMENT,
        "MLFLOW_TRACKING_USERNAME": ADMIN["username"],
        "MLFLOW_TRACKING_PASSWORD": MARKER,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "NO_PROXY": "127.0.0.1,localhost",
        "DAGSTER_HOME": str(home),
    }


def _files_with_marker(root: Path) -> list[str]:
    return [
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and MARKER.encode() in path.read_bytes()
    ]


def test_the_password_appears_in_no_output_no_dagster_file_and_no_run_data(
    pod: mlflow_servers.ServerPod, tmp_path: Path
) -> None:
    home = tmp_path / "dagster-home"
    home.mkdir()
    env = _env(pod, home)
    materialize = [sys.executable, "-m", "dagster", "asset", "materialize"]
    materialize += ["-m", "dagma.definitions", "--select", "train_model_stub"]
    run = subprocess.run(materialize, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    doctor = subprocess.run(
        [sys.executable, "-m", "dagma", "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "mlflow" in (doctor.stdout + doctor.stderr).lower(), doctor.stdout + doctor.stderr

    client = MlflowClient(pod.url)
    os.environ.update({k: env[k] for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")})
    try:
        experiment = client.get_experiment_by_name(EXPERIMENT)
        assert experiment is not None, run.stdout[-3000:]
        [recorded] = [  # the asset's run (its Dagster run's parent run holds no data)
            r for r in client.search_runs([experiment.experiment_id])
            if r.info.status == "FINISHED" and "dagster.asset_key" in r.data.tags
        ]  # fmt: skip
    finally:
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(key, None)

    places = {
        "materialize output": run.stdout + run.stderr,
        "dagma doctor output": doctor.stdout + doctor.stderr,
        "MLflow params": repr(recorded.data.params),
        "MLflow tags": repr(recorded.data.tags),
        "MLflow server log": pod.log(),
    }
    hits = [where for where, text in places.items() if MARKER in text]
    hits += [f"DAGSTER_HOME/{name}" for name in _files_with_marker(home)]
    files = sum(1 for path in home.rglob("*") if path.is_file())
    print(
        f"secrets in a real run: {len(places)} outputs and {files} Dagster files, {len(hits)} hits"
    )
    assert files > 0, "Dagster wrote nothing to search"
    assert not hits, hits
