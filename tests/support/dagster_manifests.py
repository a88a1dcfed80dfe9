"""The stand-in copy of the Dagster chart's objects, for the release on the local cluster.

Only because the official chart is absent here: it cannot be downloaded, and its templates
never enter this repository. Where it is on the machine, the release tests install it
instead and nothing here is used (:func:`support.umbrella.find_official_chart`). Without
it, charts/dagma is installed with the values-only stand-in as its Dagster dependency and
:func:`dagster_objects` applies what the chart would render, built from the release's
effective values (:func:`support.umbrella.effective_values`, the ``dagster`` key).

Each object follows one template of dagster-io/dagster ``helm/dagster`` (Dagster 1.13):

- ``templates/configmap-instance.yaml``, its ``dagster.yaml`` from
  :func:`support.dagster_chart.instance_config` (``templates/helpers/instance/
  _postgresql.tpl``, ``_scheduler.tpl``, ``_run-coordinator.tpl``,
  ``_compute-log-manager.tpl``, ``_run-launcher.tpl``);
- ``templates/secret-postgres.yaml``; ``templates/configmap-workspace.yaml``;
- ``templates/deployment-webserver.yaml`` (``helpers/_deployment-webserver.tpl``),
  ``templates/service-webserver.yaml`` (``helpers/_service-webserver.tpl``) and
  ``templates/deployment-daemon.yaml``, with their init containers ``check-db-ready``
  and ``init-user-deployment-<name>``;
- ``templates/serviceaccount.yaml``, ``templates/role.yaml``, ``templates/rolebinding.yaml``;
- names and commands from ``templates/helpers/_helpers.tpl``: ``dagster.fullname``,
  ``dagster.webserver.fullname``, ``dagster.webserver.dagsterWebserverCommand``,
  ``dagster.dagsterDaemon.daemonCommand``, ``dagster.postgresql.host``,
  ``dagster.postgresql.secretName``, ``dagster.postgresql.pgisready``;
- of the ``charts/dagster-user-deployments`` subchart: ``templates/deployment-user.yaml``,
  ``templates/service-user.yaml``, ``templates/configmap-env-user.yaml``,
  ``templates/configmap-env-shared.yaml``, ``templates/serviceaccount.yaml`` and
  ``templates/helpers/_helpers.tpl`` (the container context, through
  :func:`support.dagster_chart.user_code_container_context`).

Only what dagma's values and the chart's defaults use is mirrored; any other value raises
``NotImplementedError`` instead of being silently left out. Liberties: ``DAGSTER_HOME`` and
``DAGSTER_DISABLE_TELEMETRY`` are set on the webserver and daemon containers (the chart
puts ``DAGSTER_HOME`` in ``configmap-env-webserver.yaml``/``configmap-env-daemon.yaml``,
not built); labels are ``app.kubernetes.io/instance`` and ``component`` only.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping
from typing import Any

import yaml

from support.dagster_chart import (
    dagster_fullname,
    image_name,
    instance_config,
    postgresql_host,
    postgresql_secret_name,
    unmirrored,
    user_code_container_context,
    user_deployment,
)
from support.umbrella import RELEASE

Values = Mapping[str, Any]
WORKSPACE_PATH = "/dagster-workspace/workspace.yaml"  # where the chart mounts workspace.yaml


# --- the webserver and the daemon --------------------------------------------------


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


def _service(name: str, component: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": _labels(component)},
        "spec": {
            "selector": _labels(component),
            "ports": [{"name": "http", "port": port, "targetPort": port}],
        },
    }


def _config_map(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def _image(image: Values) -> str:
    """``<registry>/<repository>:<tag>`` of an image block of the values."""
    registry = image.get("registry")
    return f"{registry + '/' if registry else ''}{image['repository']}:{image['tag']}"


def _init_container(values: Values, container: dict[str, Any]) -> dict[str, Any]:
    """The component's ``securityContext`` and ``initContainerResources`` on an init container."""
    container["securityContext"] = values.get("securityContext") or {}
    if values.get("initContainerResources"):
        container["resources"] = values["initContainerResources"]
    return container


def check_db_ready(dagster: Values, component: str) -> dict[str, Any]:
    """The chart's ``check-db-ready`` init container (``dagster.postgresql.pgisready``)."""
    postgresql = dagster["postgresql"]
    host = postgresql_host(dagster, RELEASE)
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


def init_user_deployment(dagster: Values, component: str, name: str) -> dict[str, Any]:
    """The chart's ``init-user-deployment-<name>``: waits until the location's name resolves."""
    wait = f"until nslookup {name}; do echo waiting for user service; sleep 2; done"
    return _init_container(dagster[component], {
        "name": f"init-user-deployment-{name}",
        "image": _image(dagster["busybox"]["image"]),  # no pull policy: the API's default
        "command": ["sh", "-c", wait],
    })  # fmt: skip


def _dagster_pod(dagster: Values, component: str, image: str, command: str) -> dict[str, Any]:
    """A webserver/daemon pod from ``dagster[component]``, as the chart's templates render it."""
    values = dagster[component]
    fullname = dagster_fullname(dagster, RELEASE)
    home = dagster["global"]["dagsterHome"]
    init_containers = []
    if values.get("checkDbReadyInitContainer", True):
        init_containers.append(check_db_ready(dagster, component))
    user_deployments = dagster["dagster-user-deployments"]
    if user_deployments.get("enableSubchart"):
        init_containers += [init_user_deployment(dagster, component, d["name"])
                            for d in user_deployments["deployments"]]  # fmt: skip
    env = values.get("env") or []
    if not isinstance(env, list):
        raise unmirrored(f"{component}.env as a map (the chart's -env ConfigMap)")
    password = {"secretKeyRef": {"name": postgresql_secret_name(dagster, RELEASE),
                                 "key": "postgresql-password"}}  # fmt: skip
    return {
        "securityContext": values.get("podSecurityContext") or {},
        "initContainers": init_containers,
        "containers": [{
            "name": "dagster",
            "securityContext": values.get("securityContext") or {},
            "image": image,
            "imagePullPolicy": values["image"]["pullPolicy"],
            "command": ["/bin/bash", "-c", command],
            "env": [{"name": "DAGSTER_HOME", "value": home},
                    {"name": "DAGSTER_DISABLE_TELEMETRY", "value": "true"},
                    {"name": "DAGSTER_PG_PASSWORD", "valueFrom": password}, *env],
            "volumeMounts": [
                {"name": "dagster-instance", "mountPath": f"{home}/dagster.yaml",
                 "subPath": "dagster.yaml"},
                {"name": "dagster-workspace-yaml", "mountPath": "/dagster-workspace/"},
                *(values.get("volumeMounts") or []),
            ],
            "resources": values.get("resources") or {},
        }],
        "volumes": [
            {"name": "dagster-instance", "configMap": {"name": f"{fullname}-instance"}},
            {"name": "dagster-workspace-yaml", "configMap": {"name": f"{fullname}-workspace-yaml"}},
            *(values.get("volumes") or []),
        ],
    }  # fmt: skip


def webserver_name(dagster: Values) -> str:
    """The webserver's Deployment and Service name, as the chart's ``dagster.webserver.fullname``.

    ``<release>-<dagsterWebserver.nameOverride>`` (``dagma-dagster-webserver``): what the
    chart's NOTES, charts/dagma's NOTES and skaffold.yaml's port-forward name.
    """
    name = dagster["dagsterWebserver"].get("nameOverride") or "webserver"
    return f"{RELEASE}-{name}"


def _webserver_command(dagster: Values) -> str:
    """``dagster.webserver.dagsterWebserverCommand`` (run through ``/bin/bash -c``)."""
    webserver = dagster["dagsterWebserver"]
    command = ["dagster-webserver", "-h", "0.0.0.0", "-p", str(webserver["service"]["port"]),
               "-w", WORKSPACE_PATH]  # fmt: skip
    for key, flag in (("dbStatementTimeout", "--db-statement-timeout"),
                      ("dbPoolRecycle", "--db-pool-recycle"),
                      ("pathPrefix", "--path-prefix"), ("logLevel", "--log-level")):  # fmt: skip
        if webserver.get(key):
            command += [flag, str(webserver[key])]
    return " ".join(command)


# --- the user-deployments subchart ------------------------------------------------


def _user_fullname(user_deployments: Values) -> str:
    return dagster_fullname(user_deployments, RELEASE, chart_name="dagster-user-deployments")


def _user_container_env(
    user_deployments: Values, deployment: Values, namespace: str, image: str
) -> list[dict[str, Any]]:
    global_values = user_deployments.get("global") or {}
    env: list[dict[str, Any]] = [{"name": "DAGSTER_CURRENT_IMAGE", "value": image}]
    if not global_values.get("postgresqlAuthWifEnabled"):
        secret = (
            global_values.get("postgresqlSecretName") or user_deployments["postgresqlSecretName"]
        )
        env.append({
            "name": "DAGSTER_PG_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": secret, "key": "postgresql-password"}},
        })  # fmt: skip
    if (deployment.get("includeConfigInLaunchedRuns") or {"enabled": True})["enabled"]:
        context = user_code_container_context(user_deployments, deployment, RELEASE, namespace)
        # fromYaml | toJson: Go's JSON, keys sorted, no spaces.
        value = json.dumps(context, sort_keys=True, separators=(",", ":"))
        env.append({"name": "DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT", "value": value})
    if isinstance(deployment.get("env"), list):
        env += deployment["env"]
    return env


def _user_pod(
    user_deployments: Values, deployment: Values, namespace: str, chart_version: str
) -> dict[str, Any]:
    """The pod of one code location's gRPC server (``deployment-user.yaml``).

    ``user_deployments`` are the effective values of the subchart
    (``dagster.dagster-user-deployments``), ``deployment`` one of its ``deployments``.
    """
    if not deployment.get("dagsterApiGrpcArgs"):
        raise unmirrored(f"deployment {deployment['name']!r} without dagsterApiGrpcArgs")
    if deployment.get("readinessProbe"):
        raise unmirrored("a custom readinessProbe")
    fullname = _user_fullname(user_deployments)
    image = image_name(deployment["image"], chart_version)
    port = str(deployment["port"])
    env_from: list[dict[str, Any]] = [
        {"configMapRef": {"name": f"{fullname}-user-deployments-shared-env"}},
        {"configMapRef": {"name": f"{fullname}-{deployment['name']}-user-env"}},
        *({"configMapRef": ref} for ref in deployment.get("envConfigMaps") or []),
        *({"secretRef": ref} for ref in deployment.get("envSecrets") or []),
    ]
    global_values = user_deployments.get("global") or {}
    celery = global_values.get("celeryConfigSecretName") or user_deployments.get(
        "celeryConfigSecretName"
    )
    if celery:
        env_from.append({"secretRef": {"name": celery, "optional": True}})
    container: dict[str, Any] = {
        "name": "dagster-user-deployments",
        "securityContext": deployment.get("securityContext") or {},
        "imagePullPolicy": deployment["image"]["pullPolicy"],
        "image": image,
        "args": ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", port,
                 *deployment["dagsterApiGrpcArgs"]],
        "env": _user_container_env(user_deployments, deployment, namespace, image),
        "envFrom": env_from,
        "resources": deployment.get("resources") or {},
        "readinessProbe": {
            "exec": {"command": ["dagster", "api", "grpc-health-check", "-p", port]},
            "periodSeconds": 20, "timeoutSeconds": 10, "successThreshold": 1,
            "failureThreshold": 15,
        },
    }  # fmt: skip
    if deployment.get("volumeMounts"):
        container["volumeMounts"] = deployment["volumeMounts"]
    pod: dict[str, Any] = {
        "securityContext": deployment.get("podSecurityContext") or {},
        "containers": [container],
    }
    if deployment.get("volumes"):
        pod["volumes"] = deployment["volumes"]
    return pod


def _user_config_maps(user_deployments: Values, deployment: Values, namespace: str) -> list:
    """``configmap-env-shared.yaml`` and ``configmap-env-user.yaml`` (the map form of env)."""
    fullname = _user_fullname(user_deployments)
    home = (user_deployments.get("global") or {}).get("dagsterHome")
    env = deployment.get("env")
    return [
        _config_map(f"{fullname}-user-deployments-shared-env", {
            "DAGSTER_HOME": home or user_deployments["dagsterHome"],
            "DAGSTER_K8S_PIPELINE_RUN_NAMESPACE": namespace,
            "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP": f"{fullname}-pipeline-env",
        }),
        _config_map(f"{fullname}-{deployment['name']}-user-env",
                    {k: str(v) for k, v in env.items()} if isinstance(env, Mapping) else {}),
    ]  # fmt: skip


# --- everything, for one release ----------------------------------------------------


def _workspace(dagster: Values) -> dict[str, Any]:
    """``workspace.yaml``: one gRPC server per user deployment, at its Service name."""
    if (dagster["dagsterWebserver"].get("workspace") or {}).get("enabled"):
        raise unmirrored("dagsterWebserver.workspace.enabled")
    servers = [
        {"grpc_server": {"host": d["name"], "port": d["port"], "location_name": d["name"]}}
        for d in dagster["dagster-user-deployments"]["deployments"]
    ]
    return {"load_from": servers}


def _rbac(fullname: str, user_account: str, namespace: str) -> list[dict[str, Any]]:
    """Both ServiceAccounts, and the daemon's Role and RoleBinding (Jobs and pods)."""
    return [
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


def dagster_objects(
    dagster: Values, namespace: str, image: str, chart_version: str
) -> list[dict[str, Any]]:
    """Everything the Dagster chart would render for this release (see the module doc)."""
    fullname = dagster_fullname(dagster, RELEASE)
    user_deployments = dagster["dagster-user-deployments"]
    if not user_deployments["enabled"]:
        raise unmirrored("dagster-user-deployments.enabled=false")
    [location] = user_deployments["deployments"]
    code = user_deployment(dagster, location["name"])
    user_pod = _user_pod(user_deployments, code, namespace, chart_version)
    # The subchart's serviceaccount.yaml: the code location's pods and its run pods use it.
    user_account = f"{_user_fullname(user_deployments)}-user-deployments"
    user_pod["serviceAccountName"] = user_account
    webserver = dagster["dagsterWebserver"]
    port = int(webserver["service"]["port"])
    webserver_pod = _dagster_pod(dagster, "dagsterWebserver", image, _webserver_command(dagster))
    container = webserver_pod["containers"][0]
    container["ports"] = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    if webserver.get("readinessProbe"):
        container["readinessProbe"] = webserver["readinessProbe"]
    daemon_command = f"dagster-daemon run -w {WORKSPACE_PATH}"
    daemon_pod = _dagster_pod(dagster, "dagsterDaemon", image, daemon_command)
    daemon_pod["containers"][0]["env"].append({
        "name": "DAGSTER_DAEMON_HEARTBEAT_TOLERANCE",
        "value": str(dagster["dagsterDaemon"]["heartbeatTolerance"]),
    })  # fmt: skip
    daemon_pod["serviceAccountName"] = fullname
    instance = yaml.safe_dump(instance_config(dagster, RELEASE, namespace))
    objects = [
        _config_map(f"{fullname}-instance", {"dagster.yaml": instance}),
        *_user_config_maps(user_deployments, code, namespace),
        _config_map(f"{fullname}-workspace-yaml",
                    {"workspace.yaml": yaml.safe_dump(_workspace(dagster))}),
        *_rbac(fullname, user_account, namespace),
        _deployment(f"{_user_fullname(user_deployments)}-{code['name']}", "user-deployments",
                    user_pod),
        _service(location["name"], "user-deployments", location["port"]),
        _deployment(webserver_name(dagster), "dagster-webserver", webserver_pod),
        _service(webserver_name(dagster), "dagster-webserver", port),
        _deployment(f"{fullname}-daemon", "dagster-daemon", daemon_pod),
    ]  # fmt: skip
    if dagster.get("generatePostgresqlPasswordSecret"):  # secret-postgres.yaml
        password = str(dagster["postgresql"]["postgresqlPassword"]).encode()
        objects.append({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": postgresql_secret_name(dagster, RELEASE)},
            "data": {"postgresql-password": base64.b64encode(password).decode()},
        })  # fmt: skip
    for o in objects:
        o.setdefault("metadata", {})["namespace"] = namespace
    return copy.deepcopy(objects)
