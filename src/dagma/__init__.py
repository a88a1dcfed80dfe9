"""dagma: Dagster assets that record their params, metrics and artifacts in MLflow Tracking.

The public names, for your own code location::

    from dagma import MlflowRunRecorder, mlflow_resource_from_env

They are loaded on first use, so ``import dagma`` itself imports neither Dagster
nor MLflow, and never builds dagma's own example Definitions.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dagma.defs.models.resources import (
        MlflowRunRecorder,
        MlflowStubResource,
        MlflowTrackingResource,
    )
    from dagma.resource_from_env import mlflow_resource_from_env
    from dagma.settings import SettingsError

# public name -> module that defines it
_PUBLIC = {
    "mlflow_resource_from_env": "dagma.resource_from_env",
    "MlflowRunRecorder": "dagma.defs.models.resources",
    "MlflowStubResource": "dagma.defs.models.resources",
    "MlflowTrackingResource": "dagma.defs.models.resources",
    "SettingsError": "dagma.settings",
}
__all__ = [
    "MlflowRunRecorder",
    "MlflowStubResource",
    "MlflowTrackingResource",
    "SettingsError",
    "mlflow_resource_from_env",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'dagma' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
