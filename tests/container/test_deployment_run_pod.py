"""Step 4: the daemon launches the queued run as a Kubernetes Job, and its pod runs it.

One iteration of Dagster's own QueuedRunCoordinatorDaemon dequeues the run; the chart's
K8sRunLauncher builds the Job with dagster-k8s's code (support.run_launch). The Job's pod
then runs in a fresh user-code container: its ``dagster api execute_run …`` args, the
env the Job names (MLflow ConfigMap and Secret, DAGSTER_HOME, DAGSTER_PG_PASSWORD from
the database Secret), its security context. The run's events are read back from Postgres.
"""

from __future__ import annotations

from typing import Any

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus
from support import container_spec
from support.dagster_control import ASSET, QueuedRun
from support.images import BUILD_TIMEOUT_S, ReleaseImages
from support.postgres import PostgresServer
from support.release import Release
from support.run_launch import LaunchedJob, RunPod
from support.umbrella import NAMESPACE

# The first test to need an image builds it (support.images).
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S)


def _container(job: dict[str, Any]) -> dict[str, Any]:
    [spec] = container_spec.pod_spec(job)["containers"]
    return spec


def test_daemon_launches_the_queued_run_as_a_job_of_the_user_code_image(
    release: Release,
    release_images: ReleaseImages,
    queued_run: QueuedRun,
    launched_job: LaunchedJob,
) -> None:
    job = launched_job.manifest
    assert launched_job.status_after_launch == DagsterRunStatus.STARTING
    assert job["metadata"]["namespace"] == NAMESPACE
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["dagster/run-id"] == queued_run.run_id
    assert labels["dagster/code-location"] == release.code_location["name"]
    container = _container(job)
    assert container["image"] == release_images.user_code.tag
    assert container["args"][:3] == ["dagster", "api", "execute_run"]


def test_run_pod_env_has_the_mlflow_configmap_and_the_database_password(
    release: Release, launched_job: LaunchedJob
) -> None:
    secrets, config_maps = release.data
    env = container_spec.resolve_env(
        _container(launched_job.manifest), secrets=secrets, config_maps=config_maps
    )
    tracking = config_maps[release.values["tracking"]["configMapName"]]
    assert {name: env.get(name) for name in tracking} == tracking
    assert env["DAGSTER_PG_PASSWORD"] == release.dagster["postgresql"]["postgresqlPassword"]
    assert env["DAGSTER_HOME"] == release.dagster["global"]["dagsterHome"]


def test_run_pod_runs_the_materialization_to_success(
    run_pod: RunPod, queued_run: QueuedRun, dagster_instance: DagsterInstance
) -> None:
    assert run_pod.exit_code == 0, run_pod.logs[-4000:]
    run = dagster_instance.get_run_by_id(queued_run.run_id)
    assert run is not None
    assert run.status == DagsterRunStatus.SUCCESS, run_pod.logs[-4000:]


def test_run_pod_writes_its_events_to_postgres(
    run_pod: RunPod,
    queued_run: QueuedRun,
    dagster_instance: DagsterInstance,
    postgres: PostgresServer,
) -> None:
    records = dagster_instance.all_logs(queued_run.run_id)
    types = [r.dagster_event.event_type for r in records if r.dagster_event is not None]
    assert DagsterEventType.STEP_SUCCESS in types
    assert DagsterEventType.RUN_SUCCESS in types
    materialization = dagster_instance.get_latest_materialization_event(AssetKey(ASSET))
    assert materialization is not None and materialization.run_id == queued_run.run_id
    # The same rows, straight from the database the chart's dagster.yaml names.
    connection = postgres.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
                (queued_run.run_id, DagsterEventType.ASSET_MATERIALIZATION.value),
            )
            assert cursor.fetchone() == (1,)
    finally:
        connection.close()


def test_run_pod_leaves_no_artifact_file_in_its_container(run_pod: RunPod) -> None:
    assert run_pod.exit_code == 0, run_pod.logs[-4000:]
    assert not [path for path in run_pod.changed_paths if path.endswith("train_summary.txt")]
