"""dagma: Dagster assets that record their params, metrics and artifacts in MLflow Tracking.

The public names, for your own code location::

    from dagma import (
        MlflowRunRecorder,             # what assets annotate
        mlflow_parent_runs,            # the executor: one MLflow parent run per Dagster run
        mlflow_resource_from_env,      # the resource the environment asks for
        mlflow_run_endings_sensor,     # the daemon ends what dead processes left RUNNING
    )

They are loaded on first use, so ``import dagma`` itself imports neither Dagster
nor MLflow, and never builds dagma's own example Definitions. They live in
:mod:`dagma.tracking` (the library); the errors a run can raise are
:class:`TrackingUsageError` and :class:`TrackingInputError` (the asset's own calls),
:class:`SettingsError` (the environment), and :class:`MlflowServerError` with one
subclass per way a Tracking server can be unusable.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dagma.settings import SettingsError
    from dagma.tracking import (
        MlflowHostRefusedError,
        MlflowLoginRefusedError,
        MlflowRunRecorder,
        MlflowServerError,
        MlflowServerUnreachableError,
        MlflowStubResource,
        MlflowTrackingResource,
        NotAnMlflowServerError,
        RunStatus,
        StubRun,
        TrackingInputError,
        TrackingUsageError,
        mlflow_parent_runs,
        mlflow_resource_from_env,
        mlflow_run_endings_sensor,
    )

__all__ = [
    "MlflowHostRefusedError",
    "MlflowLoginRefusedError",
    "MlflowRunRecorder",
    "MlflowServerError",
    "MlflowServerUnreachableError",
    "MlflowStubResource",
    "MlflowTrackingResource",
    "NotAnMlflowServerError",
    "RunStatus",
    "SettingsError",
    "StubRun",
    "TrackingInputError",
    "TrackingUsageError",
    "mlflow_parent_runs",
    "mlflow_resource_from_env",
    "mlflow_run_endings_sensor",
]
# public name -> module that defines it (importing dagma.tracking imports Dagster, not MLflow)
_PUBLIC = {name: "dagma.tracking" for name in __all__} | {"SettingsError": "dagma.settings"}


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'dagma' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
