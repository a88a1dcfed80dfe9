"""Fixtures shared by the chart tests that run the chart's containers' commands for real."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.postgres import PostgresServer, start_postgres


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL with an empty ``mlflow`` database, for the module."""
    server = start_postgres(database="mlflow", user="mlflow")
    yield server
    server.stop()
