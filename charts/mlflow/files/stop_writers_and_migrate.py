"""Helm pre-upgrade hook: when the new MLflow needs a newer schema, stop every writer, then migrate.

MLflow asks that nothing writes while its schema is upgraded. A rolling update would keep the
old servers writing while the migration Job runs, and afterwards old code would write against
the new schema. So before Helm touches anything, this script (in the NEW image):

1. reads each database's alembic revision and compares it with this image's head; when every
   database is current (or has no schema yet: an install's Job creates it), it exits 0 and
   nothing stops — an upgrade without a new schema keeps its zero-downtime rolling update;
2. otherwise scales the server Deployment to 0 (its scale subresource) and waits until no
   server pod is left and, on PostgreSQL, no other client is connected to the database;
3. runs the same upgrades as the migration Job (migrate.py) and prints the revisions.

It remembers nothing: Helm applies the new Deployment right after the hook, which sets
``replicas`` back from the manifest, and the new servers start on the migrated schema.

Environment: MLFLOW_BACKEND_STORE_URI, MLFLOW_AUTH_DATABASE_URI (optional), SERVER_DEPLOYMENT,
POD_NAMESPACE, WRITERS_GONE_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy
from migrate import DATABASES as UPGRADES
from sqlalchemy.pool import NullPool
from wait_for_schema import Database, DriverMissing, databases_from_env, read_revision

POLL_SECONDS = 2.0
READ_ATTEMPTS = 15  # one every POLL_SECONDS: a database restarting is back within 30 s
# Other client sessions on the database (autovacuum and PostgreSQL's own workers excluded).
OTHER_SESSIONS = sqlalchemy.text(
    "SELECT pid, usename, application_name, client_addr, state FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND backend_type = 'client backend' ORDER BY pid"
)


class HookError(Exception):
    """What went wrong and how to fix it, for the person running ``helm upgrade``."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def shown(uri: str) -> str:
    """The URL without its password, for messages."""
    return sqlalchemy.engine.make_url(uri).render_as_string(hide_password=True)


def revision_of(database: Database) -> str | None:
    """The database's revision, retrying a database that does not answer for a while."""
    for attempt in range(READ_ATTEMPTS):
        try:
            return read_revision(database.uri, database.version_table)
        except DriverMissing as exc:
            raise HookError(f"{database.label} database: {exc}", exit_code=2) from exc
        except sqlalchemy.exc.SQLAlchemyError as exc:
            if attempt == READ_ATTEMPTS - 1:
                raise HookError(
                    f"the {database.label} database {shown(database.uri)} did not answer "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0]}). Nothing was "
                    "stopped. Make it reachable from the release's namespace, then run the "
                    "upgrade again."
                ) from exc
            time.sleep(POLL_SECONDS)
    raise AssertionError("unreachable")


def pending_upgrades(databases: Sequence[Database]) -> dict[str, tuple[str, str | None]]:
    """Label → (found, head) of every database whose schema is older than this image's.

    A database with no schema yet is not pending (the migration Job creates it, and no server
    writes to it); one newer than this MLflow knows stops the upgrade before anything changes.
    """
    pending = {}
    for database in databases:
        found = revision_of(database)
        if found is None:
            print(f"{database.label} schema: absent (the migration Job creates it)")
        elif not database.knows(found):
            raise HookError(database.newer_message(found), exit_code=3)
        elif found == database.head:
            print(f"{database.label} schema: {found}, current")
        else:
            print(f"{database.label} schema: {found}, this MLflow expects {database.head}")
            pending[database.label] = (found, database.head)
    return pending


def other_sessions(uri: str) -> list[str]:
    """Every other client connected to this PostgreSQL database, one line each; [] elsewhere."""
    url = sqlalchemy.engine.make_url(uri)
    if url.get_backend_name() != "postgresql":
        return []  # SQLite: the file has no other users once the server pods are gone
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(OTHER_SESSIONS).all()
    finally:
        engine.dispose()
    return [
        f"pid {pid} (user {user}, application {app or '-'}, from {addr or 'local socket'}, {state})"
        for pid, user, app, addr, state in rows
    ]


def wait_until(check: Callable[[], list[str]], timeout: float, what: str, fix: str) -> None:
    """Poll ``check`` (the things still in the way) until it returns none, or fail naming them."""
    deadline = time.monotonic() + timeout
    while left := check():
        if time.monotonic() > deadline:
            raise HookError(
                f"after {timeout:.0f} s {what} still: {'; '.join(left)}. The migration has not "
                f"started and the servers stay stopped. {fix}"
            )
        print(f"waiting: {what} {'; '.join(left)}", flush=True)
        time.sleep(POLL_SECONDS)


class ServerDeployment:
    """The server Deployment through the Kubernetes API, with the hook's own Role."""

    def __init__(self, namespace: str, name: str) -> None:
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException as exc:
            raise HookError(
                f"no Kubernetes service account in this pod ({exc}): this script is charts/"
                "mlflow's pre-upgrade hook and needs the API to stop the servers. Nothing was "
                "stopped or migrated.",
                exit_code=2,
            ) from exc
        self.namespace, self.name = namespace, name
        self.apps, self.core = client.AppsV1Api(), client.CoreV1Api()
        self.api_error = client.ApiException

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        import urllib3

        try:
            return call()
        except urllib3.exceptions.HTTPError as exc:
            raise HookError(
                f"{what}: the Kubernetes API did not answer ({exc}). Check the API server (and "
                "any egress NetworkPolicy of your own), then run the upgrade again."
            ) from exc
        except self.api_error as exc:
            fix = {
                403: "the hook's Role (<release>-mlflow-schema-upgrade) allows get/patch on "
                f"deployments/scale of {self.name} and list on pods; something refused it anyway "
                "(an edited Role, an admission policy): kubectl describe role, and the API "
                "server's audit log, say what",
                404: "the Deployment is gone: install the release again, or set "
                "migrations.stopServersForSchemaUpgrade=false",
            }.get(exc.status, "check the API server, then run the upgrade again")
            raise HookError(f"{what} in namespace {self.namespace}: {exc.reason}; {fix}") from exc

    def scale_to_zero(self) -> str:
        """Scale the Deployment to 0; its pod selector, for listing what is left."""
        scale = self._call(
            f"reading deployment/{self.name}/scale",
            lambda: self.apps.read_namespaced_deployment_scale(self.name, self.namespace),
        )
        print(f"stopping deployment/{self.name}: {scale.spec.replicas} replicas -> 0", flush=True)
        self._call(
            f"scaling deployment/{self.name} to 0",
            # A JSON patch (a list): the client sends a dict as json-patch too, which fails.
            lambda: self.apps.patch_namespaced_deployment_scale(
                self.name, self.namespace, [{"op": "replace", "path": "/spec/replicas", "value": 0}]
            ),
        )
        return scale.status.selector

    def pods_left(self, selector: str) -> list[str]:
        """The server pods still there, terminating ones included."""
        pods = self._call(
            f"listing pods {selector}",
            lambda: self.core.list_namespaced_pod(self.namespace, label_selector=selector),
        )
        return [f"pod/{pod.metadata.name}" for pod in pods.items]


def stop_writers(databases: Sequence[Database], timeout: float) -> None:
    """Scale the servers to 0, then wait until no pod and no other database session is left."""
    deployment = ServerDeployment(os.environ["POD_NAMESPACE"], os.environ["SERVER_DEPLOYMENT"])
    selector = deployment.scale_to_zero()
    wait_until(
        lambda: deployment.pods_left(selector),
        timeout,
        "server pods are running",
        "See why with kubectl describe pod; once they are gone, run the upgrade again.",
    )
    for uri in dict.fromkeys(database.uri for database in databases):
        wait_until(
            lambda uri=uri: other_sessions(uri),
            timeout,
            f"other clients are connected to {shown(uri)}",
            "Stop them (or pg_terminate_backend(pid) as the database owner), then run the "
            "upgrade again.",
        )
    print("no server pod and no other database client left", flush=True)


def migrate(databases: Sequence[Database], pending: dict[str, tuple[str, str | None]]) -> None:
    """Run migrate.py's upgrades for the pending databases and print each revision after."""
    for database in databases:
        if database.label not in pending:
            continue
        before, head = pending[database.label]
        print(f"upgrading the {database.label} schema of {shown(database.uri)}", flush=True)
        UPGRADES[database.label][1](database.uri)
        after = read_revision(database.uri, database.version_table)
        if after != head:
            raise HookError(
                f"the {database.label} schema is {after} after the upgrade, not {head}: see the "
                "output above. The servers stay stopped; fix the cause and run the upgrade again."
            )
        print(f"{database.label} schema: {before} -> {after}", flush=True)


def main() -> int:
    databases = databases_from_env(os.environ)
    timeout = float(os.environ.get("WRITERS_GONE_TIMEOUT_SECONDS", "120"))
    try:
        pending = pending_upgrades(databases)
        if not pending:
            print("every schema is current: nothing to stop, the upgrade rolls as usual")
            return 0
        stop_writers(databases, timeout)
        migrate(databases, pending)
    except HookError as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    print("schema upgraded with every writer stopped; Helm now starts the new servers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
