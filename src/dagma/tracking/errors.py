"""What can go wrong while an asset records its run, one class per cause, so callers can catch it.

``TrackingUsageError`` and ``TrackingInputError`` come from the asset's own calls and
are raised by both resources alike. The ``MlflowServerError`` family comes from the
tracking resource's first request to a Tracking server, one class per answer
:mod:`dagma.mlflow_server` tells apart; tracking never falls back to the stub.
"""

from __future__ import annotations

from dagster import Failure


class TrackingUsageError(RuntimeError):
    """A resource method was called when it cannot work (no open run, no asset context)."""


class TrackingInputError(ValueError):
    """A value MLflow would refuse (bad name, non-numeric metric, missing file, ...)."""


class MlflowServerError(Failure):
    """The MLflow Tracking server cannot be used for this run; the message says why and the fix.

    A Dagster ``Failure``: Dagster reports its message as the step's error as is,
    instead of wrapping it under a generic "Error occurred while executing op".
    """


class MlflowServerUnreachableError(MlflowServerError):
    """Nothing answered: connection refused, the host name does not resolve, or a timeout
    (after ``MLFLOW_SERVER_WAIT_SECONDS`` of trying again, when set)."""


class MlflowHostRefusedError(MlflowServerError):
    """The server answered 403 "Invalid Host header": its ``--allowed-hosts`` omits this name."""


class MlflowLoginRefusedError(MlflowServerError):
    """The server asked for a login (401) or denied this one access (403)."""


class NotAnMlflowServerError(MlflowServerError):
    """Something answered, but not as an MLflow Tracking server does (another HTTP status,
    or a body that is not MLflow's JSON)."""
