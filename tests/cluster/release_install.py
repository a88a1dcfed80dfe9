"""Installing the dagma release on the local cluster, shared by the release and fault tests.

charts/dagma (values/kind.yaml) goes in with Helm into a namespace with Pod Security
"restricted" enforced. Two ways, one switch (:mod:`official_dagster_chart`): with the
official Dagster chart on the machine, charts/dagma is installed unmodified with that
chart as its dependency; without it (as here: it cannot be downloaded), the Dagster
dependency is the values-only stand-in and the chart's objects are applied beside the
release (:mod:`dagster_release`). Either way Dagster's database is an external PostgreSQL
(the stand-in image) in a namespace of its own, and telemetry is off.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from dagster_release import dagster_objects, external_postgres, machine_overlay
from kubernetes import client
from official_dagster_chart import find_official_chart, umbrella_with
from support.dagster_chart import dagster_version_in_lock
from support.settings import load_test_settings
from support.umbrella import RELEASE, effective_values, umbrella_dir, values_paths
from workloads import restricted_namespace, unique, wait_deployment_ready

from localcluster import engine, standins
from localcluster.cluster import kubectl
from localcluster.components import Layout

KIND = values_paths(["kind.yaml"])


@dataclass(frozen=True)
class Release:
    """An installed release: its namespace, its database's, and the Dagster chart's values."""

    namespace: str
    database_namespace: str
    dagster: dict


def helm(layout: Layout, namespace: str, *args: str) -> str:
    """The Helm CLI in ``namespace``; fails with Helm's own output."""
    result = subprocess.run(
        [str(layout.bin / "helm"), f"--kubeconfig={layout.kubeconfig}", "-n", namespace, *args],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


def describe(layout: Layout, namespace: str) -> str:
    """What to show when a wait in the release's namespace times out."""
    return kubectl(layout, "-n", namespace, "get", "jobs,pods,events")


def wait_release_ready(layout: Layout, kube: client.ApiClient, namespace: str) -> None:
    """Until every Deployment of the release has its replicas Ready."""
    apps = client.AppsV1Api(kube)
    for deployment in apps.list_namespaced_deployment(namespace).items:
        wait_deployment_ready(apps, namespace, deployment.metadata.name, 600,
                              lambda: describe(layout, namespace))  # fmt: skip


@contextmanager
def installed_release(
    layout: Layout, kube: client.ApiClient, pod_image: str, workdir: Path, prefix: str = "dagma"
) -> Iterator[Release]:
    """The release installed and Ready; uninstalled with both namespaces afterwards."""
    official = find_official_chart(load_test_settings().dagster_chart)  # before any change
    core = client.CoreV1Api(kube)
    tags = standins.ensure_release_standins(engine.docker(), pod_image, dagster_version_in_lock())
    database = unique(f"{prefix}-db")
    core.create_namespace({"metadata": {"name": database}})
    namespace = restricted_namespace(core, unique(prefix))
    try:
        password = secrets.token_hex(12)
        host = external_postgres(core, database, tags["postgres"], password)
        overlay = machine_overlay(host, password)
        overlay_file = workdir / "overlay.yaml"
        overlay_file.write_text(yaml.safe_dump(overlay))
        chart = umbrella_with(official) if official else umbrella_dir(with_dagster_values=True)
        print(f"[release] Dagster chart: {official.path if official else 'stand-in objects'}")
        helm(layout, namespace, "install", RELEASE, str(chart), "-f", str(KIND[0]),
             "-f", str(overlay_file), "--wait", "--timeout", "10m")  # fmt: skip
        dagster = effective_values(overlay, values_files=KIND)["dagster"]
        if official is None:  # the official chart would have created these
            version = dagster_version_in_lock()
            objects = dagster_objects(dagster, namespace, tags["dagster"], version)
            kubectl(layout, "apply", "-f", "-", stdin=yaml.safe_dump_all(objects))
        wait_release_ready(layout, kube, namespace)
        yield Release(namespace, database, dagster)
    finally:
        subprocess.run(
            [str(layout.bin / "helm"), f"--kubeconfig={layout.kubeconfig}", "-n", namespace,
             "uninstall", RELEASE, "--wait", "--ignore-not-found"],
            capture_output=True, timeout=300,
        )  # fmt: skip
        core.delete_namespace(namespace)
        core.delete_namespace(database)
