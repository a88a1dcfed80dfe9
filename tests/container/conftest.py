"""Session fixtures of the container harness: engine, base image, PostgreSQL, browser,
and the dagma release running in containers (images, MLflow, code location, webserver,
a materialization launched as a Kubernetes Job and run as its pod).

Each starts once per session and is stopped at its end. Timings and sizes the
tests measure (never assert) are printed in the terminal summary and written
to test-artifacts/container-measurements.json.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance
from dagster._core.instance.ref import InstanceRef
from playwright.sync_api import BrowserContext
from support.browser import chromium_context
from support.container.base_image import BaseImage, ensure_base_image
from support.container.build import image_size, megabytes
from support.container.cli import Docker
from support.container.engine import Engine, ensure_engine
from support.container.loopback import LoopbackPage, serve_page
from support.dagster_control import (
    CodeLocationServer,
    QueuedRun,
    Webserver,
    database_password,
    environment,
    start_code_location,
    start_webserver,
    submit_materialization,
    write_dagster_home,
    write_workspace,
)
from support.images import ReleaseImages, build_release_images
from support.measurements import Measure, Measurements
from support.mlflow_container import MlflowServer, start_mlflow
from support.postgres import PostgresServer, start_postgres
from support.release import Release, local_release
from support.run_launch import LaunchedJob, RunPod, daemon, dequeue, run_job

MEASUREMENTS = Measurements("container-measurements", "container harness measurements")


@pytest.fixture(scope="session")
def measure(pytestconfig: pytest.Config) -> Measure:
    """``measure(name, value)`` records a figure for the session's summary."""
    return MEASUREMENTS.recorder(pytestconfig)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    MEASUREMENTS.summarize(terminalreporter)


@pytest.fixture(scope="session")
def docker_engine(measure: Measure) -> Iterator[Engine]:
    """A Docker engine that answers: the running one, or a dockerd this session starts."""
    engine = ensure_engine()
    if engine.started_in is not None:
        measure("dockerd start", f"{engine.started_in:.1f} s")
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def docker(docker_engine: Engine) -> Docker:
    """The docker CLI bound to the session's engine."""
    return docker_engine.docker


@pytest.fixture(scope="session")
def base_image(docker: Docker, measure: Measure) -> BaseImage:
    """The ``BASE_IMAGE`` for builds: public slim Python, or the local debootstrapped one."""
    image = ensure_base_image(docker)
    measure("base image", f"{image.tag} ({image.source})")
    for step, seconds in image.seconds.items():
        measure(f"base image {step}", f"{seconds:.1f} s")
    measure("base image size", megabytes(image_size(docker, image.tag)))
    return image


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL on 127.0.0.1 with an empty ``dagster`` database."""
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserContext]:
    """Debian's Chromium under Playwright, headless, with a fresh profile.

    Module-scoped: Playwright's sync API allows one running instance per thread, and
    tests/e2e starts its own.
    """
    with chromium_context() as context:
        yield context


@pytest.fixture
def loopback_page(tmp_path: Path) -> Iterator[LoopbackPage]:
    """An HTML page with a unique text, served on 127.0.0.1 for the test's duration."""
    with serve_page(tmp_path) as page:
        yield page


# --- the release in containers (issue 5, steps 1-5): each piece once per session ----------


@pytest.fixture(scope="session")
def release_images(docker: Docker, base_image: BaseImage, measure: Measure) -> ReleaseImages:
    """images/user_code and images/mlflow, built with the tags the manifests run."""
    images = build_release_images(docker, base_image.tag)
    for built in (images.user_code, images.mlflow):
        measure(f"build {built.tag}", f"{built.seconds:.1f} s")
        measure(f"image {built.tag} size", megabytes(image_size(docker, built.tag)))
    return images


@pytest.fixture(scope="session")
def release(postgres: PostgresServer) -> Release:
    """The dagma release (values/kind.yaml) on free ports, with the session's PostgreSQL."""
    return local_release(postgres)


@pytest.fixture(scope="session")
def mlflow_server(
    docker: Docker,
    release_images: ReleaseImages,
    release: Release,
    tmp_path_factory: pytest.TempPathFactory,
    measure: Measure,
) -> Iterator[MlflowServer]:
    """The release's MLflow migration Job and server, each in its own container."""
    server = start_mlflow(docker, release, tmp_path_factory.mktemp("mlflow-release"))
    measure("MLflow migration Job (container)", f"{server.timings['migration_job_s']:.1f} s")
    measure("MLflow server start to /health", f"{server.timings['server_start_s']:.1f} s")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def code_location(
    docker: Docker,
    release_images: ReleaseImages,
    release: Release,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CodeLocationServer]:
    """The user-code Deployment's gRPC server container, ready by the chart's probe."""
    server = start_code_location(docker, release, tmp_path_factory.mktemp("code-location"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dagster_home(release: Release, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DAGSTER_HOME holding the instance ConfigMap's dagster.yaml (for host processes)."""
    return write_dagster_home(release, tmp_path_factory.mktemp("dagster-home"))


@pytest.fixture(scope="session")
def workspace_file(release: Release, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart's workspace.yaml as a host process reads it."""
    return write_workspace(release, tmp_path_factory.mktemp("workspace") / "workspace.yaml")


@pytest.fixture(scope="session")
def dagster_instance(release: Release, dagster_home: Path) -> Iterator[DagsterInstance]:
    """The host's view of Dagster's storage: an instance from the chart's dagster.yaml."""
    with (
        environment(DAGSTER_PG_PASSWORD=database_password(release)),
        DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance,
    ):
        yield instance


@pytest.fixture(scope="session")
def webserver(
    release: Release,
    code_location: CodeLocationServer,
    dagster_home: Path,
    workspace_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Webserver]:
    """dagster-webserver with the chart's command, instance and workspace."""
    log = tmp_path_factory.mktemp("webserver") / "webserver.log"
    server = start_webserver(release, dagster_home, workspace_file, log)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def queued_run(
    release: Release, webserver: Webserver, dagster_instance: DagsterInstance
) -> QueuedRun:
    """train_model_stub materialized through the webserver's GraphQL API (the UI's way)."""
    return submit_materialization(webserver, release.code_location["name"], dagster_instance)


@pytest.fixture(scope="session")
def launched_job(
    release: Release,
    queued_run: QueuedRun,
    dagster_home: Path,
    workspace_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> LaunchedJob:
    """The daemon's dequeue of the run: the Job its K8sRunLauncher creates."""
    with (
        environment(DAGSTER_PG_PASSWORD=database_password(release)),
        daemon(
            dagster_home,
            release.dagster["global"]["dagsterHome"],
            workspace_file,
            tmp_path_factory.mktemp("daemon"),
        ) as (workspace, jobs),
    ):
        job = dequeue(workspace, jobs, queued_run.run_id)
        run = workspace.instance.get_run_by_id(queued_run.run_id)
        assert run is not None
        return LaunchedJob(job, run.status)


@pytest.fixture(scope="session")
def run_pod(
    docker: Docker,
    release: Release,
    mlflow_server: MlflowServer,
    launched_job: LaunchedJob,
    tmp_path_factory: pytest.TempPathFactory,
    measure: Measure,
) -> RunPod:
    """The Job's pod, run in a fresh user-code container to completion."""
    pod = run_job(docker, release, launched_job.manifest, tmp_path_factory.mktemp("run-pod"))
    measure("run pod (train_model_stub) in a container", f"{pod.seconds:.1f} s")
    return pod
