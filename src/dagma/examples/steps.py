"""Three steps, one MLflow parent: ``dagster dev -m dagma.examples.steps``.

The smallest pipeline that shows dagma's grouping: two feature assets and a model that
depends on both, each recording its own MLflow run (a param, a metric, a file) through
dagma's resource, nested under the one parent run of the Dagster run. Nothing to install
beyond dagma; tracking on (``MLFLOW_USE_TRACKING=true``) to see the runs in MLflow.

Two jobs over the same assets: ``three_steps`` on the multiprocess executor (each step a
process of its own) and ``three_steps_k8s`` on ``k8s_job_executor`` (each step a Kubernetes
Job of its own, for a Dagster whose run launcher is the K8sRunLauncher, as charts/dagma's).
Either way the run worker creates the parent before any step and records its id on the
Dagster run, where each step reads it: no step searches MLflow.
"""

import tempfile
from pathlib import Path

from dagster import AssetExecutionContext, Definitions, asset, define_asset_job
from dagster_k8s import k8s_job_executor

from dagma import (
    MlflowRunRecorder,
    mlflow_parent_runs,
    mlflow_resource_from_env,
    mlflow_run_endings_sensor,
)

# (No `from __future__ import annotations`: Dagster reads the context annotations.)


def record_step(context: AssetExecutionContext, tracking: MlflowRunRecorder) -> None:
    """What each step records: its asset as a param, a row count, a one-line summary file."""
    with tracking.run(context):
        tracking.log_param("asset", context.asset_key.to_user_string())
        tracking.log_metric("rows", 10)
        with tempfile.TemporaryDirectory() as tmp:
            summary = Path(tmp) / "summary.txt"
            summary.write_text(context.asset_key.to_user_string())
            tracking.log_artifact(summary)


@asset
def features_a(context: AssetExecutionContext, tracking: MlflowRunRecorder) -> None:
    record_step(context, tracking)


@asset
def features_b(context: AssetExecutionContext, tracking: MlflowRunRecorder) -> None:
    record_step(context, tracking)


@asset(deps=[features_a, features_b])
def model(context: AssetExecutionContext, tracking: MlflowRunRecorder) -> None:
    record_step(context, tracking)


ASSETS = [features_a, features_b, model]


def build_definitions(tracking: MlflowRunRecorder) -> Definitions:
    """The location's Definitions around ``tracking``."""
    return Definitions(
        assets=ASSETS,
        jobs=[
            define_asset_job("three_steps", ASSETS),
            define_asset_job(
                "three_steps_k8s",
                ASSETS,
                executor_def=mlflow_parent_runs(tracking, k8s_job_executor),
                description="Each step in a pod of its own: only where Dagster launches runs "
                "with the K8sRunLauncher.",
            ),
        ],
        resources={"tracking": tracking},
        executor=mlflow_parent_runs(tracking),
        sensors=[mlflow_run_endings_sensor(tracking)],
    )


defs = build_definitions(mlflow_resource_from_env())
