"""The training code location: ``dagster dev -m dagma.examples.training.definitions``.

Needs the ``training`` extra (``pip install 'dagma[training]'``: scikit-learn and MLflow's
sklearn flavour) and tracking on (``MLFLOW_USE_TRACKING=true``, ``MLFLOW_TRACKING_URI``):
the model is logged to MLflow and registered there. The environment is read once, by
:func:`dagma.mlflow_resource_from_env`, as for the stub's location.
"""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job, in_process_executor

from dagma import MlflowRunRecorder, mlflow_resource_from_env
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

training_pipeline = define_asset_job(
    contract.JOB,
    selection=AssetSelection.groups(contract.GROUP),
    description="One day: slice the data, train, register, gate, promote, score.",
)

ASSETS = [visit_history, new_visits, trained_model, champion_model, scored_visits]


def build_definitions(
    tracking: MlflowRunRecorder, model_name: str = contract.MODEL_NAME
) -> Definitions:
    """The location's Definitions around ``tracking`` (tests pass their own resource)."""
    return Definitions(
        assets=ASSETS,
        asset_checks=[test_rmse_below_limit],
        jobs=[training_pipeline],
        resources={
            "tracking": tracking,
            "registry": ModelRegistry(tracking=tracking, model_name=model_name),
        },
        # One process per run: each step process would import scikit-learn and MLflow again.
        executor=in_process_executor,
    )


defs = build_definitions(mlflow_resource_from_env())
