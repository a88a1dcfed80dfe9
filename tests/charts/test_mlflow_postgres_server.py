"""With an external PostgreSQL (URI from an existing Secret) the rendered pods run and migrate once.

One release per module against a real PostgreSQL server (support.postgres): the Secret's URI
reaches the migration Job, the schema wait and the server only by secretKeyRef; basic auth is
on too, so its tables share the database. An upgrade (revision 2) migrates again, harmlessly.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest
from support import container_spec, mlflow_servers
from support.helm import Rendered, render
from support.postgres import PostgresServer

from dagma.dev.local_mlflow import free_port

VALUES = {
    "backendStore": {"type": "postgresql", "postgresql": {"existingSecret": "mlflow-db"}},
    "auth": {"enabled": True, "existingSecret": "mlflow-admin"},
}
ADMIN = {"username": "dagma-admin", "password": secrets.token_urlsafe(24)}


@pytest.fixture(scope="module", autouse=True)
def _basic_auth_installed() -> None:
    mlflow_servers.require_basic_auth()


@pytest.fixture(scope="module")
def credentials(postgres: PostgresServer) -> dict[str, dict[str, str]]:
    return {"mlflow-db": {"uri": postgres.psycopg2_url}, "mlflow-admin": ADMIN}


@pytest.fixture(scope="module")
def port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def rendered(port: int) -> Rendered:
    return render("mlflow", {**VALUES, "server": {"port": port}})


@pytest.fixture(scope="module")
def pod(
    rendered: Rendered,
    credentials: dict[str, dict[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[mlflow_servers.ServerPod]:
    with mlflow_servers.serving(
        rendered, tmp_path_factory.mktemp("mlflow-postgres-release"), secrets=credentials
    ) as started:
        yield started


def _revision(postgres: PostgresServer, table: str) -> str:
    with closing(postgres.connect()) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT version_num FROM {table}")
        [(revision,)] = cursor.fetchall()
    return revision


def test_the_uri_reaches_every_container_only_by_secret_reference(rendered: Rendered):
    for doc in (rendered.one("Deployment"), rendered.one("Job")):
        for spec in container_spec.containers(doc):
            for item in spec.get("env", []):
                if item["name"] in {"MLFLOW_BACKEND_STORE_URI", "MLFLOW_AUTH_DATABASE_URI"}:
                    assert item["valueFrom"]["secretKeyRef"] == {"name": "mlflow-db", "key": "uri"}


def test_migration_job_put_tracking_and_auth_schemas_in_postgresql(
    pod: mlflow_servers.ServerPod, postgres: PostgresServer
):
    assert pod.waited_for_job
    assert _revision(postgres, "alembic_version")
    assert _revision(postgres, "alembic_version_auth")


def test_helm_test_pod_passes_and_its_run_is_in_postgresql(
    pod: mlflow_servers.ServerPod,
    rendered: Rendered,
    credentials: dict[str, dict[str, str]],
    postgres: PostgresServer,
    tmp_path: Path,
):
    test_pod = rendered.tests[0]
    local = mlflow_servers.localizer(rendered, tmp_path, pod.volume, credentials)(
        test_pod, test_pod["spec"]["containers"][0]["name"]
    )
    local = replace(local, env={**local.env, "MLFLOW_TRACKING_URI": pod.url})  # the Service
    result = local.run(timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = json.loads(result.stdout.strip().splitlines()[-1])["run_id"]
    with closing(postgres.connect()) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT status FROM runs WHERE run_uuid = %s", (run_id,))
        assert cursor.fetchall() == [("FINISHED",)]
        cursor.execute("SELECT username FROM users WHERE is_admin")
        assert cursor.fetchall() == [(ADMIN["username"],)]


def test_upgrade_migrates_again_harmlessly_and_new_pods_start_at_once(
    pod: mlflow_servers.ServerPod,
    port: int,
    credentials: dict[str, dict[str, str]],
    postgres: PostgresServer,
    tmp_path: Path,
):
    before = _revision(postgres, "alembic_version")
    upgrade = render("mlflow", {**VALUES, "server": {"port": port}}, revision=2)
    job = upgrade.one("Job")
    assert job["metadata"]["name"].endswith("-migrate-2")
    localize = mlflow_servers.localizer(upgrade, tmp_path, pod.volume, credentials)
    for step in container_spec.containers(job):
        result = localize(job, step["name"]).run(timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
    assert _revision(postgres, "alembic_version") == before
    assert mlflow_servers.is_healthy(pod.url), (
        "the running server suffered from the second migration"
    )

    started = time.monotonic()
    wait = localize(upgrade.one("Deployment"), "wait-for-schema").run(timeout=120)
    assert wait.returncode == 0, wait.stdout + wait.stderr
    assert mlflow_servers.WAITING_MARKER not in wait.stdout
    print(f"schema check on a current database: {time.monotonic() - started:.1f} s")


def test_a_uri_for_a_driver_the_image_lacks_fails_at_once_with_the_fix(
    rendered: Rendered, tmp_path: Path
):
    if importlib.util.find_spec("psycopg") is not None:
        pytest.skip("psycopg 3 is installed here, unlike in the image")
    bare = {
        "mlflow-db": {"uri": "postgresql://mlflow:pw@127.0.0.1:9/mlflow"},
        "mlflow-admin": ADMIN,
    }
    localize = mlflow_servers.localizer(rendered, tmp_path, tmp_path / "volume", bare)
    result = localize(rendered.one("Deployment"), "wait-for-schema").run(timeout=120)
    assert result.returncode == 2
    assert "postgresql+psycopg2://" in result.stderr
    assert "pw@" not in result.stdout + result.stderr, "the password was printed"


def _password(credentials: dict[str, dict[str, str]]) -> str:
    from sqlalchemy.engine import make_url

    password = make_url(credentials["mlflow-db"]["uri"]).password
    assert password and len(password) >= 8, "the test database needs a real password"
    return str(password)


def test_the_database_password_is_in_no_command_line_and_no_log(
    pod: mlflow_servers.ServerPod,
    rendered: Rendered,
    credentials: dict[str, dict[str, str]],
    tmp_path: Path,
):
    password = _password(credentials)
    localize = mlflow_servers.localizer(rendered, tmp_path, pod.volume, credentials)
    outputs = {"server log": pod.log()}
    for doc in (rendered.one("Job"), rendered.one("Deployment"), *rendered.tests):
        for spec in container_spec.containers(doc):
            local = localize(doc, spec["name"])
            # The argv after the kubelet's $(VAR) expansion: what ps and the pod spec show.
            assert password not in " ".join(local.argv), f"{doc['kind']}/{spec['name']} argv"
            assert any(password in value for value in local.env.values()) or (
                "MLFLOW_BACKEND_STORE_URI" not in local.env
            ), "the URI did not reach the container's environment"
    for step in container_spec.containers(rendered.one("Job")):
        result = localize(rendered.one("Job"), step["name"]).run(timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        outputs[f"Job {step['name']}"] = result.stdout + result.stderr
    # The running server's processes, as ps shows them.
    for pid in container_spec.process_tree(pod.process.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        assert password not in cmdline, f"process {pid}: {cmdline}"
    leaked = [where for where, text in outputs.items() if password in text]
    assert not leaked, f"the database password was printed in: {leaked}"
    assert "***" in outputs["Job tracking-schema"]  # the Job names the database, password hidden
