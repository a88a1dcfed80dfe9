"""The training pipeline (dagma.examples.training) through Dagster against a real MLflow server.

Two runs of the job, in order, on one Dagster instance: a good model for the last day
(its version becomes the champion), then a deliberately bad one for another day (its
version fails the check; the alias stays). Then ``make demo-training``'s module against the
same server, for a third day: its version takes the alias, and the demo prints it; then
the demo's ``--bad`` (the alias stays) and ``benchmarks/training.py``. What is asserted is
read back from MLflow's registry and runs and from Dagster's event log.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import mlflow.pyfunc
import pandas as pd
import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, in_process_executor
from dagster_k8s import k8s_job_executor
from mlflow import MlflowClient
from support.dagster_local import command_env, init_instance

from dagma import MlflowStubResource, MlflowTrackingResource
from dagma.examples.training import contract, data
from dagma.examples.training.definitions import build_definitions

EXPERIMENT = "training-tests"
GOOD_DAY, BAD_DAY, DEMO_DAY = contract.LAST_DAY, "2025-01-05", "2025-01-06"


@dataclass(frozen=True)
class PipelineRun:
    """One run of the job, as Dagster recorded it, and where the alias pointed afterwards."""

    day: str
    success: bool
    dagster_run_id: str
    metadata: dict[str, dict]  # asset -> its materialization's metadata values
    data_versions: dict[str, str]  # asset -> the data version its materialization recorded
    check: dict  # the check evaluation's passed flag and metadata
    champion_after: str | None


def _champion(client: MlflowClient) -> str | None:
    return client.get_registered_model(contract.MODEL_NAME).aliases.get(contract.ALIAS)


def _champion_or_none(client: MlflowClient) -> str | None:
    """Where the alias points before the first run (no model yet in a fresh session)."""
    names = [model.name for model in client.search_registered_models()]
    return _champion(client) if contract.MODEL_NAME in names else None


def _run(instance: DagsterInstance, defs, client: MlflowClient, day: str, config=None):
    job = defs.resolve_job_def(contract.JOB)
    result = job.execute_in_process(
        run_config=contract.run_config(config), instance=instance, partition_key=day,
        raise_on_error=False,
    )  # fmt: skip
    records = instance.get_records_for_run(
        result.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    ).records
    metadata, versions = {}, {}
    for record in records:
        event = record.event_log_entry.asset_materialization
        key = event.asset_key.to_user_string()
        metadata[key] = {name: value.value for name, value in event.metadata.items()}
        versions[key] = event.tags.get("dagster/data_version")
    [check_record] = instance.get_records_for_run(
        result.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    evaluation = check_record.event_log_entry.dagster_event.event_specific_data
    check = {"passed": evaluation.passed,
             **{name: value.value for name, value in evaluation.metadata.items()}}  # fmt: skip
    return PipelineRun(
        day, result.success, result.run_id, metadata, versions, check, _champion(client)
    )


@pytest.fixture(scope="module")
def client(mlflow_server: str) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_server)


@pytest.fixture(scope="module")
def runs(
    mlflow_server: str, client: MlflowClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, PipelineRun]]:
    """Good (last day), then bad (another day), and where the alias was before each."""
    home = init_instance(tmp_path_factory.mktemp("training-dagster"))
    tracking = MlflowTrackingResource(tracking_uri=mlflow_server, experiment=EXPERIMENT)
    defs = build_definitions(tracking)
    with DagsterInstance.from_config(str(home)) as instance:
        before = _champion_or_none(client)
        good = _run(instance, defs, client, GOOD_DAY)
        bad = _run(instance, defs, client, BAD_DAY, contract.BAD_MODEL_CONFIG)
        yield {"before": before, "good": good, "bad": bad}


def _version(run: PipelineRun) -> str:
    return str(run.metadata[contract.TRAINED_MODEL]["model_version"])


def test_alias_moves_only_when_the_check_passes(
    runs: dict[str, PipelineRun], client: MlflowClient
) -> None:
    good, bad = runs["good"], runs["bad"]
    assert good.success and good.check["passed"] is True
    assert good.champion_after == _version(good) != runs["before"]
    # The bad model was registered, judged, refused: the run failed at the check, the
    # alias did not move, and the version carries the verdict.
    assert not bad.success
    assert bad.check["passed"] is False
    assert bad.check["model_version"] == int(_version(bad))
    assert bad.check["test_rmse"] > contract.MAX_TEST_RMSE
    assert contract.CHAMPION not in bad.metadata and contract.SCORED not in bad.metadata
    assert bad.champion_after == good.champion_after
    refused = client.get_model_version(contract.MODEL_NAME, _version(bad))
    assert refused.tags[f"dagster.check.{contract.CHECK}"] == "failed"
    assert refused.aliases == []
    assert client.get_run(refused.run_id).data.metrics["test_rmse"] == bad.check["test_rmse"]


def test_champion_loads_from_the_alias_uri_and_predicts(
    runs: dict[str, PipelineRun], client: MlflowClient, mlflow_server: str, tmp_path: Path
) -> None:
    mlflow.set_tracking_uri(mlflow_server)  # models:/ URIs resolve against the global one
    champion = mlflow.pyfunc.load_model(f"models:/{contract.MODEL_NAME}@{contract.ALIAS}")
    visits = data.new_visits(GOOD_DAY)
    predicted = champion.predict(visits[data.feature_columns()])
    assert len(predicted) == len(visits) > 0
    # The same predictions the scoring run of that day stored, made with the same version.
    scoring_run = runs["good"].metadata[contract.SCORED]["mlflow_run_id"]
    stored = pd.read_csv(client.download_artifacts(scoring_run, "predictions.csv", tmp_path))
    assert list(stored["predicted"].round(6)) == list(pd.Series(predicted).round(6))


def test_registered_version_is_tagged_with_its_dagster_run_asset_and_code_version(
    runs: dict[str, PipelineRun], client: MlflowClient
) -> None:
    good = runs["good"]
    version = client.get_model_version(contract.MODEL_NAME, _version(good))
    assert {key: version.tags[key] for key in contract.VERSION_TAGS} == {
        "dagster.run_id": good.dagster_run_id,
        "dagster.asset_key": contract.TRAINED_MODEL,
        "dagster.partition_key": GOOD_DAY,
        "dagster.code_version": contract.TRAINING_CODE_VERSION,
    }
    assert version.tags[f"dagster.check.{contract.CHECK}"] == "passed"
    run = client.get_run(version.run_id)
    assert run.data.tags["dagster.run_id"] == good.dagster_run_id
    # The model is the run's MLflow 3 logged model, with a signature naming the features.
    [output] = run.outputs.model_outputs
    logged = client.get_logged_model(output.model_id)
    assert version.source == f"models:/{output.model_id}"
    assert logged.source_run_id == run.info.run_id
    model_info = mlflow.models.get_model_info(f"{logged.artifact_location}")
    assert [c.name for c in model_info.signature.inputs.inputs] == data.feature_columns()
    assert model_info.saved_input_example_info is not None  # logged with an input example


def test_each_partition_is_its_own_training_run(
    runs: dict[str, PipelineRun], client: MlflowClient
) -> None:
    trained = {
        name: client.get_run(runs[name].metadata[contract.TRAINED_MODEL]["mlflow_run_id"])
        for name in ("good", "bad")
    }
    assert trained["good"].info.run_id != trained["bad"].info.run_id
    assert {name: run.data.tags["dagster.partition_key"] for name, run in trained.items()} == {
        "good": GOOD_DAY, "bad": BAD_DAY
    }  # fmt: skip
    assert trained["good"].data.tags["dagster.run_id"] != trained["bad"].data.tags["dagster.run_id"]
    # Recorded here, by this machine (on Kubernetes each step pod names itself).
    assert {run.data.tags[contract.HOST_TAG] for run in trained.values()} == {socket.gethostname()}
    # Each day's history is its own: fewer visits before an earlier day, another data version.
    rows = {name: int(run.data.params["train_rows"]) for name, run in trained.items()}
    assert rows["good"] > rows["bad"]
    digests = {name: run.inputs.dataset_inputs[0].dataset.digest for name, run in trained.items()}
    assert digests["good"] != digests["bad"]
    # The final metrics are also the materialization's metadata (Dagster plots them).
    for name, run in trained.items():
        metadata = runs[name].metadata[contract.TRAINED_MODEL]
        assert metadata["test_rmse"] == pytest.approx(run.data.metrics["test_rmse"])
        assert len(client.get_metric_history(run.info.run_id, "test_rmse")) == (
            int(run.data.params["n_estimators"])
        )  # one value per boosting stage, the stage as its step
    good = trained["good"].info.run_id
    assert {a.path for a in client.list_artifacts(good)} >= {"feature_importances.json", "plots"}
    assert [a.path for a in client.list_artifacts(good, "plots")] == ["plots/training.png"]


def test_training_inputs_name_the_dagster_asset_partition_and_data_version(
    runs: dict[str, PipelineRun], client: MlflowClient
) -> None:
    good = runs["good"]
    run = client.get_run(good.metadata[contract.TRAINED_MODEL]["mlflow_run_id"])
    [dataset_input] = run.inputs.dataset_inputs
    tags = {tag.key: tag.value for tag in dataset_input.tags}
    assert dataset_input.dataset.name == contract.HISTORY
    assert dataset_input.dataset.digest == good.data_versions[contract.HISTORY]
    assert tags == {
        "mlflow.data.context": "training",
        "dagster.asset_key": contract.HISTORY,
        "dagster.partition_key": GOOD_DAY,
        "dagster.data_version": good.data_versions[contract.HISTORY],
        "dagster.run_id": good.dagster_run_id,
    }
    assert good.data_versions[contract.HISTORY] == data.data_version(data.history(GOOD_DAY))


def test_scoring_run_names_the_model_version_it_used(
    runs: dict[str, PipelineRun], client: MlflowClient
) -> None:
    good = runs["good"]
    scored = good.metadata[contract.SCORED]
    run = client.get_run(scored["mlflow_run_id"])
    version = client.get_model_version(contract.MODEL_NAME, _version(good))
    assert run.data.tags["model_version"] == version.version
    assert run.data.tags["model_uri"] == f"models:/{contract.MODEL_NAME}@{contract.ALIAS}"
    assert run.data.tags["dagster.run_id"] == good.dagster_run_id
    assert scored["model_version"] == int(version.version)
    assert run.data.metrics["rows"] == len(data.new_visits(GOOD_DAY))
    assert run.data.metrics["batch_rmse"] > 0
    # MLflow 3's link from the run to the logged model it used, and the batch it scored.
    assert [m.model_id for m in run.inputs.model_inputs] == [
        version.source.removeprefix("models:/")
    ]
    [dataset_input] = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == contract.NEW_VISITS
    assert dataset_input.dataset.digest == good.data_versions[contract.NEW_VISITS]


def test_the_local_job_runs_in_process_and_the_kubernetes_one_a_pod_per_step() -> None:
    """Two jobs over the same assets: ``training_pipeline`` here, ``training_pipeline_k8s``
    where Dagster launches runs on Kubernetes (tests/cluster/test_training_cluster.py)."""
    defs = build_definitions(MlflowStubResource())
    local, kubernetes = (defs.resolve_job_def(name) for name in (contract.JOB, contract.K8S_JOB))
    assert local.executor_def is in_process_executor
    assert kubernetes.executor_def is k8s_job_executor
    assert local.asset_layer.selected_asset_keys == kubernetes.asset_layer.selected_asset_keys


def test_training_with_tracking_off_fails_saying_what_to_set(tmp_path: Path) -> None:
    defs = build_definitions(MlflowStubResource())
    with DagsterInstance.from_config(str(init_instance(tmp_path))) as instance:
        result = defs.resolve_job_def(contract.JOB).execute_in_process(
            instance=instance, partition_key=GOOD_DAY, raise_on_error=False
        )
    [failure] = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert failure.step_key == contract.TRAINED_MODEL
    message = str(failure.step_failure_data.error.message)
    assert "MLFLOW_USE_TRACKING=true" in message and "MLFLOW_TRACKING_URI" in message


def test_demo_trains_registers_promotes_and_prints_what_mlflow_holds(
    runs: dict[str, PipelineRun], mlflow_server: str, client: MlflowClient, tmp_path: Path
) -> None:
    """``make demo-training``'s module against the session server, for another day: its
    version takes the alias from the champion of the runs above, and the demo says so."""
    before = runs["bad"].champion_after
    port = urlparse(mlflow_server).port
    result = subprocess.run(
        [sys.executable, "-m", "dagma.examples.training.demo", "--port", str(port),
         "--day", DEMO_DAY],
        cwd=tmp_path, env=command_env(tmp_path / "unused"), capture_output=True, text=True,
        timeout=400,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    after = _champion(client)
    assert after != before
    version = client.get_model_version(contract.MODEL_NAME, after)
    assert version.tags["dagster.partition_key"] == DEMO_DAY
    assert f"registered   {contract.MODEL_NAME} version {after}," in result.stdout
    assert f"check        {contract.CHECK}: passed" in result.stdout
    assert f"alias        champion -> version {after} (moved from {before})" in result.stdout
    test_rmse = client.get_run(version.run_id).data.metrics["test_rmse"]
    assert f"'test_rmse': {round(test_rmse, 3)}" in result.stdout
    assert "scoring run  " in result.stdout and f"model version {after}," in result.stdout
    with DagsterInstance.from_config(str(tmp_path / ".dagster-home" / f"training-{port}")) as i:
        [run] = i.get_runs(limit=1)
    assert run.status == DagsterRunStatus.SUCCESS
    assert run.job_name == contract.JOB
    assert version.tags["dagster.run_id"] == run.run_id


def test_demo_bad_trains_a_refused_model_and_the_alias_stays(
    mlflow_server: str, client: MlflowClient, tmp_path: Path
) -> None:
    """``make demo-training BAD=1``: the run fails at the check, as intended (exit code 0),
    its version is registered but refused, and the demo shows the alias where it was."""
    before = _champion(client)
    port = urlparse(mlflow_server).port
    result = subprocess.run(
        [sys.executable, "-m", "dagma.examples.training.demo", "--port", str(port), "--bad"],
        cwd=tmp_path, env=command_env(tmp_path / "unused"), capture_output=True, text=True,
        timeout=400,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert _champion(client) == before
    [newest] = client.search_model_versions(
        f"name='{contract.MODEL_NAME}'", order_by=["version_number DESC"], max_results=1
    )
    assert newest.version != before and newest.aliases == []
    assert newest.tags[f"dagster.check.{contract.CHECK}"] == "failed"
    assert f"registered   {contract.MODEL_NAME} version {newest.version}," in result.stdout
    assert f"check        {contract.CHECK}: FAILED" in result.stdout
    assert f"alias        champion -> version {before} (unchanged)" in result.stdout
    assert f"as intended: the check failed and champion stayed on version {before}" in (
        result.stdout
    )


def test_training_benchmark_measures_the_model_upload_and_the_time_shares(
    mlflow_server: str, tmp_path: Path
) -> None:
    """``python -m benchmarks.training`` against the session server: every part runs, the
    proxy upload it measured is the model's files, and the shares add up to the wall time.
    No timing is asserted (they go to docs/performance.md)."""
    output = tmp_path / "training_results.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.training", "--tracking-uri", mlflow_server,
         "--output", str(output)],
        cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "- upload through the proxy in the asset (log_model)" in result.stdout
    results = json.loads(output.read_text())
    direct = results["direct_upload"]
    for name in ("in_process_cold", "in_process_warm"):
        measured = results[name]
        # What log_model sent through the proxy is exactly the model's files.
        upload = measured["model_upload"]
        assert (upload["files"], upload["bytes"]) == (direct["files"], direct["bytes"])
        assert direct["bytes"] > direct["model_file_bytes"] > 0
        assert all(seconds >= 0 for seconds in measured["seconds"].values())
        assert sum(measured["seconds"].values()) == pytest.approx(measured["wall_seconds"])
        assert measured["seconds"]["training"] > 0 and measured["requests"] > 0
    assert results["fresh_process_seconds"] > 0
