"""The code location Dagster loads: ``dagster dev -m dagma.definitions``.

The environment is read once, here, through :func:`dagma.mlflow_resource_from_env`
(the same call your own code location makes); a bad value stops the location from
loading with a message that names the variable.
"""

from __future__ import annotations

from dagster import Definitions

from dagma import mlflow_resource_from_env
from dagma.defs.train_model import train_model_stub

defs = Definitions(
    assets=[train_model_stub],
    resources={"tracking": mlflow_resource_from_env()},
)
