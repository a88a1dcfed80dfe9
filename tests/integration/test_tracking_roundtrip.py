"""train_model_stub through Dagster against a real MLflow server, read back over REST."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from dagster import AssetKey, DagsterInstance, asset, materialize
from mlflow import MlflowClient

from dagma import MlflowRunRecorder, MlflowTrackingResource
from dagma.defs.train_model import train_model_stub


def _metadata(result, key: str = "train_model_stub") -> dict:
    [event] = result.asset_materializations_for_node(key)
    return dict(event.metadata)


def test_train_model_stub_records_param_metric_and_artifact(
    tracking: MlflowTrackingResource, mlflow_server: str, mlflow_artifacts_dir: Path
) -> None:
    result = materialize([train_model_stub], resources={"tracking": tracking})
    assert result.success
    output = result.output_for_node("train_model_stub")
    run_id = output["run_id"]
    assert output == {"run_id": run_id, "status": "FINISHED", "artifact": "train_summary.txt"}

    # Straight from the REST API, not through our resource.
    url = f"{mlflow_server}/api/2.0/mlflow/runs/get?run_id={run_id}"
    with urllib.request.urlopen(url, timeout=10) as response:
        run = json.load(response)["run"]
    assert run["info"]["status"] == "FINISHED"
    assert run["info"]["run_name"] == "train_model_stub"
    assert {p["key"]: p["value"] for p in run["data"]["params"]} == {"n_estimators": "10"}
    assert {m["key"]: m["value"] for m in run["data"]["metrics"]} == {"rmse": 0.123}

    # The artifact went through the server (proxied) to its destination, and downloads back.
    stored = list(mlflow_artifacts_dir.rglob(f"{run_id}/artifacts/train_summary.txt"))
    assert len(stored) == 1
    artifact_url = f"{mlflow_server}/get-artifact?path=train_summary.txt&run_uuid={run_id}"
    with urllib.request.urlopen(artifact_url, timeout=10) as response:
        assert response.read().decode() == "n_estimators=10\nrmse=0.123\n"


def test_materialization_metadata_links_to_the_mlflow_run(
    tracking: MlflowTrackingResource, client: MlflowClient, mlflow_server: str
) -> None:
    result = materialize([train_model_stub], resources={"tracking": tracking})
    metadata = _metadata(result)
    run_id = metadata["mlflow_run_id"].value
    run = client.get_run(run_id)
    assert metadata["mlflow_experiment"].value == "integration"
    assert metadata["mlflow_run_url"].value == (
        f"{mlflow_server}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
    )
    assert type(metadata["mlflow_run_url"]).__name__ == "UrlMetadataValue"


def test_run_is_named_for_the_asset_and_tagged_with_the_dagster_run(
    mlflow_server: str, client: MlflowClient
) -> None:
    resource = MlflowTrackingResource(
        tracking_uri=mlflow_server,
        experiment="integration",
        mlflow_ui_url="http://localhost:5000",
        dagster_ui_url="http://localhost:3000",
    )
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [train_model_stub], resources={"tracking": resource}, instance=instance
        )
        run_id = _metadata(result)["mlflow_run_id"].value
        materialization = instance.get_latest_materialization_event(AssetKey("train_model_stub"))
    run = client.get_run(run_id)
    assert run.info.run_name == "train_model_stub"
    assert run.data.tags["dagster.run_id"] == result.run_id
    assert run.data.tags["dagster.asset_key"] == "train_model_stub"
    assert run.data.tags["dagster.run_url"] == f"http://localhost:3000/runs/{result.run_id}"
    assert "dagster.partition_key" not in run.data.tags
    # The link people click uses the UI base URL, not the in-cluster tracking URI.
    url = materialization.asset_materialization.metadata["mlflow_run_url"].value
    assert url.startswith("http://localhost:5000/#/experiments/")


def test_each_materialization_gets_its_own_run(
    tracking: MlflowTrackingResource, client: MlflowClient
) -> None:
    first = materialize([train_model_stub], resources={"tracking": tracking})
    second = materialize([train_model_stub], resources={"tracking": tracking})
    ids = {r.output_for_node("train_model_stub")["run_id"] for r in (first, second)}
    assert len(ids) == 2
    for run_id in ids:
        assert client.get_run(run_id).data.params == {"n_estimators": "10"}


def test_seed_api_without_arguments_records_the_run(
    tracking: MlflowTrackingResource, client: MlflowClient
) -> None:
    # The design's minimal asset: start_run -> log_param -> log_metric -> close_run, no context.
    @asset
    def seed_style(tracking: MlflowRunRecorder) -> str:
        run_id = tracking.start_run()
        tracking.log_param("n_estimators", 10)
        tracking.log_metric("rmse", 0.123)
        assert tracking.close_run() == run_id
        return run_id

    result = materialize([seed_style], resources={"tracking": tracking})
    run = client.get_run(result.output_for_node("seed_style"))
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "seed_style"
    assert run.data.tags["dagster.run_id"] == result.run_id
    assert (run.data.params, run.data.metrics) == ({"n_estimators": "10"}, {"rmse": 0.123})


def test_tags_and_dict_forms_reach_mlflow(
    tracking: MlflowTrackingResource, client: MlflowClient
) -> None:
    @asset
    def logs_dicts(tracking: MlflowRunRecorder) -> str:
        with tracking.run() as run_id:
            tracking.set_tag("stage", "candidate")
            tracking.set_tag("stage", "champion")  # the later value wins
            tracking.log_params({"lr": 0.1, "depth": 6})
            tracking.log_metrics({"auc": 0.91, "loss": 0.3}, step=1)
            tracking.log_metrics({"loss": 0.2}, step=2)
        return run_id

    result = materialize([logs_dicts], resources={"tracking": tracking})
    run_id = result.output_for_node("logs_dicts")
    run = client.get_run(run_id)
    assert run.data.tags["stage"] == "champion"
    assert run.data.params == {"lr": "0.1", "depth": "6"}
    assert run.data.metrics == {"auc": 0.91, "loss": 0.2}
    history = client.get_metric_history(run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.3), (2, 0.2)]
