"""The two MLflow resources and the API they share, importable from one place.

``MlflowTrackingResource`` (:mod:`.tracking`) writes to MLflow through the
official client; ``MlflowStubResource`` (:mod:`.stub`) keeps everything in memory
and needs no server. Assets are written once against ``MlflowRunRecorder``
(:mod:`.recorder`)::

    with tracking.run():
        tracking.log_param("n_estimators", 10)

Importing this module does not import mlflow: the tracking resource does so when
a run starts.
"""

from dagma.defs.models.recorder import (
    MlflowRunRecorder,
    RunStatus,
    TrackingInputError,
    TrackingUsageError,
)
from dagma.defs.models.stub import MlflowStubResource, StubRun
from dagma.defs.models.tracking import MlflowTrackingResource, MlflowUnreachableError, run_tags

__all__ = [
    "MlflowRunRecorder",
    "MlflowStubResource",
    "MlflowTrackingResource",
    "MlflowUnreachableError",
    "RunStatus",
    "StubRun",
    "TrackingInputError",
    "TrackingUsageError",
    "run_tags",
]
