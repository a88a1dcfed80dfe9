"""Wait until the MLflow databases have the schema this MLflow expects. Never migrates.

The server pod's init container. The migration Job (one per install/upgrade) runs
``mlflow db upgrade``; servers start only once it has, so no replica migrates, none races
the Job on a fresh database, and none crash-loops on "out-of-date database schema".

Environment: MLFLOW_BACKEND_STORE_URI (tracking database), MLFLOW_AUTH_DATABASE_URI
(basic-auth database, optional), SCHEMA_WAIT_TIMEOUT_SECONDS, SCHEMA_WAIT_INTERVAL_SECONDS.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.pool import NullPool


class DriverMissing(Exception):
    """The URI names a database driver the image lacks: waiting cannot help."""


def tracking_migrations() -> ScriptDirectory:
    from mlflow.store.db.utils import _get_alembic_config

    return ScriptDirectory.from_config(_get_alembic_config(""))


def auth_migrations() -> ScriptDirectory:
    # Read the auth migrations directly: importing mlflow.server.auth builds the whole app.
    spec = importlib.util.find_spec("mlflow.server.auth")
    assert spec is not None and spec.origin is not None, "MLflow without its auth app"
    return ScriptDirectory(str(Path(spec.origin).parent / "db" / "migrations"))


def read_revision(uri: str, version_table: str) -> str | None:
    """The database's alembic revision; None while the database has no schema yet.

    Raises DriverMissing for a driver the image lacks, SQLAlchemyError when unreachable.
    """
    url = sqlalchemy.engine.make_url(uri)
    # Connecting would create an empty SQLite file; the Job creates it, we only look.
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        return None
    try:
        engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    except (ImportError, sqlalchemy.exc.NoSuchModuleError) as exc:
        raise DriverMissing(
            f"no database driver for {url.drivername}:// ({exc}). This image has psycopg2: "
            "write the PostgreSQL URI as postgresql+psycopg2://... (SQLAlchemy 2.1 maps a bare "
            "postgresql:// to psycopg 3)."
        ) from exc
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": version_table})
            return context.get_current_revision()
    finally:
        engine.dispose()


def current_revision(uri: str, version_table: str) -> str | None:
    """Like read_revision, but an unreachable database counts as not ready yet (None)."""
    try:
        return read_revision(uri, version_table)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        backend = sqlalchemy.engine.make_url(uri).get_backend_name()
        print(f"  {backend} database not reachable yet: {type(exc).__name__}")
        return None


@dataclass(frozen=True)
class Database:
    """One database the server uses, and the migrations this image's MLflow has for it."""

    label: str  # "tracking" or "auth", as migrate.py names them
    uri: str
    version_table: str
    migrations: ScriptDirectory

    @property
    def head(self) -> str | None:
        return self.migrations.get_current_head()

    def knows(self, revision: str) -> bool:
        """Whether this MLflow has the revision (False: the schema is newer than the image)."""
        return revision in {r.revision for r in self.migrations.walk_revisions()}

    def newer_message(self, found: str) -> str:
        return (
            f"{self.label} schema is {found}, newer than this MLflow knows (it expects "
            f"{self.head}): the image was downgraded. Use the newer image, or restore the "
            "database backup taken before the upgrade."
        )


def databases_from_env(env: Mapping[str, str]) -> list[Database]:
    """The tracking database, and the basic-auth one when MLFLOW_AUTH_DATABASE_URI is set."""
    found = [
        Database(
            "tracking", env["MLFLOW_BACKEND_STORE_URI"], "alembic_version", tracking_migrations()
        )
    ]
    if auth_uri := env.get("MLFLOW_AUTH_DATABASE_URI"):
        found.append(Database("auth", auth_uri, "alembic_version_auth", auth_migrations()))
    return found


def main() -> int:
    timeout = float(os.environ.get("SCHEMA_WAIT_TIMEOUT_SECONDS", "900"))
    interval = float(os.environ.get("SCHEMA_WAIT_INTERVAL_SECONDS", "2"))
    databases = databases_from_env(os.environ)

    deadline = time.monotonic() + timeout
    while True:
        pending = []
        for database in databases:
            try:
                found = current_revision(database.uri, database.version_table)
            except DriverMissing as exc:
                print(f"{database.label} database: {exc}", file=sys.stderr)
                return 2
            if found is not None and not database.knows(found):
                print(database.newer_message(found), file=sys.stderr)
                return 3
            if found != database.head:
                pending.append(
                    f"{database.label} schema is {found or 'absent'}, "
                    f"MLflow expects {database.head}"
                )
        if not pending:
            print("database schema is current; starting the server")
            return 0
        if time.monotonic() > deadline:
            print(
                f"gave up after {timeout:.0f} s: {'; '.join(pending)}. The migration Job "
                "(<release>-mlflow-migrate-<revision>) runs `mlflow db upgrade`: see its logs "
                "with kubectl logs job/<name>.",
                file=sys.stderr,
            )
            return 1
        print(f"waiting for the migration Job: {'; '.join(pending)}", flush=True)
        time.sleep(interval)


if __name__ == "__main__":
    sys.exit(main())
