"""Dagster's control plane for the deployment tests: the webserver and the daemon's files.

The webserver and the daemon run from the official Dagster image in a cluster; neither
image is available here, so they run on the host from the test environment's Dagster
(the version uv.lock pins, the chart's version too). What they read is the release's:

- ``dagster.yaml``: the instance ConfigMap's data, at ``<home>/dagster.yaml`` (the chart
  mounts it at ``global.dagsterHome``);
- ``workspace.yaml``: the chart's, except that each code location's Service name
  becomes 127.0.0.1 — the host has no cluster DNS (containers get ``--add-host``);
- ``DAGSTER_PG_PASSWORD``: from the database Secret, as the chart's pods get it;
- the webserver's command line: the chart's (``0.0.0.0`` → ``127.0.0.1``, the workspace
  path → the host file).

The code location itself runs in Docker from the user-code image (:func:`start_code_location`),
from the Deployment the Dagster chart would render (:mod:`support.dagster_manifests`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from dagster import AssetKey, DagsterInstance, DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

from support import container_spec, dagster_manifests
from support.container.cli import Docker
from support.container.run import Container
from support.container_spec import stop
from support.release import BIND_LOCALLY, Release
from support.umbrella import RELEASE

PG_PASSWORD_VARIABLE = "DAGSTER_PG_PASSWORD"
LOOPBACK = "127.0.0.1"
ASSET_JOB = "__ASSET_JOB"  # the implicit job that materializes a selection of assets
ASSET = "train_model_stub"


def database_password(release: Release) -> str:
    """``DAGSTER_PG_PASSWORD`` as the chart's pods get it: the database Secret's key."""
    secrets, _ = release.data
    name = dagster_manifests.postgresql_secret_name(release.dagster, RELEASE)
    return secrets[name]["postgresql-password"]


def write_dagster_home(release: Release, home: Path) -> Path:
    """``home/dagster.yaml`` from the instance ConfigMap; returns ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(release.instance_yaml)
    return home


def write_workspace(release: Release, path: Path) -> Path:
    """The chart's ``workspace.yaml`` for a host process (Service names → 127.0.0.1)."""
    workspace = dagster_manifests.workspace(release.dagster)
    for entry in workspace["load_from"]:
        entry["grpc_server"]["host"] = LOOPBACK
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(workspace))
    return path


@contextlib.contextmanager
def environment(**variables: str) -> Iterator[None]:
    """Set environment variables of this process for the block, then restore them."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class Webserver:
    """A ``dagster-webserver`` process on 127.0.0.1."""

    url: str
    port: int
    process: subprocess.Popen[str]
    log_path: Path

    def log(self) -> str:
        """What the webserver wrote so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM its process group, SIGKILL after a grace period."""
        stop(self.process)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_webserver(
    release: Release, home: Path, workspace_file: Path, log_path: Path, timeout: float = 120
) -> Webserver:
    """The chart's webserver command on this host, until ``/server_info`` answers."""
    command = dagster_manifests.webserver_command(release.dagster)
    command = [BIND_LOCALLY.get(part, part) for part in command]
    command = [str(workspace_file) if p == dagster_manifests.WORKSPACE_PATH else p for p in command]
    command[0] = str(Path(sys.executable).parent / command[0])
    port = command[command.index("-p") + 1]
    url = f"http://{LOOPBACK}:{port}"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        PG_PASSWORD_VARIABLE: database_password(release),
    }
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
    server = Webserver(url, int(port), process, log_path)
    deadline = time.monotonic() + timeout
    while not _answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"dagster-webserver never answered {url}:\n{server.log()[-4000:]}")
        time.sleep(0.5)
    return server


@dataclass
class CodeLocationServer:
    """The code location's gRPC server container and the Deployment it runs."""

    deployment: dict
    container: Container
    port: int

    @property
    def readiness_probe(self) -> list[str]:
        """The chart's readiness probe command (run inside the container, as the kubelet does)."""
        [spec] = container_spec.pod_spec(self.deployment)["containers"]
        return list(spec["readinessProbe"]["exec"]["command"])

    def stop(self) -> None:
        """Remove the container."""
        self.container.stop()


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=1):
        return True
    return False


def start_code_location(
    docker: Docker, release: Release, scratch: Path, timeout: float = 180
) -> CodeLocationServer:
    """Start the user deployment's container; wait until the chart's readiness probe passes."""
    name = release.code_location["name"]
    deployment = release.code_location_deployment
    [spec] = container_spec.pod_spec(deployment)["containers"]
    container = release.pod_container(deployment, spec["name"], scratch).start(docker)
    server = CodeLocationServer(deployment, container, int(release.code_location["port"]))
    try:
        deadline = time.monotonic() + timeout
        while True:
            if not container.is_running() or time.monotonic() > deadline:
                raise AssertionError(
                    f"code location {name} never became ready "
                    f"(running: {container.is_running()}):\n{container.logs()[-4000:]}"
                )
            if _port_open(server.port) and container.exec(server.readiness_probe).returncode == 0:
                return server
            time.sleep(1)
    except BaseException:
        container.stop()
        raise


@dataclass(frozen=True)
class QueuedRun:
    """A run submitted like the UI's Materialize button, and its status right after."""

    run_id: str
    status_after_submit: DagsterRunStatus


def submit_materialization(
    webserver: Webserver, location_name: str, instance: DagsterInstance
) -> QueuedRun:
    """Materialize train_model_stub through the webserver's GraphQL API; read the run back."""
    client = DagsterGraphQLClient(LOOPBACK, port_number=webserver.port)
    run_id = client.submit_job_execution(
        ASSET_JOB, repository_location_name=location_name, asset_selection=[AssetKey(ASSET)]
    )
    run = instance.get_run_by_id(run_id)
    assert run is not None, f"the webserver returned run {run_id}, which storage does not have"
    return QueuedRun(run_id, run.status)
