"""The dagma release on the real cluster when the official Dagster chart is not on the machine.

charts/dagma is installed with Helm (its own templates and the MLflow subchart; the Dagster
dependency is the values-only stand-in of :func:`support.umbrella.umbrella_dir`), and what
the Dagster chart would render is applied to the API from the release's merged values:
:mod:`support.dagster_manifests` for the instance, workspace, environment and the user
deployment, plus here the webserver and daemon Deployments, the user deployment's Service
and the daemon's RBAC after the chart's ``deployment-webserver.yaml``,
``deployment-daemon.yaml``, ``service-user.yaml`` and ``role.yaml``/``rolebinding.yaml``.

Liberties, all for Pod Security "restricted" on the release's namespace: the webserver and
daemon pods get the restricted security context (the chart's defaults set none) and
emptyDirs for ``DAGSTER_HOME`` and ``/tmp``; Dagster's PostgreSQL is an external one (the
chart's option ``postgresql.enabled: false``) in a namespace of its own.
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
from workloads import RESTRICTED_CONTAINER, wait_deployment_ready

DAGSTER_HOME = "/opt/dagster/dagster_home"
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}


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


def _dagster_pod(dagster: dict[str, Any], image: str, command: str) -> dict[str, Any]:
    """A webserver/daemon pod: instance and workspace mounted, the database password."""
    fullname = dagster_fullname(dagster, RELEASE)
    secret = dagster_manifests.postgresql_secret_name(dagster, RELEASE)
    return {
        "securityContext": POD_SECURITY,
        "containers": [
            {
                "name": "dagster",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["/bin/bash", "-c", command],
                "env": [
                    {"name": "DAGSTER_HOME", "value": DAGSTER_HOME},
                    {
                        "name": "DAGSTER_PG_PASSWORD",
                        "valueFrom": {
                            "secretKeyRef": {"name": secret, "key": "postgresql-password"}
                        },
                    },
                    {"name": "DAGSTER_DISABLE_TELEMETRY", "value": "true"},
                ],  # fmt: skip
                "securityContext": RESTRICTED_CONTAINER | {"runAsUser": 10001, "runAsGroup": 10001},
                "volumeMounts": [
                    {"name": "home", "mountPath": DAGSTER_HOME},
                    {
                        "name": "instance",
                        "mountPath": f"{DAGSTER_HOME}/dagster.yaml",
                        "subPath": "dagster.yaml",
                    },
                    {"name": "workspace", "mountPath": "/dagster-workspace/"},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],  # fmt: skip
            }
        ],
        "volumes": [
            {"name": "home", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "instance", "configMap": {"name": f"{fullname}-instance"}},
            {"name": "workspace", "configMap": {"name": f"{fullname}-workspace-yaml"}},
        ],
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
    webserver_pod = _dagster_pod(dagster, image, command)
    # The chart's readinessProbe (dagsterWebserver.readinessProbe defaults).
    webserver_pod["containers"][0]["readinessProbe"] = {
        "httpGet": {"path": "/server_info", "port": port},
        "periodSeconds": 20, "timeoutSeconds": 10, "successThreshold": 1, "failureThreshold": 3,
    }  # fmt: skip
    daemon_pod = _dagster_pod(
        dagster, image, "dagster-daemon run -w /dagster-workspace/workspace.yaml"
    )
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
    Deployment on a PersistentVolumeClaim, so a deleted pod comes back with Dagster's
    run history (the fault tests delete it).
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
    apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": "postgresql", "labels": labels},
        # Recreate: the volume is ReadWriteOnce and two servers must never share PGDATA.
        "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                 "selector": {"matchLabels": labels}, "template": pod},
    })  # fmt: skip
    core.create_namespaced_service(namespace, {
        "metadata": {"name": "postgresql"},
        "spec": {"selector": labels, "ports": [{"port": 5432}]},
    })  # fmt: skip
    wait_deployment_ready(apps, namespace, "postgresql", 300)
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
