"""The code location Dagster loads: ``dagster dev -m dagma.definitions``.

The environment is read once, here, through :func:`dagma.mlflow_resource_from_env`
(the same call your own code location makes); a bad value stops the location from
loading with a message that names the variable.
"""

from __future__ import annotations

from dagster import Definitions

from dagma import mlflow_parent_runs, mlflow_resource_from_env, mlflow_run_endings_sensor
from dagma.defs.train_model import train_model_stub

tracking = mlflow_resource_from_env()
defs = Definitions(
    assets=[train_model_stub],
    resources={"tracking": tracking},
    # One MLflow parent run per Dagster run (the steps' runs nested under it), and the
    # daemon's sensor for the endings a killed process could not record.
    executor=mlflow_parent_runs(tracking),
    sensors=[mlflow_run_endings_sensor(tracking)],
)
