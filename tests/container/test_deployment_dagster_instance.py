"""Step 2: Dagster's instance config, as the Dagster chart renders it for this release, on Postgres.

The ``dagster.yaml`` comes from the release's merged values the way the chart's
``configmap-instance.yaml`` builds it (support.dagster_manifests); the session's
PostgreSQL stands in for the chart's database.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DagsterInstance
from dagster_k8s import K8sRunLauncher
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage
from support.container.cli import Docker
from support.container.run import run_container
from support.dagster_chart import DAGSTER_REFERENCE, schema_errors
from support.dagster_control import PG_PASSWORD_VARIABLE, database_password
from support.images import BUILD_TIMEOUT_S, ReleaseImages
from support.postgres import PostgresServer
from support.release import Release
from support.umbrella import NAMESPACE

# The first test to need an image builds it (support.images).
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S)

# What a run pod does first: open the instance from DAGSTER_HOME and query run storage.
READ_RUNS = (
    "from dagster import DagsterInstance; print(len(DagsterInstance.get().get_runs(limit=1)))"
)


def test_release_dagster_values_are_valid_for_the_dagster_chart(release: Release) -> None:
    assert schema_errors(release.dagster, DAGSTER_REFERENCE / "values.schema.json") == []


def test_instance_config_puts_dagster_storage_on_the_release_database(
    release: Release, postgres: PostgresServer, dagster_instance: DagsterInstance
) -> None:
    storage = release.instance_config["run_storage"]["config"]["postgres_db"]
    assert (storage["hostname"], storage["port"]) == (postgres.host, postgres.port)
    assert storage["password"] == {"env": PG_PASSWORD_VARIABLE}
    assert isinstance(dagster_instance.run_storage, PostgresRunStorage)
    assert isinstance(dagster_instance.event_log_storage, PostgresEventLogStorage)
    # Opening the instance created Dagster's schema in the database.
    connection = postgres.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            tables = {row[0] for row in cursor.fetchall()}
    finally:
        connection.close()
    assert {"runs", "event_logs", "jobs", "alembic_version"} <= tables


def test_instance_config_queues_runs_and_launches_them_as_kubernetes_jobs(
    release: Release, dagster_instance: DagsterInstance
) -> None:
    config = release.instance_config
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert dagster_instance.run_coordinator.__class__.__name__ == "QueuedRunCoordinator"
    launcher = dagster_instance.get_ref().run_launcher_data
    assert launcher is not None and launcher.class_name == K8sRunLauncher.__name__
    settings = config["run_launcher"]["config"]
    instance_map = release.find("ConfigMap", settings["instance_config_map"])
    assert instance_map["data"]["dagster.yaml"] == release.instance_yaml
    assert release.find("Secret", settings["postgres_password_secret"])
    assert settings["job_namespace"] == NAMESPACE


def test_run_pod_image_reads_dagster_storage_with_the_release_values(
    docker: Docker,
    release_images: ReleaseImages,
    release: Release,
    tmp_path: Path,
) -> None:
    """Guards charts/dagma's ``dagster.postgresql.postgresqlScheme``: with none, Dagster's
    URL is ``postgresql://``, which SQLAlchemy 2.1 (uv.lock) maps to psycopg 3; the
    user-code image, like dagster-postgres, has psycopg2 only.
    """
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(release.instance_yaml)
    home.chmod(0o755)
    dagster_home = release.dagster["global"]["dagsterHome"]
    result = run_container(
        docker,
        release_images.user_code.tag,
        ["python", "-c", READ_RUNS],
        env={"DAGSTER_HOME": dagster_home, PG_PASSWORD_VARIABLE: database_password(release)},
        volumes={home / "dagster.yaml": f"{dagster_home}/dagster.yaml:ro"},
        timeout=120,
    )
    last_error = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
    opened = result.returncode == 0
    assert opened, (
        f"a run pod cannot open Dagster's storage with the release's values: {last_error}\n"
        "Fix: set dagster.postgresql.postgresqlScheme: postgresql+psycopg2 in "
        "charts/dagma/values.yaml (dagster-postgres ships psycopg2, not psycopg 3)."
    )
