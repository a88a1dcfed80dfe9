"""The library: the two MLflow resources, the API they share, and what they raise.

``MlflowTrackingResource`` (:mod:`.resource`) writes to MLflow through the
official client; ``MlflowStubResource`` (:mod:`.stub`) keeps everything in memory
and needs no server. Assets are written once against ``MlflowRunRecorder``
(:mod:`.recorder`)::

    with tracking.run():
        tracking.log_param("n_estimators", 10)

A Dagster run's MLflow runs nest under one parent run created by its run worker
(:func:`mlflow_parent_runs`, :mod:`.parent_runs`); what dead processes could not end, the
daemon's sensor ends (:func:`mlflow_run_endings_sensor`, :mod:`.run_endings`), both from the
ids the Dagster run recorded (:mod:`.dagster_records`).

Inside: :mod:`.checks` (the input rules both apply), :mod:`.batching` (values sent
together),
:mod:`.errors`, and :mod:`.from_env` (:func:`mlflow_resource_from_env`). Users import
these names from :mod:`dagma`. Importing this package does not import mlflow: the
tracking resource does so when a run starts.
"""

from dagma.tracking.errors import (
    MlflowHostRefusedError,
    MlflowLoginRefusedError,
    MlflowServerError,
    MlflowServerUnreachableError,
    NotAnMlflowServerError,
    TrackingInputError,
    TrackingUsageError,
)
from dagma.tracking.from_env import mlflow_resource_from_env
from dagma.tracking.parent_runs import mlflow_parent_runs
from dagma.tracking.recorder import MlflowRunRecorder, RunStatus
from dagma.tracking.resource import MlflowTrackingResource, run_tags
from dagma.tracking.run_endings import mlflow_run_endings_sensor
from dagma.tracking.stub import MlflowStubResource, StubRun

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
    "StubRun",
    "TrackingInputError",
    "TrackingUsageError",
    "mlflow_parent_runs",
    "mlflow_resource_from_env",
    "mlflow_run_endings_sensor",
    "run_tags",
]
