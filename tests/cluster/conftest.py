"""Session fixtures of the real cluster: brought up once (or reused if it already runs).

Needs what :func:`localcluster.prerequisites.missing` lists (root, Go, gcc, Debian's
docker.io, ...): without it the tests skip locally and fail under CI=true. A cluster this
session started is stopped at its end; one that was already running
(``make cluster-up``) is left running.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client, config
from support import measurements
from support.images import ReleaseImages, build_release_images
from support.tools import missing

from localcluster import cluster, engine, prerequisites
from localcluster.base_image import ensure_base_image
from localcluster.components import Layout


@pytest.fixture(scope="session")
def cluster_measure(pytestconfig: pytest.Config) -> measurements.Measure:
    """``cluster_measure(name, value)`` records a figure (printed, never asserted)."""
    return measurements.recorder(pytestconfig)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    measurements.summarize(terminalreporter)


@pytest.fixture(scope="session")
def local_cluster(cluster_measure: measurements.Measure) -> Iterator[cluster.Started]:
    """The running cluster (started here unless `make cluster-up` already did)."""
    for what, how_to_get in prerequisites.missing():
        missing(what, how_to_get)
    try:
        started = cluster.up()
    except BaseException:
        cluster.down()  # leave nothing half-started behind; the error says what failed
        raise
    cluster_measure("cluster", "reused" if started.already_running else "started here")
    for name, seconds in started.timings.items():
        cluster_measure(f"cluster up: {name}", f"{seconds:.1f} s")
    memory = cluster.resident_memory(started.layout)
    cluster_measure("resident memory, all components", f"{sum(memory.values()):.0f} MiB")
    for name, mib in memory.items():
        cluster_measure(f"resident memory, {name}", f"{mib:.0f} MiB")
    yield started
    if not started.already_running:
        cluster.down()


@pytest.fixture(scope="session")
def layout(local_cluster: cluster.Started) -> Layout:
    return local_cluster.layout


@pytest.fixture(scope="session")
def kube(layout: Layout) -> client.ApiClient:
    """A Kubernetes API client (the official Python client) as the cluster admin."""
    return config.new_client_from_config(config_file=str(layout.kubeconfig))


@pytest.fixture(scope="session")
def core(kube: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube)


@pytest.fixture(scope="session")
def pod_image(local_cluster: cluster.Started) -> str:
    """An image with python3 in the node's engine (the cluster's base image)."""
    return ensure_base_image(engine.docker()).tag


@pytest.fixture(scope="session")
def release_images(local_cluster: cluster.Started, pod_image: str) -> ReleaseImages:
    """Both images of the release, built into the node's engine with the manifests' tags."""
    return build_release_images(engine.docker(), pod_image)
