"""The training code location: ``dagster dev -m dagma.examples.training.definitions``.

Needs the ``training`` extra (``pip install 'dagma[training]'``: scikit-learn and MLflow's
sklearn flavour) and tracking on (``MLFLOW_USE_TRACKING=true``, ``MLFLOW_TRACKING_URI``):
the model is logged to MLflow and registered there. The environment is read once, by
:func:`dagma.mlflow_resource_from_env`, as for the stub's location.

Two jobs over the same assets, told apart by name rather than by sniffing the environment:
``training_pipeline`` runs every step in the run's own process (``dagster dev``,
``dagster job execute``, ``make demo-training``); ``training_pipeline_k8s`` runs each step
in a Kubernetes Job of its own (``k8s_job_executor``), for a Dagster whose run launcher is
the K8sRunLauncher (charts/dagma): its step pods get the code location's image and MLflow
settings from the run, as run pods do. Launched anywhere else it fails at its start, when
it finds no Kubernetes API to create the step Jobs with.

Both run inside one MLflow parent run per Dagster run (:func:`dagma.mlflow_parent_runs`),
with ``trained_model``'s and ``scored_visits``' runs nested under it, and the location ships
dagma's run-endings sensor, which ends them if a run's pods die.
"""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job, in_process_executor
from dagster_k8s import k8s_job_executor

from dagma import (
    MlflowRunRecorder,
    mlflow_parent_runs,
    mlflow_resource_from_env,
    mlflow_run_endings_sensor,
)
from dagma.examples.training import contract
from dagma.examples.training.assets import (
    champion_model,
    new_visits,
    scored_visits,
    trained_model,
    visit_history,
)
from dagma.examples.training.checks import test_rmse_below_limit
from dagma.examples.training.registry import ModelRegistry

ASSETS = [visit_history, new_visits, trained_model, champion_model, scored_visits]


def build_definitions(
    tracking: MlflowRunRecorder, model_name: str = contract.MODEL_NAME
) -> Definitions:
    """The location's Definitions around ``tracking`` (tests pass their own resource)."""
    # Each run of either job is one MLflow parent run, its steps' runs nested under it.
    training_pipeline = define_asset_job(
        contract.JOB,
        selection=AssetSelection.groups(contract.GROUP),
        description="One day: slice the data, train, register, gate, promote, score.",
    )
    training_pipeline_k8s = define_asset_job(
        contract.K8S_JOB,
        selection=AssetSelection.groups(contract.GROUP),
        description="The same on Kubernetes, each step in a pod of its own (k8s_job_executor); "
        "only where Dagster launches runs with the K8sRunLauncher.",
        executor_def=mlflow_parent_runs(tracking, k8s_job_executor),
    )
    return Definitions(
        assets=ASSETS,
        asset_checks=[test_rmse_below_limit],
        jobs=[training_pipeline, training_pipeline_k8s],
        resources={
            "tracking": tracking,
            "registry": ModelRegistry(tracking=tracking, model_name=model_name),
        },
        # One process per run: each step process would import scikit-learn and MLflow again.
        # (training_pipeline_k8s names its own executor.)
        executor=mlflow_parent_runs(tracking, in_process_executor),
        sensors=[mlflow_run_endings_sensor(tracking)],
    )


defs = build_definitions(mlflow_resource_from_env())
