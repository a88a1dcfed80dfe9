"""The chart helper images' stand-ins, running the charts' own command forms on the cluster.

- ``docker.io/bitnami/minideb:stretch``: the bitnami PostgreSQL subchart's (8.x)
  volume-permissions init container, as root against a real claim, in a namespace with
  Pod Security "baseline" (root is not allowed under "restricted"); another pod reads the
  ownership and mode back.
- ``docker.io/busybox:1.28`` and ``docker.io/library/postgres:14.6``: the Dagster chart's
  ``init-user-deployment-<name>`` (``until nslookup …``) and ``check-db-ready``
  (``until pg_isready …``) init containers, built by :mod:`support.dagster_manifests` from
  the merged values (their restricted security contexts included), in a "restricted"
  namespace: each keeps waiting while its target is missing and completes once it appears.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from support.dagster_chart import dagster_version_in_lock, postgresql_host
from support.dagster_manifests import check_db_ready, init_user_deployment
from support.umbrella import RELEASE, effective_values, values_paths
from support.workloads import (
    RESTRICTED_CONTAINER,
    describe_pod,
    pod_log,
    restricted_namespace,
    unique,
    wait_for,
    wait_pod_phase,
)

from localcluster import engine, standins

# The subchart's defaults: persistence.mountPath, securityContext.runAsUser/fsGroup.
MOUNT = "/bitnami/postgresql"
POSTGRES_UID = 1001
# The command the subchart renders for its init-chmod-data container with those defaults.
VOLUME_PERMISSIONS = f"""mkdir -p {MOUNT}/data
chmod 700 {MOUNT}/data
find {MOUNT} -mindepth 0 -maxdepth 1 -not -name ".snapshot" -not -name "lost+found" | \\
  xargs chown -R {POSTGRES_UID}:{POSTGRES_UID}
"""


@pytest.fixture(scope="module")
def dagster() -> dict[str, Any]:
    """The Dagster chart's merged values for values/local.yaml."""
    return effective_values(values_files=values_paths(["local.yaml"]))["dagster"]


@pytest.fixture(scope="module")
def standin_images(pod_image: str) -> dict[str, str]:
    docker = engine.docker()
    tags = standins.ensure_release_standins(docker, pod_image, dagster_version_in_lock())
    tags["minideb"] = standins.ensure_volume_permissions_image(docker, pod_image)
    return tags


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    """A namespace with Pod Security "restricted" enforced, deleted afterwards."""
    name = restricted_namespace(core, unique("standins"))
    yield name
    core.delete_namespace(name)


def _pod(name: str, containers: list[dict], security: dict, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"restartPolicy": "Never", "securityContext": security,
                 "containers": containers, **spec},
    }  # fmt: skip


def _service(core: client.CoreV1Api, namespace: str, name: str, selector: str) -> str:
    """A ClusterIP Service ``name`` selecting ``app=<selector>``; its ClusterIP."""
    body = {"metadata": {"name": name},
            "spec": {"selector": {"app": selector}, "ports": [{"port": 5432}]}}  # fmt: skip
    return core.create_namespaced_service(namespace, body).spec.cluster_ip


def _waits(core: client.CoreV1Api, namespace: str, name: str, message: str) -> None:
    """Until the pod has logged ``message`` twice (it looped) and is still running."""
    wait_pod_phase(core, namespace, name, {"Running", "Succeeded", "Failed"})

    def looped() -> bool:
        return pod_log(core, namespace, name).count(message) >= 2

    wait_for(f"{name} looping", looped, 120, lambda: describe_pod(core, namespace, name))
    assert core.read_namespaced_pod(name, namespace).status.phase == "Running"


def test_volume_permissions_container_hands_the_claim_to_postgres(
    core: client.CoreV1Api, standin_images: dict[str, str]
) -> None:
    name = unique("standins-root")
    labels = {f"pod-security.kubernetes.io/{m}": "baseline" for m in ("enforce", "warn")}
    core.create_namespace({"metadata": {"name": name, "labels": labels}})
    try:
        core.create_namespaced_persistent_volume_claim(name, {
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}},
        })  # fmt: skip
        image = standin_images["minideb"]
        mount = [{"name": "data", "mountPath": MOUNT}]
        volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]

        def container(cname: str, uid: int, script: str) -> dict[str, Any]:
            return {"name": cname, "image": image, "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", script], "securityContext": {"runAsUser": uid},
                    "volumeMounts": mount}  # fmt: skip

        # A data directory left by another owner, then the subchart's container as root.
        seed = f"mkdir -p {MOUNT}/data && echo 14 > {MOUNT}/data/PG_VERSION"
        init = [container("seed", 2000, seed), container("init-chmod-data", 0, VOLUME_PERMISSIONS)]
        core.create_namespaced_pod(name, _pod(
            "postgresql", [container("postgresql", POSTGRES_UID, "true")],
            {"fsGroup": POSTGRES_UID}, initContainers=init, volumes=volumes,
        ))  # fmt: skip
        assert wait_pod_phase(core, name, "postgresql", {"Succeeded", "Failed"}) == "Succeeded", (
            describe_pod(core, name, "postgresql")
        )
        # Another pod, as PostgreSQL's UID, sees and writes what the container left.
        files = f"{MOUNT} {MOUNT}/data {MOUNT}/data/PG_VERSION {MOUNT}/data/written"
        read = f"echo x > {MOUNT}/data/written && stat -c '%n %u:%g %a' {files}"
        core.create_namespaced_pod(name, _pod(
            "reader", [container("reader", POSTGRES_UID, read)], {}, volumes=volumes
        ))  # fmt: skip
        wait_pod_phase(core, name, "reader", {"Succeeded", "Failed"})
        seen = dict(line.split(" ", 1) for line in pod_log(core, name, "reader").splitlines())
    finally:
        core.delete_namespace(name)
    owner = f"{POSTGRES_UID}:{POSTGRES_UID}"
    assert seen[MOUNT].split()[0] == owner, seen
    assert seen[f"{MOUNT}/data"] == f"{owner} 700", seen
    assert seen[f"{MOUNT}/data/PG_VERSION"].split()[0] == owner, seen
    # PostgreSQL's UID can write into its 0700 directory.
    assert seen[f"{MOUNT}/data/written"].startswith(f"{POSTGRES_UID}:"), seen


def test_user_deployment_wait_resolves_a_service_and_waits_for_a_missing_one(
    core: client.CoreV1Api, namespace: str, dagster: dict, standin_images: dict[str, str]
) -> None:
    security = dagster["dagsterWebserver"]["podSecurityContext"]
    present_ip = _service(core, namespace, "present", "nothing")
    core.create_namespaced_pod(namespace, _pod(
        "present", [init_user_deployment(dagster, "dagsterWebserver", "present")], security
    ))  # fmt: skip
    location = dagster["dagster-user-deployments"]["deployments"][0]  # dagma's, not yet there
    container = init_user_deployment(dagster, "dagsterWebserver", location["name"])
    assert container["image"] == standin_images["busybox"]
    core.create_namespaced_pod(namespace, _pod("waiting", [container], security))

    assert wait_pod_phase(core, namespace, "present", {"Succeeded", "Failed"}) == "Succeeded"
    assert re.search(rf"Address:\s+{re.escape(present_ip)}", pod_log(core, namespace, "present"))
    _waits(core, namespace, "waiting", "waiting for user service")
    location_ip = _service(core, namespace, location["name"], "nothing")
    assert wait_pod_phase(core, namespace, "waiting", {"Succeeded", "Failed"}) == "Succeeded"
    assert re.search(rf"Address:\s+{re.escape(location_ip)}", pod_log(core, namespace, "waiting"))


def test_check_db_ready_waits_until_postgresql_accepts_connections(
    core: client.CoreV1Api, namespace: str, dagster: dict, standin_images: dict[str, str]
) -> None:
    security = dagster["dagsterDaemon"]["podSecurityContext"]
    container = check_db_ready(dagster, "dagsterDaemon")
    assert container["image"] == standin_images["postgres"]
    postgresql = dagster["postgresql"]
    # The bundled database's Service name (postgresql.enabled), with no server behind it yet.
    _service(core, namespace, postgresql_host(dagster, RELEASE), "postgresql")
    core.create_namespaced_pod(namespace, _pod("check-db-ready", [container], security))
    _waits(core, namespace, "check-db-ready", "waiting for database")

    env = {"POSTGRES_USER": postgresql["postgresqlUsername"],
           "POSTGRES_PASSWORD": postgresql["postgresqlPassword"],
           "POSTGRES_DB": postgresql["postgresqlDatabase"]}  # fmt: skip
    server = {
        "name": "postgresql", "image": standin_images["postgres"],
        "imagePullPolicy": "IfNotPresent",
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "securityContext": RESTRICTED_CONTAINER | {"runAsUser": 999, "runAsGroup": 999},
    }  # fmt: skip
    core.create_namespaced_pod(namespace, _pod("postgresql", [server], {}))
    assert wait_pod_phase(core, namespace, "check-db-ready", {"Succeeded", "Failed"}) == (
        "Succeeded"
    ), describe_pod(core, namespace, "check-db-ready")
    assert "accepting connections" in pod_log(core, namespace, "check-db-ready")
