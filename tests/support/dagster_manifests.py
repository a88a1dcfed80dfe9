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
- of the ``charts/dagster-user-deployments`` subchart, for each deployment:
  ``templates/deployment-user.yaml``, ``templates/service-user.yaml``,
  ``templates/configmap-env-user.yaml``; once: ``templates/configmap-env-shared.yaml``,
  ``templates/serviceaccount.yaml``, ``templates/role.yaml`` and
  ``templates/rolebinding.yaml`` (``rbacEnabled``: the Jobs and pods a run pod's
  ``k8s_job_executor`` creates for its steps), and ``templates/helpers/_helpers.tpl`` (the
  container context, through :func:`support.dagster_chart.user_code_container_context`).

Only what dagma's values and the chart's defaults use is mirrored; any other value raises
``NotImplementedError`` instead of being silently left out. Liberties: ``DAGSTER_HOME`` and
``DAGSTER_DISABLE_TELEMETRY`` are set on the webserver and daemon containers (the chart
puts ``DAGSTER_HOME`` in ``configmap-env-webserver.yaml``/``configmap-env-daemon.yaml``,
not built); labels are ``app.kubernetes.io/instance``, ``component`` and, on a code
location's objects, ``deployment`` only.
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


def _labels(component: str, location: str | None) -> dict[str, str]:
    """The release and component; a code location's objects also ``deployment: <name>``."""
    labels = {"app.kubernetes.io/instance": RELEASE, "component": component}
    return labels | ({"deployment": location} if location else {})


def _deployment(
    name: str, component: str, pod: dict[str, Any], location: str | None = None
) -> dict[str, Any]:
    labels = _labels(component, location)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def _service(name: str, component: str, port: int, location: str | None = None) -> dict[str, Any]:
    labels = _labels(component, location)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "selector": labels,
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


def _shared_config_map(user_deployments: Values, namespace: str) -> dict[str, Any]:
    """``configmap-env-shared.yaml``."""
    fullname = _user_fullname(user_deployments)
    home = (user_deployments.get("global") or {}).get("dagsterHome")
    return _config_map(f"{fullname}-user-deployments-shared-env", {
        "DAGSTER_HOME": home or user_deployments["dagsterHome"],
        "DAGSTER_K8S_PIPELINE_RUN_NAMESPACE": namespace,
        "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP": f"{fullname}-pipeline-env",
    })  # fmt: skip


def _user_config_map(user_deployments: Values, deployment: Values) -> dict[str, Any]:
    """``configmap-env-user.yaml`` (the map form of env)."""
    env = deployment.get("env")
    data = {k: str(v) for k, v in env.items()} if isinstance(env, Mapping) else {}
    return _config_map(f"{_user_fullname(user_deployments)}-{deployment['name']}-user-env", data)


def _user_objects(
    user_deployments: Values, deployment: Values, namespace: str, chart_version: str
) -> list[dict[str, Any]]:
    """One code location: its env ConfigMap, Deployment and Service."""
    pod = _user_pod(user_deployments, deployment, namespace, chart_version)
    # The subchart's serviceaccount.yaml: the code location's pods and its run pods use it.
    pod["serviceAccountName"] = _user_account(user_deployments)
    fullname, name = _user_fullname(user_deployments), deployment["name"]
    return [
        _user_config_map(user_deployments, deployment),
        _deployment(f"{fullname}-{name}", "user-deployments", pod, location=name),
        _service(name, "user-deployments", deployment["port"], location=name),
    ]


def _user_account(user_deployments: Values) -> str:
    return f"{_user_fullname(user_deployments)}-user-deployments"


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


def _role(fullname: str, account: str, namespace: str, cronjobs: bool) -> list[dict[str, Any]]:
    """A ServiceAccount with a Role on Jobs and pods (the chart's and the subchart's rules)."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": f"{fullname}-role"},
            "rules": [
                {"apiGroups": ["batch"],
                 "resources": ["jobs", "jobs/status", *(["cronjobs"] if cronjobs else [])],
                 "verbs": ["*"]},
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
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    ]  # fmt: skip


def _rbac(dagster: Values, namespace: str) -> list[dict[str, Any]]:
    """The daemon's account and Role (``templates/role.yaml``), and the code locations'
    (the subchart's, ``rbacEnabled``: a run pod's ``k8s_job_executor`` starts step Jobs)."""
    fullname = dagster_fullname(dagster, RELEASE)
    user_deployments = dagster["dagster-user-deployments"]
    objects = _role(fullname, fullname, namespace, cronjobs=False)
    user_account = _user_account(user_deployments)
    if user_deployments.get("rbacEnabled", True):
        objects += _role(_user_fullname(user_deployments), user_account, namespace, cronjobs=True)
    else:
        objects.append({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": user_account}})  # fmt: skip
    return objects


def dagster_objects(
    dagster: Values, namespace: str, image: str, chart_version: str
) -> list[dict[str, Any]]:
    """Everything the Dagster chart would render for this release (see the module doc)."""
    fullname = dagster_fullname(dagster, RELEASE)
    user_deployments = dagster["dagster-user-deployments"]
    if not user_deployments["enabled"]:
        raise unmirrored("dagster-user-deployments.enabled=false")
    locations = [
        user_deployment(dagster, location["name"]) for location in user_deployments["deployments"]
    ]
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
        _shared_config_map(user_deployments, namespace),
        _config_map(f"{fullname}-workspace-yaml",
                    {"workspace.yaml": yaml.safe_dump(_workspace(dagster))}),
        *_rbac(dagster, namespace),
        *(o for code in locations
          for o in _user_objects(user_deployments, code, namespace, chart_version)),
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
