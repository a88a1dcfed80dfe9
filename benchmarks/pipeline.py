"""The job :mod:`benchmarks.parent_runs` runs: three assets (two features, a model on both),
each logging a param, a metric and an artifact, once with dagma and once with dagster-mlflow
grouping a Dagster run's steps into one MLflow run (its search by ``dagster_run_id``).

Loaded by ``dagster job execute -f``; the environment points both at the benchmark's server.
"""

import os
import tempfile
from pathlib import Path

from dagster import AssetExecutionContext, Definitions, asset, define_asset_job
from dagster_mlflow import mlflow_tracking

from dagma import MlflowRunRecorder, mlflow_parent_runs, mlflow_resource_from_env

STEPS = ("features_a", "features_b", "model")


def _summary(tmp: str, name: str) -> Path:
    path = Path(tmp) / "summary.txt"
    path.write_text(f"{name}\n")
    return path


def _dagma_step(name: str, deps: list) -> object:
    @asset(name=f"dagma_{name}", deps=deps)
    def step(context: AssetExecutionContext, tracking: MlflowRunRecorder) -> None:
        with tracking.run(context), tempfile.TemporaryDirectory() as tmp:
            tracking.log_param("step", name)
            tracking.log_metric("rows", 10)
            tracking.log_artifact(_summary(tmp, name))

    return step


def _dagster_mlflow_step(name: str, deps: list) -> object:
    @asset(name=f"dagster_mlflow_{name}", deps=deps, required_resource_keys={"mlflow"})
    def step(context: AssetExecutionContext) -> None:
        mlflow = context.resources.mlflow
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.log_param(f"step_{name}", name)  # one run for all steps: keys must differ
            mlflow.log_metric(f"rows_{name}", 10)
            mlflow.log_artifact(str(_summary(tmp, name)), artifact_path=name)

    return step


def _three(make) -> list:  # noqa: ANN001
    a, b = make("features_a", []), make("features_b", [])
    return [a, b, make("model", [a, b])]


tracking = mlflow_resource_from_env()
DAGMA, DAGSTER_MLFLOW = _three(_dagma_step), _three(_dagster_mlflow_step)
defs = Definitions(
    assets=[*DAGMA, *DAGSTER_MLFLOW],
    jobs=[
        define_asset_job("dagma", DAGMA, executor_def=mlflow_parent_runs(tracking)),
        define_asset_job("dagster_mlflow", DAGSTER_MLFLOW),
    ],
    resources={
        "tracking": tracking,
        "mlflow": mlflow_tracking.configured(
            {
                "experiment_name": os.environ.get("MLFLOW_EXPERIMENT", "Default"),
                "mlflow_tracking_uri": os.environ.get("MLFLOW_TRACKING_URI"),
            }
        ),
    },
)
