"""Session-wide fixtures: one real MLflow server for the whole run (it takes ~13 s to start)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dagma.dev import local_mlflow


@pytest.fixture(scope="session")
def mlflow_server_process(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[local_mlflow.LocalMlflowServer]:
    """A real MLflow server (SQLite store, proxied artifacts) on 127.0.0.1, for the session."""
    server = local_mlflow.start(tmp_path_factory.mktemp("mlflow-server"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_server(mlflow_server_process: local_mlflow.LocalMlflowServer) -> str:
    """URL of the session's MLflow server."""
    return mlflow_server_process.url


@pytest.fixture(scope="session")
def mlflow_artifacts_dir(mlflow_server_process: local_mlflow.LocalMlflowServer) -> Path:
    """Where the session's MLflow server stores proxied artifacts (its --artifacts-destination)."""
    return mlflow_server_process.data_dir / "artifacts"
