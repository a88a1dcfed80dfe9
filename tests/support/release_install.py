"""Installing the dagma release on the local cluster, shared by the release and fault tests.

charts/dagma (values/local.yaml) goes in with Helm into a namespace with Pod Security
"restricted" enforced. Two ways, one switch (:func:`support.umbrella.find_official_chart`):
with the official Dagster chart on the machine, charts/dagma is installed unmodified with
that chart as its dependency; without it (as here: it cannot be downloaded), the Dagster
dependency is the values-only stand-in and the chart's objects are applied beside the
release (:mod:`support.dagster_manifests`). Either way Dagster's database is an external
PostgreSQL (the stand-in image) in a namespace of its own (:func:`external_postgres`,
since the chart's bundled bitnami subchart cannot meet Pod Security "restricted"), and
telemetry is off (:func:`machine_overlay`).
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes import client

from localcluster import engine, standins
from localcluster.cluster import kubectl
from localcluster.components import Layout
from support.dagster_chart import dagster_version_in_lock
from support.dagster_manifests import dagster_objects
from support.release import NO_TELEMETRY
from support.settings import load_test_settings
from support.umbrella import (
    RELEASE,
    effective_values,
    find_official_chart,
    umbrella_dir,
    values_paths,
)
from support.workloads import restricted_namespace, unique, wait_deployment_ready, wait_for

KIND = values_paths(["local.yaml"])


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
    layout: Layout, kube: client.ApiClient, pod_image: str, workdir: Path, prefix: str = "dagma",
    extra_locations: dict[str, str] | None = None,
) -> Iterator[Release]:  # fmt: skip
    """The release installed and Ready; uninstalled with both namespaces afterwards.

    ``extra_locations`` (``{name: module}``) adds code locations beside values/local.yaml's,
    each served from dagma-user-code's image with its settings."""
    official = find_official_chart(load_test_settings().dagster_chart)  # before any change
    core = client.CoreV1Api(kube)
    tags = standins.ensure_release_standins(engine.docker(), pod_image, dagster_version_in_lock())
    database = unique(f"{prefix}-db")
    core.create_namespace({"metadata": {"name": database}})
    namespace = restricted_namespace(core, unique(prefix))
    try:
        password = secrets.token_hex(12)
        host = external_postgres(core, database, tags["postgres"], password)
        overlay = machine_overlay(host, password, extra_locations)
        overlay_file = workdir / "overlay.yaml"
        overlay_file.write_text(yaml.safe_dump(overlay))
        chart = umbrella_dir(with_dagster_values=True, official=official)
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


def external_postgres(core: client.CoreV1Api, namespace: str, image: str, password: str) -> str:
    """An external PostgreSQL for Dagster (the stand-in image); returns its host name.

    The Dagster chart's bundled PostgreSQL cannot meet Pod Security "restricted". A
    StatefulSet on a PersistentVolumeClaim, so a deleted pod comes back with Dagster's
    run history (the fault tests delete it), and never beside the old one: a Deployment
    starts the replacement at once, while the old server still shuts down (SIGTERM waits
    for its clients, up to the 30 s grace period) — two servers on one PGDATA.
    """
    # PGDATA below the mount (which belongs to root; fsGroup makes it writable), as the
    # official image's documentation advises for volumes.
    env = {"POSTGRES_USER": "dagster", "POSTGRES_PASSWORD": password, "POSTGRES_DB": "dagster",
           "PGDATA": "/var/lib/postgresql/data/pgdata"}  # fmt: skip
    labels = {"app": "postgresql"}
    core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": "postgresql-data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    })  # fmt: skip
    pod = {
        "metadata": {"labels": labels},
        "spec": {
            "securityContext": {"fsGroup": 999},
            "containers": [{
                "name": "postgresql", "image": image, "imagePullPolicy": "IfNotPresent",
                "env": [{"name": k, "value": v} for k, v in env.items()],
                "ports": [{"containerPort": 5432}],
                "readinessProbe": {"exec": {"command": ["pg_isready", "-h", "127.0.0.1"]},
                                   "periodSeconds": 2},
                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
            }],
            "volumes": [{"name": "data",
                         "persistentVolumeClaim": {"claimName": "postgresql-data"}}],
        },
    }  # fmt: skip
    apps = client.AppsV1Api(core.api_client)
    apps.create_namespaced_stateful_set(namespace, {
        "metadata": {"name": "postgresql", "labels": labels},
        "spec": {"replicas": 1, "serviceName": "postgresql",
                 "selector": {"matchLabels": labels}, "template": pod},
    })  # fmt: skip
    core.create_namespaced_service(namespace, {
        "metadata": {"name": "postgresql"},
        "spec": {"selector": labels, "ports": [{"port": 5432}]},
    })  # fmt: skip
    wait_for("PostgreSQL Ready", lambda: apps.read_namespaced_stateful_set(
        "postgresql", namespace).status.ready_replicas == 1, 300)  # fmt: skip
    return f"postgresql.{namespace}.svc.cluster.local"


def machine_overlay(
    postgres_host: str, password: str, extra_locations: dict[str, str] | None = None
) -> dict:
    """Only what the machine needs: the external database and telemetry off (and the
    test's extra code locations, as copies of the first deployment serving their modules)."""
    kind = yaml.safe_load(values_paths(["local.yaml"])[0].read_text())
    deployments = kind["dagster"]["dagster-user-deployments"]["deployments"]
    deployments += [{**deployments[0], "name": name, "dagsterApiGrpcArgs": ["-m", module]}
                    for name, module in (extra_locations or {}).items()]  # fmt: skip
    for deployment in deployments:
        deployment["env"] = [*deployment.get("env", []), *NO_TELEMETRY]
    return {
        "dagster": {
            "telemetry": {"enabled": False},
            "dagster-user-deployments": {"deployments": deployments},
            "postgresql": {
                "enabled": False,
                "postgresqlHost": postgres_host,
                "postgresqlUsername": "dagster",
                "postgresqlPassword": password,
                "postgresqlDatabase": "dagster",
                "service": {"port": 5432},
            },
        },
    }
