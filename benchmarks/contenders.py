"""One asset, logged the same way by each contender, as a Dagster job ready to execute.

Every contender's asset writes the same summary file and, unless it is the
``nothing`` baseline, logs one param, one metric and that file as an artifact to
one MLflow run, then ends it. With ``points``, it logs that many values of one
metric with steps instead (a training loop).

- ``nothing``: logs nothing (what any asset costs in Dagster);
- ``stub``: dagma's in-memory stub (tracking off);
- ``dagma``: dagma's tracking resource;
- ``dagster_mlflow``: the official dagster-mlflow resource with its
  ``end_mlflow_on_run_finished`` hook, as its documentation sets it up;
- ``raw_client``: the official ``MlflowClient`` called directly in the asset.
"""

import contextlib
import io
import tempfile
import warnings
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, Definitions, JobDefinition, asset, define_asset_job

from dagma import MlflowRunRecorder, MlflowStubResource, MlflowTrackingResource

CONTENDERS = ("nothing", "stub", "dagma", "dagster_mlflow", "raw_client")
TRACKED = ("dagma", "dagster_mlflow", "raw_client")
EXPERIMENT = "bench"
JOB = "bench"
# dagster-mlflow is marked beta; saying so at every materialization buries the results.
warnings.filterwarnings("ignore", message=".*is currently in beta.*")
# Dagster's console logger off: its output is not what is measured.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def _summary(tmp: str) -> Path:
    path = Path(tmp) / "train_summary.txt"
    path.write_text("n_estimators=10\nrmse=0.123\n")
    return path


def _dagma_asset(points: int | None) -> Any:
    @asset(name="model")
    def model(tracking: MlflowRunRecorder) -> None:
        with tracking.run(), tempfile.TemporaryDirectory() as tmp:
            if points is not None:
                for step in range(points):
                    tracking.log_metric("loss", 1.0 / (step + 1), step=step)
                return
            tracking.log_param("n_estimators", 10)
            tracking.log_metric("rmse", 0.123)
            tracking.log_artifact(_summary(tmp))

    return model


def _dagster_mlflow_asset(points: int | None) -> Any:
    @asset(name="model", required_resource_keys={"mlflow"})
    def model(context: AssetExecutionContext) -> None:
        mlflow = context.resources.mlflow
        with tempfile.TemporaryDirectory() as tmp:
            if points is not None:
                for step in range(points):
                    mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
                return
            mlflow.log_param("n_estimators", 10)
            mlflow.log_metric("rmse", 0.123)
            mlflow.log_artifact(str(_summary(tmp)))

    return model


def _raw_client_asset(tracking_uri: str, points: int | None) -> Any:
    @asset(name="model")
    def model() -> None:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        run_id = client.create_run(experiment.experiment_id, run_name="model").info.run_id
        with tempfile.TemporaryDirectory() as tmp:
            if points is not None:
                for step in range(points):
                    client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
            else:
                client.log_param(run_id, "n_estimators", 10)
                client.log_metric(run_id, "rmse", 0.123)
                client.log_artifact(run_id, str(_summary(tmp)))
        client.set_terminated(run_id)

    return model


def _nothing_asset() -> Any:
    @asset(name="model")
    def model() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            _summary(tmp)

    return model


def build_job(contender: str, tracking_uri: str, points: int | None = None) -> JobDefinition:
    """The job that materializes ``contender``'s asset against ``tracking_uri``."""
    hooks: set[Any] = set()
    resources: dict[str, Any] = {}
    if contender in ("stub", "dagma"):
        model = _dagma_asset(points)
        resources["tracking"] = (
            MlflowStubResource(experiment=EXPERIMENT)
            if contender == "stub"
            else MlflowTrackingResource(tracking_uri=tracking_uri, experiment=EXPERIMENT)
        )
    elif contender == "dagster_mlflow":
        from dagster_mlflow import end_mlflow_on_run_finished, mlflow_tracking

        model = _dagster_mlflow_asset(points)
        resources["mlflow"] = mlflow_tracking.configured(
            {"experiment_name": EXPERIMENT, "mlflow_tracking_uri": tracking_uri}
        )
        hooks = {end_mlflow_on_run_finished}
    elif contender == "raw_client":
        model = _raw_client_asset(tracking_uri, points)
    elif contender == "nothing":
        model = _nothing_asset()
    else:
        raise ValueError(f"unknown contender {contender!r}; one of {', '.join(CONTENDERS)}")
    job = define_asset_job(JOB, selection=[model], hooks=hooks)
    return Definitions(assets=[model], jobs=[job], resources=resources).resolve_job_def(JOB)


def materialize_once(job: JobDefinition) -> None:
    """Execute ``job`` in this process; raise if it fails."""
    # MLflow prints a "View run" link for the others' runs: not what is measured.
    with contextlib.redirect_stdout(io.StringIO()):
        result = job.execute_in_process(run_config=QUIET)
    if not result.success:
        raise RuntimeError(f"benchmark job {job.name} failed")
