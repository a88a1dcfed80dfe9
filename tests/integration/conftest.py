"""Fixtures for materializing assets against the session's real MLflow server."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from dagma import MlflowTrackingResource


@pytest.fixture
def tracking(mlflow_server: str) -> MlflowTrackingResource:
    """A tracking resource pointed at the session server, as the code location would build it."""
    return MlflowTrackingResource(tracking_uri=mlflow_server, experiment="integration")


@pytest.fixture
def client(mlflow_server: str) -> MlflowClient:
    """The official client, for reading back what the server stored."""
    return MlflowClient(tracking_uri=mlflow_server)
