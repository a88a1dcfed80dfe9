"""Session-wide fixtures: one real MLflow server for the whole run (it takes ~13 s to start)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dagma import devserver


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real MLflow server (SQLite store, proxied artifacts) on 127.0.0.1."""
    data_dir = tmp_path_factory.mktemp("mlflow-server")
    server = devserver.start(data_dir)
    yield server.url
    server.stop()
