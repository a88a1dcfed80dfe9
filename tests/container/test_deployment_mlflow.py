"""Step 1: the MLflow server of the release runs in images/mlflow exactly as its manifests say.

The migration Job, the server pod's init containers and the server container run from
the rendered manifests (support.mlflow_container), then each chart's ``helm test`` Pod
runs in a second container against the server: charts/mlflow's logs a run with an
artifact through the Service name, charts/dagma's checks the ConfigMap's tracking URI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support import container_spec
from support.container.cli import Docker
from support.images import BUILD_TIMEOUT_S
from support.mlflow_container import MlflowServer, run_pod
from support.release import Release

from dagma.devserver import is_healthy

# The first test to need an image builds it (support.images).
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S)


def _inspect(docker: Docker, container: str) -> dict[str, Any]:
    return json.loads(docker.command(["inspect", container]).stdout)[0]


def _test_pod(release: Release, suffix: str) -> dict[str, Any]:
    [pod] = [p for p in release.rendered.tests if p["metadata"]["name"].endswith(suffix)]
    return pod


def test_mlflow_server_container_answers_health_as_the_manifest_user(
    docker: Docker, release: Release, mlflow_server: MlflowServer
) -> None:
    assert is_healthy(mlflow_server.url)
    pod = container_spec.pod_spec(release.rendered.one("Deployment"))
    security = pod["securityContext"]
    state = _inspect(docker, mlflow_server.container.name)
    assert state["Config"]["User"] == f"{security['runAsUser']}:{security['runAsGroup']}"
    assert state["HostConfig"]["ReadonlyRootfs"] is True  # readOnlyRootFilesystem: true
    assert state["HostConfig"]["CapDrop"] == ["ALL"]


def test_mlflow_server_keeps_its_tracking_store_on_the_volume(mlflow_server: MlflowServer) -> None:
    # The migration Job created the SQLite store on the claim; the server serves from it.
    assert (mlflow_server.volume / "mlflow.db").stat().st_size > 0


def test_mlflow_helm_test_pod_logs_an_artifact_that_lands_on_the_servers_volume(
    docker: Docker, release: Release, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    [result] = run_pod(docker, release, _test_pod(release, "-test-log-artifact"), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["artifact_uri"].startswith("mlflow-artifacts:")
    stored = (
        mlflow_server.volume
        / "artifacts"
        / summary["experiment_id"]
        / summary["run_id"]
        / "artifacts"
        / summary["artifact_path"]
    )
    assert stored.read_text() == summary["payload"]


def test_dagma_helm_test_pod_reaches_mlflow_at_the_configmap_tracking_uri(
    docker: Docker, release: Release, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    [result] = run_pod(docker, release, _test_pod(release, "-test-mlflow-health"), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    _, config_maps = release.data
    uri = config_maps[release.values["tracking"]["configMapName"]]["MLFLOW_TRACKING_URI"]
    assert f"{uri}/health answered 'OK'" in result.stdout
