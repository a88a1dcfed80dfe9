"""The library: the two MLflow resources, the API they share, and what they raise.

``MlflowTrackingResource`` (:mod:`.resource`) writes to MLflow through the
official client; ``MlflowStubResource`` (:mod:`.stub`) keeps everything in memory
and needs no server. Assets are written once against ``MlflowRunRecorder``
(:mod:`.recorder`)::

    with tracking.run():
        tracking.log_param("n_estimators", 10)

Inside: :mod:`.checks` (the input rules both apply), :mod:`.batching` (values sent
together), :mod:`.run_endings` (runs a finished Dagster run left RUNNING),
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
from dagma.tracking.recorder import MlflowRunRecorder, RunStatus
from dagma.tracking.resource import MlflowTrackingResource, run_tags
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
    "mlflow_resource_from_env",
    "run_tags",
]
