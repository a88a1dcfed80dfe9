"""Step 3: the code location runs in images/user_code as the Dagster chart starts it.

The container runs the user deployment the Dagster chart would render from the release's
values (``dagster api grpc -h … -p <port> -m dagma.definitions``, the MLflow ConfigMap
and Secret and Dagster's own variables as env); the kubelet's readiness probe is the
chart's ``dagster api grpc-health-check``. The host loads the location over gRPC, and
materializing train_model_stub through the webserver's GraphQL API leaves a QUEUED run
whose origin is that location (the chart's QueuedRunCoordinator).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus
from dagster._core.remote_representation.code_location import CodeLocation
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._grpc.client import DagsterGrpcClient
from support import container_spec
from support.dagster_control import ASSET, CodeLocationServer, QueuedRun
from support.images import BUILD_TIMEOUT_S
from support.release import BIND_LOCALLY, Release

# The first test to need an image builds it (support.images).
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S)


def _container_env(server: CodeLocationServer, name: str) -> str:
    [spec] = container_spec.pod_spec(server.deployment)["containers"]
    [value] = [e["value"] for e in spec["env"] if e["name"] == name]
    return str(value)


@pytest.fixture(scope="module")
def location(
    release: Release,
    code_location: CodeLocationServer,
    dagster_instance: DagsterInstance,
    workspace_file: Path,
) -> Iterator[CodeLocation]:
    """The code location as the webserver and the daemon load it: from workspace.yaml."""
    with WorkspaceProcessContext(
        dagster_instance, WorkspaceFileTarget(paths=[str(workspace_file)])
    ) as workspace:
        yield workspace.create_request_context().get_code_location(release.code_location["name"])


def test_code_location_container_runs_the_deployments_args(
    code_location: CodeLocationServer,
) -> None:
    [spec] = container_spec.pod_spec(code_location.deployment)["containers"]
    expected = [BIND_LOCALLY.get(arg, arg) for arg in spec["args"]]
    cmdline = code_location.container.exec(["cat", "/proc/1/cmdline"]).stdout.split("\0")[:-1]
    # `dagster` is a console script: the kernel runs it as `python /…/bin/dagster …`.
    assert Path(cmdline[1]).name == expected[0]
    assert cmdline[2:] == expected[1:]


def test_code_location_passes_the_charts_readiness_probe(code_location: CodeLocationServer) -> None:
    probe = code_location.container.exec(code_location.readiness_probe)
    assert probe.returncode == 0, probe.stdout + probe.stderr


def test_code_location_answers_grpc_health_checks_from_the_host(
    code_location: CodeLocationServer,
) -> None:
    client = DagsterGrpcClient(port=code_location.port, host="127.0.0.1")
    assert client.health_check_query() == "SERVING"


def test_code_location_serves_train_model_stub_with_its_image_and_container_context(
    code_location: CodeLocationServer, location: CodeLocation
) -> None:
    [repository] = location.get_repositories().values()
    assert AssetKey(ASSET) in {snap.asset_key for snap in repository.get_asset_node_snaps()}
    assert location.container_image == _container_env(code_location, "DAGSTER_CURRENT_IMAGE")
    context = json.loads(_container_env(code_location, "DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT"))
    assert location.container_context == context


def test_materializing_through_the_webserver_queues_a_run_from_the_code_location(
    queued_run: QueuedRun, dagster_instance: DagsterInstance, location: CodeLocation
) -> None:
    assert queued_run.status_after_submit == DagsterRunStatus.QUEUED
    run = dagster_instance.get_run_by_id(queued_run.run_id)
    assert run is not None and run.remote_job_origin is not None
    assert run.remote_job_origin.location_name == location.name
    assert run.asset_selection == {AssetKey(ASSET)}
    origin = run.job_code_origin
    assert origin is not None
    assert origin.repository_origin.container_image == location.container_image
    assert origin.repository_origin.container_context == location.container_context
