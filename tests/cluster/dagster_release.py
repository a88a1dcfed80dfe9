"""The dagma release on the real cluster when the official Dagster chart is not on the machine.

charts/dagma is installed with Helm (its own templates and the MLflow subchart; the Dagster
dependency is the values-only stand-in of :func:`support.umbrella.umbrella_dir`), and what
the Dagster chart would render is applied to the API from the release's merged values:
:mod:`support.dagster_manifests` for the instance, workspace, environment and the user
deployment, plus here the webserver and daemon Deployments, the user deployment's Service
and the daemon's RBAC after the chart's ``deployment-webserver.yaml``,
``deployment-daemon.yaml``, ``service-user.yaml`` and ``role.yaml``/``rolebinding.yaml``.

The webserver and daemon pods are built from their components' values as those templates
render them: ``podSecurityContext``, ``securityContext`` (also on the init containers),
``volumes``/``volumeMounts`` after the instance and workspace mounts, the list-form ``env``,
and the init containers ``check-db-ready`` (``pg_isready`` on the ``postgresql.image``)
and ``init-user-deployment-<name>`` (``nslookup`` on the ``busybox.image``). The restricted
security contexts and the emptyDirs for ``DAGSTER_HOME`` and ``/tmp`` come from
charts/dagma's values (the Dagster chart's defaults set none).

Liberties: ``DAGSTER_HOME`` and ``DAGSTER_DISABLE_TELEMETRY`` are set on the container
(the chart puts ``DAGSTER_HOME`` in a ``<fullname>-webserver-env``/``-daemon-env``
ConfigMap, not built here); Dagster's PostgreSQL is an external one (the chart's option
``postgresql.enabled: false``) in a namespace of its own, since the bundled bitnami
subchart cannot meet Pod Security "restricted".
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from kubernetes import client
from support import dagster_manifests
from support.dagster_chart import dagster_fullname, user_deployment
from support.release import NO_TELEMETRY
from support.umbrella import RELEASE, values_paths
from workloads import wait_for


def _labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/instance": RELEASE, "component": component}


def _deployment(name: str, component: str, pod: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": _labels(component)},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": _labels(component)},
            "template": {"metadata": {"labels": _labels(component)}, "spec": pod},
        },
    }


def _service(name: str, component: str, port: int, target: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": _labels(component)},
        "spec": {
            "selector": _labels(component),
            "ports": [{"name": "http", "port": port, "targetPort": target}],
        },
    }


def _image(image: dict[str, Any]) -> str:
    """``<registry>/<repository>:<tag>`` of an image block of the values."""
    registry = image.get("registry")
    return f"{registry + '/' if registry else ''}{image['repository']}:{image['tag']}"


def check_db_ready(dagster: dict[str, Any], component: str) -> dict[str, Any]:
    """The chart's ``check-db-ready`` init container (``dagster.postgresql.pgisready``)."""
    postgresql = dagster["postgresql"]
    host = dagster_manifests.postgresql_host(dagster, RELEASE)
    if not postgresql["enabled"]:
        host = f'"{host}"'  # the chart quotes an external host
    wait = (
        f"until pg_isready -h {host} -p {postgresql['service']['port']} "
        f"-U {postgresql['postgresqlUsername']}; do echo waiting for database; sleep 2; done;"
    )
    return _init_container(dagster[component], {
        "name": "check-db-ready",
        "image": _image(postgresql["image"]),
        "imagePullPolicy": postgresql["image"]["pullPolicy"],
        "command": ["sh", "-c", wait],
    })  # fmt: skip


def init_user_deployment(dagster: dict[str, Any], component: str, name: str) -> dict[str, Any]:
    """The chart's ``init-user-deployment-<name>``: waits until the location's name resolves."""
    wait = f"until nslookup {name}; do echo waiting for user service; sleep 2; done"
    return _init_container(dagster[component], {
        "name": f"init-user-deployment-{name}",
        "image": _image(dagster["busybox"]["image"]),  # no pull policy: the API's default
        "command": ["sh", "-c", wait],
    })  # fmt: skip


def _init_container(values: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """The component's ``securityContext`` and ``initContainerResources`` on an init container."""
    container["securityContext"] = values.get("securityContext") or {}
    if values.get("initContainerResources"):
        container["resources"] = values["initContainerResources"]
    return container


def _dagster_pod(
    dagster: dict[str, Any], component: str, image: str, command: str
) -> dict[str, Any]:
    """A webserver/daemon pod from ``dagster[component]``, as the chart's templates render it."""
    values = dagster[component]
    fullname = dagster_fullname(dagster, RELEASE)
    secret = dagster_manifests.postgresql_secret_name(dagster, RELEASE)
    home = dagster["global"]["dagsterHome"]
    user_deployments = dagster["dagster-user-deployments"]
    if not user_deployments["enabled"]:
        raise NotImplementedError("dagster-user-deployments.enabled=false")
    init_containers = []
    if values.get("checkDbReadyInitContainer", True):
        init_containers.append(check_db_ready(dagster, component))
    if user_deployments.get("enableSubchart"):
        init_containers += [init_user_deployment(dagster, component, d["name"])
                            for d in user_deployments["deployments"]]  # fmt: skip
    env = values.get("env") or []
    if not isinstance(env, list):
        raise NotImplementedError(f"{component}.env as a map (the chart's -env ConfigMap)")
    return {
        "securityContext": values.get("podSecurityContext") or {},
        "initContainers": init_containers,
        "containers": [
            {
                "name": "dagster",
                "securityContext": values.get("securityContext") or {},
                "image": image,
                "imagePullPolicy": values["image"]["pullPolicy"],
                "command": ["/bin/bash", "-c", command],
                "env": [
                    {"name": "DAGSTER_HOME", "value": home},
                    {"name": "DAGSTER_DISABLE_TELEMETRY", "value": "true"},
                    {
                        "name": "DAGSTER_PG_PASSWORD",
                        "valueFrom": {
                            "secretKeyRef": {"name": secret, "key": "postgresql-password"}
                        },
                    },
                    *env,
                ],  # fmt: skip
                "volumeMounts": [
                    {
                        "name": "dagster-instance",
                        "mountPath": f"{home}/dagster.yaml",
                        "subPath": "dagster.yaml",
                    },
                    {"name": "dagster-workspace-yaml", "mountPath": "/dagster-workspace/"},
                    *(values.get("volumeMounts") or []),
                ],  # fmt: skip
                "resources": values.get("resources") or {},
            }
        ],
        "volumes": [
            {"name": "dagster-instance", "configMap": {"name": f"{fullname}-instance"}},
            {"name": "dagster-workspace-yaml", "configMap": {"name": f"{fullname}-workspace-yaml"}},
            *(values.get("volumes") or []),
        ],  # fmt: skip
    }


def webserver_name(dagster: dict) -> str:
    """The webserver's Deployment and Service name, as the chart's ``dagster.webserver.fullname``.

    ``<release>-<dagsterWebserver.nameOverride>`` (``dagma-dagster-webserver``): what the
    chart's NOTES, charts/dagma's NOTES and skaffold.yaml's port-forward name.
    """
    name = dagster["dagsterWebserver"].get("nameOverride") or "webserver"
    return f"{RELEASE}-{name}"


def dagster_objects(
    dagster: dict[str, Any], namespace: str, image: str, chart_version: str
) -> list[dict[str, Any]]:
    """Everything the Dagster chart would render for this release (see the module doc)."""
    fullname = dagster_fullname(dagster, RELEASE)
    user_deployments = dagster["dagster-user-deployments"]
    [location] = user_deployments["deployments"]
    code = user_deployment(dagster, location["name"])
    user = dagster_manifests.user_deployment(
        user_deployments, code, RELEASE, namespace, chart_version
    )
    user_pod = user["spec"]["template"]["spec"]
    # The subchart's serviceaccount.yaml: the code location's pods and its run pods use it.
    user_account = (
        dagster_fullname(user_deployments, RELEASE, chart_name="dagster-user-deployments")
        + "-user-deployments"
    )
    user_pod["serviceAccountName"] = user_account
    user = _deployment(user["metadata"]["name"], "user-deployments", user_pod)
    workspace = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{fullname}-workspace-yaml"},
        "data": {"workspace.yaml": yaml.safe_dump(dagster_manifests.workspace(dagster))},
    }
    webserver = dagster["dagsterWebserver"]
    port = int(webserver["service"]["port"])
    command = " ".join(dagster_manifests.webserver_command(dagster))
    webserver_pod = _dagster_pod(dagster, "dagsterWebserver", image, command)
    container = webserver_pod["containers"][0]
    container["ports"] = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    if webserver.get("readinessProbe"):
        container["readinessProbe"] = webserver["readinessProbe"]
    daemon_command = "dagster-daemon run -w /dagster-workspace/workspace.yaml"
    daemon_pod = _dagster_pod(dagster, "dagsterDaemon", image, daemon_command)
    daemon_pod["containers"][0]["env"].append({
        "name": "DAGSTER_DAEMON_HEARTBEAT_TOLERANCE",
        "value": str(dagster["dagsterDaemon"]["heartbeatTolerance"]),
    })  # fmt: skip
    daemon_pod["serviceAccountName"] = fullname
    rbac = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": fullname}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": user_account}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": f"{fullname}-role"},
            "rules": [
                {"apiGroups": ["batch"], "resources": ["jobs", "jobs/status"], "verbs": ["*"]},
                {"apiGroups": [""], "resources": ["pods", "pods/log", "pods/status"],
                 "verbs": ["*"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{fullname}-rolebinding"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": f"{fullname}-role"},
            "subjects": [{"kind": "ServiceAccount", "name": fullname, "namespace": namespace}],
        },
    ]  # fmt: skip
    objects = [
        dagster_manifests.instance_config_map(dagster, RELEASE, namespace),
        dagster_manifests.shared_env_config_map(user_deployments, RELEASE, namespace),
        dagster_manifests.user_env_config_map(user_deployments, code, RELEASE),
        workspace,
        *rbac,
        user,
        _service(location["name"], "user-deployments", location["port"], location["port"]),
        _deployment(webserver_name(dagster), "dagster-webserver", webserver_pod),
        _service(webserver_name(dagster), "dagster-webserver", port, port),
        _deployment(f"{fullname}-daemon", "dagster-daemon", daemon_pod),
    ]  # fmt: skip
    secret = dagster_manifests.postgresql_secret(dagster, RELEASE)
    if secret is not None:
        objects.append(secret)
    for o in objects:
        o.setdefault("metadata", {})["namespace"] = namespace
    return copy.deepcopy(objects)


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


def machine_overlay(postgres_host: str, password: str) -> dict:
    """Only what the machine needs: the external database and telemetry off."""
    kind = yaml.safe_load(values_paths(["kind.yaml"])[0].read_text())
    deployments = kind["dagster"]["dagster-user-deployments"]["deployments"]
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
