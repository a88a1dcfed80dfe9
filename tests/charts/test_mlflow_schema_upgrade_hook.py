"""The schema-upgrade hook's decisions against real databases: stop nothing, or stop first.

The hook container runs as a local process taken from an upgrade's rendered manifests
(support.mlflow_servers.localizer), against a real SQLite file and a real PostgreSQL server
(support.postgres). There is no Kubernetes here, and nothing mocks it: a hook that called the
API would fail for want of a service account. So these tests prove that a database already
current (or still empty) stops nothing, that a database behind this MLflow's head is never
migrated without first stopping the servers, and that what blocks the migration (another
client, an unreachable database) is named. Scaling the servers to 0 and waiting for their
pods is proved on the cluster only.
"""

from __future__ import annotations

import importlib
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from types import ModuleType

import pytest
import sqlalchemy
from support import mlflow_servers
from support.helm import CHARTS, Rendered, render
from support.mlflow_options import AUTH, OPTIONS, POSTGRESQL, S3
from support.postgres import PostgresServer

from dagma.dev.local_mlflow import free_port

HOOK = "dagma-mlflow-schema-upgrade"
MIGRATE = "dagma-mlflow-migrate-2"
MLFLOW_3_16_HEAD = "b7e2c1a4d9f3"  # the tracking head of MLflow 3.16.1, older than this one's
NOTHING_TO_STOP = "every schema is current: nothing to stop"
ADMIN = {"username": "dagma-admin", "password": secrets.token_urlsafe(24)}


@pytest.fixture(scope="module", autouse=True)
def _basic_auth_installed() -> None:
    mlflow_servers.require_basic_auth()


def _run(
    rendered: Rendered, job: str, tmp: Path, volume: Path, data: dict
) -> subprocess.CompletedProcess[str]:
    """Run every container of ``job`` in order; the last result (or the first failure)."""
    localize = mlflow_servers.localizer(rendered, tmp, volume, data)
    doc = rendered.one("Job", job)
    pod = doc["spec"]["template"]["spec"]
    for spec in [*pod.get("initContainers", []), *pod["containers"]]:
        result = localize(doc, spec["name"]).run(timeout=300)
        if result.returncode != 0:
            break
    return result


def _revision(postgres: PostgresServer, table: str = "alembic_version") -> str:
    with closing(postgres.connect()) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT version_num FROM {table}")
        return cursor.fetchone()[0]


@contextmanager
def _stamped(postgres: PostgresServer, revision: str) -> Iterator[str]:
    """The tracking database marked as at ``revision`` for a while; its head restored after."""
    head = _revision(postgres)
    with closing(postgres.connect()) as connection, connection.cursor() as cursor:
        cursor.execute("UPDATE alembic_version SET version_num = %s", (revision,))
        connection.commit()
    try:
        yield head
    finally:
        with closing(postgres.connect()) as connection, connection.cursor() as cursor:
            cursor.execute("UPDATE alembic_version SET version_num = %s", (head,))
            connection.commit()


@pytest.fixture(scope="module")
def pg_release(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """An upgrade of a PostgreSQL + S3 + auth release (the Deployment rolls), its schema current."""
    rendered = render("mlflow", {**POSTGRESQL, **S3, **AUTH}, revision=2)
    data = {"mlflow-db": {"uri": postgres.psycopg2_url}, "mlflow-admin": ADMIN}
    tmp = tmp_path_factory.mktemp("pg-release")
    migrated = _run(rendered, MIGRATE, tmp, tmp / "volume", data)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    return rendered, data, tmp


def _sqlite_upgrade(tmp_path: Path) -> tuple[Rendered, Path]:
    """An upgrade of a SQLite release on a ReadWriteMany volume (the Deployment rolls), and
    the volume, empty."""
    volume = tmp_path / "volume"
    volume.mkdir()
    return render("mlflow", OPTIONS["read-write-many"], revision=2), volume


def test_sqlite_without_a_schema_yet_stops_nothing_and_creates_no_file(tmp_path: Path):
    rendered, volume = _sqlite_upgrade(tmp_path)
    result = _run(rendered, HOOK, tmp_path, volume, {})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tracking schema: absent" in result.stdout
    assert NOTHING_TO_STOP in result.stdout
    assert not (volume / "mlflow.db").exists(), "the hook created the database"


def test_sqlite_at_this_mlflows_head_stops_nothing(tmp_path: Path):
    rendered, volume = _sqlite_upgrade(tmp_path)
    migrated = _run(rendered, MIGRATE, tmp_path, volume, {})
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    result = _run(rendered, HOOK, tmp_path, volume, {})
    assert result.returncode == 0, result.stdout + result.stderr
    assert NOTHING_TO_STOP in result.stdout
    assert "stopping" not in result.stdout


def test_postgresql_at_this_mlflows_head_stops_nothing_and_calls_no_api(
    pg_release: tuple, postgres: PostgresServer
):
    rendered, data, tmp = pg_release
    before = (_revision(postgres), _revision(postgres, "alembic_version_auth"))
    result = _run(rendered, HOOK, tmp, tmp / "volume", data)
    # Any Kubernetes call would have failed here: no service account, no API server.
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tracking schema: " in result.stdout and "auth schema: " in result.stdout
    assert NOTHING_TO_STOP in result.stdout
    assert (_revision(postgres), _revision(postgres, "alembic_version_auth")) == before


def test_a_database_behind_this_mlflow_is_never_migrated_before_the_servers_are_stopped(
    pg_release: tuple, postgres: PostgresServer
):
    rendered, data, tmp = pg_release
    with _stamped(postgres, MLFLOW_3_16_HEAD) as head:
        result = _run(rendered, HOOK, tmp, tmp / "volume", data)
        assert f"tracking schema: {MLFLOW_3_16_HEAD}, this MLflow expects {head}" in result.stdout
        # It went for the API to stop the servers, found none here, and migrated nothing.
        assert result.returncode == 2, result.stdout + result.stderr
        assert "no Kubernetes service account" in result.stderr
        assert "Nothing was stopped or migrated" in result.stderr
        assert _revision(postgres) == MLFLOW_3_16_HEAD


def test_a_schema_newer_than_this_mlflow_stops_the_upgrade_before_anything_changes(
    pg_release: tuple, postgres: PostgresServer
):
    rendered, data, tmp = pg_release
    with _stamped(postgres, "ffffffffffff"):
        result = _run(rendered, HOOK, tmp, tmp / "volume", data)
        assert result.returncode == 3, result.stdout + result.stderr
        assert "newer than this MLflow knows" in result.stderr
        assert "no Kubernetes service account" not in result.stderr


@pytest.fixture
def hook_module(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The hook script imported, as the pod runs it: beside migrate.py and wait_for_schema.py."""
    monkeypatch.syspath_prepend(str(CHARTS / "mlflow" / "files"))
    return importlib.import_module("stop_writers_and_migrate")


def test_another_client_on_the_database_is_named_and_blocks_the_migration(
    hook_module: ModuleType, postgres: PostgresServer
):
    uri = postgres.psycopg2_url
    assert hook_module.other_sessions(uri) == []
    with closing(postgres.connect()) as writer, writer.cursor() as cursor:
        cursor.execute("SET application_name = 'old-mlflow-server'")
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
        [session] = hook_module.other_sessions(uri)
        assert f"pid {pid}" in session and "application old-mlflow-server" in session
        with pytest.raises(hook_module.HookError) as failure:
            hook_module.wait_until(
                lambda: hook_module.other_sessions(uri), 0, "clients are connected", "Stop them."
            )
        message = str(failure.value)
        assert f"pid {pid}" in message and "old-mlflow-server" in message
        assert "The migration has not started" in message and "Stop them." in message
    assert hook_module.other_sessions(uri) == []


def test_an_unreachable_database_is_named_without_its_password(
    hook_module: ModuleType, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(hook_module, "READ_ATTEMPTS", 1)
    password = secrets.token_urlsafe(12)
    uri = f"postgresql+psycopg2://mlflow:{password}@127.0.0.1:{free_port()}/mlflow"
    [database] = hook_module.databases_from_env({"MLFLOW_BACKEND_STORE_URI": uri})
    with pytest.raises(hook_module.HookError) as failure:
        hook_module.pending_upgrades([database])
    message = str(failure.value)
    assert "tracking database" in message and "did not answer" in message
    assert "Nothing was stopped" in message
    assert password not in message and "***" in message


def test_shown_urls_hide_the_password(hook_module: ModuleType):
    url = sqlalchemy.engine.URL.create(
        "postgresql+psycopg2", "u", "s3cret", "db.example", 5432, "mlflow"
    )
    assert "s3cret" not in hook_module.shown(url.render_as_string(hide_password=False))
