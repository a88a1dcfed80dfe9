"""Step 5: what the run pod recorded, read back through the MLflow server.

The MLflow run is found by its ``dagster.run_id`` tag (the run launched in step 3), its
params, metric and artifact come back through the server's API, and the artifact's bytes
are on the server's volume (the host directory standing in for the PersistentVolume), not
in the run pod's container.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance
from mlflow import MlflowClient
from mlflow.entities import Run
from support.dagster_control import ASSET, QueuedRun, environment
from support.images import BUILD_TIMEOUT_S
from support.mlflow_container import MlflowServer
from support.release import Release
from support.run_launch import RunPod

from dagma.defs.models.assets import SUMMARY_FILE

# The first test to need an image builds it (support.images).
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S)

SUMMARY = "n_estimators=10\nrmse=0.123\n"  # what train_model_stub writes
CLIENT_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


@pytest.fixture(scope="module")
def client(mlflow_server: MlflowServer) -> Iterator[MlflowClient]:
    with environment(**CLIENT_ENV):  # a dead server fails at once, not after retries
        yield MlflowClient(mlflow_server.url)


@pytest.fixture(scope="module")
def tracking_env(release: Release) -> dict[str, str]:
    """The MLflow ConfigMap's data: what the run pod's resource was configured with."""
    _, config_maps = release.data
    return config_maps[release.values["tracking"]["configMapName"]]


@pytest.fixture(scope="module")
def mlflow_run(
    client: MlflowClient, tracking_env: dict[str, str], queued_run: QueuedRun, run_pod: RunPod
) -> Run:
    assert run_pod.exit_code == 0, run_pod.logs[-4000:]
    experiment = client.get_experiment_by_name(tracking_env["MLFLOW_EXPERIMENT"])
    assert experiment is not None
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`dagster.run_id` = '{queued_run.run_id}'"
    )
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def test_mlflow_run_has_the_param_and_metric_the_asset_logged(mlflow_run: Run) -> None:
    assert mlflow_run.data.params == {"n_estimators": "10"}
    assert mlflow_run.data.metrics == {"rmse": 0.123}
    assert mlflow_run.info.status == "FINISHED"


def test_mlflow_run_is_tagged_with_the_launched_dagster_run_and_its_code_location(
    mlflow_run: Run, queued_run: QueuedRun, release: Release
) -> None:
    tags = mlflow_run.data.tags
    assert tags["dagster.run_id"] == queued_run.run_id
    assert tags["dagster.code_location"] == release.code_location["name"]
    assert tags["dagster.asset_key"] == ASSET


def test_materialization_metadata_links_the_mlflow_run(
    mlflow_run: Run, tracking_env: dict[str, str], dagster_instance: DagsterInstance
) -> None:
    event = dagster_instance.get_latest_materialization_event(AssetKey(ASSET))
    assert event is not None and event.asset_materialization is not None
    metadata = event.asset_materialization.metadata
    run_id, experiment_id = mlflow_run.info.run_id, mlflow_run.info.experiment_id
    assert metadata["mlflow_run_id"].value == run_id
    ui_url = tracking_env["MLFLOW_UI_URL"]
    assert (
        metadata["mlflow_run_url"].value == f"{ui_url}/#/experiments/{experiment_id}/runs/{run_id}"
    )


def test_artifact_comes_back_through_the_server_and_is_stored_on_its_volume(
    client: MlflowClient, mlflow_run: Run, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    info = mlflow_run.info
    assert info.artifact_uri.startswith("mlflow-artifacts:")  # proxied, never a client path
    assert [a.path for a in client.list_artifacts(info.run_id)] == [SUMMARY_FILE]
    downloaded = client.download_artifacts(info.run_id, SUMMARY_FILE, str(tmp_path))
    assert Path(downloaded).read_text() == SUMMARY
    on_volume = mlflow_server.volume / "artifacts" / info.experiment_id / info.run_id / "artifacts"
    assert (on_volume / SUMMARY_FILE).read_text() == SUMMARY
