"""What the official Dagster chart renders for this release, built from the merged values.

The chart's templates cannot be fetched here and never enter this repository, so the
objects the deployment tests run are built in Python from the release's effective values
(:func:`support.umbrella.effective_values`, the ``dagster`` key), each function mirroring
one upstream template of dagster-io/dagster ``helm/dagster`` (Dagster 1.13):

- :func:`instance_config` — ``templates/configmap-instance.yaml`` (the ``dagster.yaml``)
  with ``templates/helpers/instance/_postgresql.tpl``, ``_run-coordinator.tpl``,
  ``_scheduler.tpl``, ``_compute-log-manager.tpl`` and ``_run-launcher.tpl`` (the last
  through :func:`support.dagster_chart.k8s_run_launcher_config`);
- :func:`postgresql_secret` — ``templates/secret-postgres.yaml``;
- :func:`workspace` — ``templates/configmap-workspace.yaml``;
- :func:`webserver_command` — ``dagster.webserver.dagsterWebserverCommand`` in
  ``templates/helpers/_helpers.tpl``;
- :func:`user_deployment`, :func:`user_env_config_map`, :func:`shared_env_config_map` —
  ``charts/dagster-user-deployments/templates/deployment-user.yaml``,
  ``configmap-env-user.yaml``, ``configmap-env-shared.yaml`` and ``helpers/_helpers.tpl``.

Only what dagma's values use and the chart's defaults are mirrored; anything else raises
``NotImplementedError`` instead of being silently left out.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import yaml

from support.dagster_chart import (
    dagster_fullname,
    image_name,
    k8s_run_launcher_config,
    user_code_container_context,
)

Values = Mapping[str, Any]
WORKSPACE_PATH = "/dagster-workspace/workspace.yaml"  # where the chart mounts workspace.yaml


def _truncate(name: str) -> str:
    return name[:63].rstrip("-")


def postgresql_host(dagster: Values, release: str) -> str:
    """``dagster.postgresql.host``: the bundled database's Service, or ``postgresqlHost``."""
    postgresql = dagster["postgresql"]
    if not postgresql["enabled"]:
        return str(postgresql["postgresqlHost"])
    if postgresql.get("postgresqlHost"):
        return str(postgresql["postgresqlHost"])
    return _truncate(f"{release}-{postgresql.get('nameOverride') or 'postgresql'}")


def postgresql_secret_name(dagster: Values, release: str) -> str:
    """``dagster.postgresql.secretName``."""
    return dagster["global"].get("postgresqlSecretName") or (
        f"{dagster_fullname(dagster, release)}-postgresql-secret"
    )


def _postgres_db(dagster: Values, release: str) -> dict[str, Any]:
    """``dagsterYaml.postgresql.config``."""
    if dagster["global"].get("postgresqlAuthWifEnabled"):
        raise NotImplementedError("global.postgresqlAuthWifEnabled is not mirrored")
    postgresql = dagster["postgresql"]
    config: dict[str, Any] = {
        "username": postgresql["postgresqlUsername"],
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": postgresql_host(dagster, release),
        "db_name": postgresql["postgresqlDatabase"],
        "port": postgresql["service"]["port"],
        "params": postgresql.get("postgresqlParams") or {},
    }
    if postgresql.get("postgresqlScheme"):
        config["scheme"] = postgresql["postgresqlScheme"]
    return {"postgres_db": config}


def _storage(module: str, cls: str, dagster: Values, release: str) -> dict[str, Any]:
    return {"module": module, "class": cls, "config": _postgres_db(dagster, release)}


def _scheduler(dagster: Values) -> dict[str, Any]:
    """``dagsterYaml.scheduler.daemon``."""
    if dagster["scheduler"]["type"] != "DagsterDaemonScheduler":
        raise NotImplementedError(f"scheduler.type {dagster['scheduler']['type']!r}")
    settings = (dagster["scheduler"].get("config") or {}).get("daemonScheduler") or {}
    scheduler: dict[str, Any] = {
        "module": "dagster.core.scheduler",
        "class": "DagsterDaemonScheduler",
    }
    config = {
        "max_catchup_runs": settings.get("maxCatchupRuns"),
        "max_tick_retries": settings.get("maxTickRetries"),
    }
    if any(config.values()):
        scheduler["config"] = {key: value for key, value in config.items() if value}
    return scheduler


def _run_coordinator(dagster: Values) -> dict[str, Any]:
    """``dagsterYaml.runCoordinator.queued`` (the newest form, aware of ``concurrency``)."""
    coordinator = dagster["dagsterDaemon"]["runCoordinator"]
    if coordinator["type"] != "QueuedRunCoordinator":
        raise NotImplementedError(f"runCoordinator.type {coordinator['type']!r}")
    queued = coordinator["config"]["queuedRunCoordinator"]
    concurrency_enabled = bool((dagster.get("concurrency") or {}).get("enabled"))
    result: dict[str, Any] = {
        "module": "dagster.core.run_coordinator",
        "class": "QueuedRunCoordinator",
    }
    if not any(value not in (None, "", 0, False, [], {}) for value in queued.values()):
        return result
    config: dict[str, Any] = {}
    limit = queued.get("maxConcurrentRuns")
    if not concurrency_enabled or limit is not None:
        config["max_concurrent_runs"] = -1 if limit is None else limit
    if queued.get("tagConcurrencyLimits"):
        config["tag_concurrency_limits"] = queued["tagConcurrencyLimits"]
    for key, ours in (
        ("dequeueIntervalSeconds", "dequeue_interval_seconds"),
        ("dequeueUseThreads", "dequeue_use_threads"),
        ("dequeueNumWorkers", "dequeue_num_workers"),
    ):
        if queued.get(key):
            config[ours] = queued[key]
    block = queued.get("blockOpConcurrencyLimitedRuns")
    if block:
        config["block_op_concurrency_limited_runs"] = {
            "enabled": block["enabled"],
            "op_concurrency_slot_buffer": block["opConcurrencySlotBuffer"],
        }
    result["config"] = config
    return result


def _compute_logs(dagster: Values) -> dict[str, Any]:
    """``dagsterYaml.computeLogManager.noop`` (the chart's default)."""
    kind = dagster["computeLogManager"]["type"]
    if kind != "NoOpComputeLogManager":
        raise NotImplementedError(f"computeLogManager.type {kind!r}")
    return {"module": "dagster.core.storage.noop_compute_log_manager", "class": kind}


def _daemon_sections(dagster: Values) -> dict[str, Any]:
    """run_monitoring, run_retries, sensors and schedules, as the daemon values ask."""
    daemon = dagster["dagsterDaemon"]
    if not daemon["enabled"]:
        return {}
    sections: dict[str, Any] = {}
    monitoring = daemon["runMonitoring"]
    if monitoring["enabled"]:
        sections["run_monitoring"] = {
            "enabled": True,
            "start_timeout_seconds": monitoring["startTimeoutSeconds"],
            **({"cancel_timeout_seconds": monitoring["cancelTimeoutSeconds"]}
               if monitoring.get("cancelTimeoutSeconds") is not None else {}),
            **({"max_resume_run_attempts": monitoring["maxResumeRunAttempts"]}
               if monitoring.get("maxResumeRunAttempts") is not None else {}),
            "poll_interval_seconds": monitoring["pollIntervalSeconds"],
            "free_slots_after_run_end_seconds": monitoring["freeSlotsAfterRunEndSeconds"],
        }  # fmt: skip
    retries = daemon["runRetries"]
    if retries["enabled"]:
        sections["run_retries"] = {"enabled": True}
        if retries.get("maxRetries"):
            sections["run_retries"]["max_retries"] = retries["maxRetries"]
    for key in ("sensors", "schedules"):
        threads = daemon[key]
        if threads.get("useThreads"):
            sections[key] = {"use_threads": True}
            for theirs, ours in (("numWorkers", "num_workers"),
                                 ("numSubmitWorkers", "num_submit_workers")):  # fmt: skip
                if threads.get(theirs):
                    sections[key][ours] = threads[theirs]
    return sections


def instance_config(dagster: Values, release: str, namespace: str) -> dict[str, Any]:
    """The ``dagster.yaml`` of the ``<fullname>-instance`` ConfigMap."""
    if (dagster.get("concurrency") or {}).get("enabled"):
        raise NotImplementedError("concurrency.enabled is not mirrored")
    if dagster.get("defsStateStorage"):
        raise NotImplementedError("defsStateStorage is not mirrored")
    if dagster["runLauncher"]["type"] != "K8sRunLauncher":
        raise NotImplementedError(f"runLauncher.type {dagster['runLauncher']['type']!r}")
    config: dict[str, Any] = {
        "scheduler": _scheduler(dagster),
        "schedule_storage": _storage(
            "dagster_postgres.schedule_storage", "PostgresScheduleStorage", dagster, release
        ),
        "run_launcher": {
            "module": "dagster_k8s",
            "class": "K8sRunLauncher",
            "config": k8s_run_launcher_config(dagster, release, namespace),
        },
        "run_storage": _storage(
            "dagster_postgres.run_storage", "PostgresRunStorage", dagster, release
        ),
        "event_log_storage": _storage(
            "dagster_postgres.event_log", "PostgresEventLogStorage", dagster, release
        ),
    }
    daemon = dagster["dagsterDaemon"]
    if daemon["enabled"] and daemon["runCoordinator"]["enabled"]:
        config["run_coordinator"] = _run_coordinator(dagster)
    config["compute_logs"] = _compute_logs(dagster)
    python_logs = dagster.get("pythonLogs") or {}
    if python_logs:
        config["python_logs"] = {
            ours: python_logs[theirs]
            for theirs, ours in (("pythonLogLevel", "python_log_level"),
                                 ("dagsterHandlerConfig", "dagster_handler_config"),
                                 ("managedPythonLoggers", "managed_python_loggers"))
            if python_logs.get(theirs)
        }  # fmt: skip
    config.update(_daemon_sections(dagster))
    config["telemetry"] = {"enabled": dagster["telemetry"]["enabled"]}
    retention = dagster.get("retention") or {}
    if retention.get("enabled"):
        config["retention"] = {
            ours: {"purge_after_days": retention[theirs]["purgeAfterDays"]}
            for theirs, ours in (("sensor", "sensor"), ("schedule", "schedule"),
                                 ("autoMaterialize", "auto_materialize"))
            if retention.get(theirs)
        }  # fmt: skip
    config.update(dagster.get("additionalInstanceConfig") or {})
    return config


def instance_config_map(dagster: Values, release: str, namespace: str) -> dict[str, Any]:
    """The ``<fullname>-instance`` ConfigMap that the daemon, webserver and run pods mount."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{dagster_fullname(dagster, release)}-instance"},
        "data": {"dagster.yaml": yaml.safe_dump(instance_config(dagster, release, namespace))},
    }


def postgresql_secret(dagster: Values, release: str) -> dict[str, Any] | None:
    """The database password Secret, when the chart generates it (else the user provides it)."""
    if not dagster.get("generatePostgresqlPasswordSecret"):
        return None
    password = str(dagster["postgresql"]["postgresqlPassword"])
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": postgresql_secret_name(dagster, release)},
        "data": {"postgresql-password": base64.b64encode(password.encode()).decode()},
    }


def workspace(dagster: Values) -> dict[str, Any]:
    """``workspace.yaml``: one gRPC server per user deployment, at its Service name."""
    user_deployments = dagster["dagster-user-deployments"]
    if not user_deployments["enabled"]:
        raise NotImplementedError("dagster-user-deployments.enabled=false")
    if (dagster["dagsterWebserver"].get("workspace") or {}).get("enabled"):
        raise NotImplementedError("dagsterWebserver.workspace.enabled is not mirrored")
    servers = [
        {"grpc_server": {"host": d["name"], "port": d["port"], "location_name": d["name"]}}
        for d in user_deployments["deployments"]
    ]
    return {"load_from": servers}


def webserver_command(dagster: Values) -> list[str]:
    """The webserver's command line (the chart runs it through ``/bin/bash -c``)."""
    webserver = dagster["dagsterWebserver"]
    command = ["dagster-webserver", "-h", "0.0.0.0", "-p", str(webserver["service"]["port"])]
    if dagster["dagster-user-deployments"]["enabled"]:
        command += ["-w", WORKSPACE_PATH]
    for key, flag in (("dbStatementTimeout", "--db-statement-timeout"),
                      ("dbPoolRecycle", "--db-pool-recycle"),
                      ("pathPrefix", "--path-prefix"), ("logLevel", "--log-level")):  # fmt: skip
        if webserver.get(key):
            command += [flag, str(webserver[key])]
    return command


# --- the user-deployments subchart ----------------------------------------------


def _user_fullname(user_deployments: Values, release: str) -> str:
    return dagster_fullname(user_deployments, release, chart_name="dagster-user-deployments")


def shared_env_config_map(user_deployments: Values, release: str, namespace: str) -> dict:
    """``<fullname>-user-deployments-shared-env`` (``dagsterUserDeployments.sharedEnv``)."""
    fullname = _user_fullname(user_deployments, release)
    global_values = user_deployments.get("global") or {}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{fullname}-user-deployments-shared-env"},
        "data": {
            "DAGSTER_HOME": global_values.get("dagsterHome") or user_deployments["dagsterHome"],
            "DAGSTER_K8S_PIPELINE_RUN_NAMESPACE": namespace,
            "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP": f"{fullname}-pipeline-env",
        },
    }


def user_env_config_map(user_deployments: Values, deployment: Values, release: str) -> dict:
    """``<fullname>-<name>-user-env``: the deployment's ``env`` when it is a map."""
    env = deployment.get("env")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{_user_fullname(user_deployments, release)}-{deployment['name']}-user-env"
        },
        "data": {k: str(v) for k, v in env.items()} if isinstance(env, Mapping) else {},
    }


def _grpc_args(deployment: Values) -> list[str]:
    port = str(deployment["port"])
    if deployment.get("dagsterApiGrpcArgs"):
        return [
            "dagster",
            "api",
            "grpc",
            "-h",
            "0.0.0.0",
            "-p",
            port,
            *deployment["dagsterApiGrpcArgs"],
        ]
    if deployment.get("codeServerArgs"):
        return ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", port,
                *deployment["codeServerArgs"]]  # fmt: skip
    raise ValueError(
        f"deployment {deployment['name']!r} sets neither dagsterApiGrpcArgs nor codeServerArgs"
    )


def _user_env(
    user_deployments: Values, deployment: Values, release: str, namespace: str, image: str
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
        context = user_code_container_context(user_deployments, deployment, release, namespace)
        name = ("DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT" if deployment.get("dagsterApiGrpcArgs")
                else "DAGSTER_CONTAINER_CONTEXT")  # fmt: skip
        # fromYaml | toJson: Go's JSON, keys sorted, no spaces.
        env.append(
            {"name": name, "value": json.dumps(context, sort_keys=True, separators=(",", ":"))}
        )
    if isinstance(deployment.get("env"), list):
        env += deployment["env"]
    return env


def user_deployment(
    user_deployments: Values, deployment: Values, release: str, namespace: str, chart_version: str
) -> dict[str, Any]:
    """The Deployment of one code location (its gRPC server), with its single container.

    ``user_deployments`` are the effective values of the subchart
    (``dagster.dagster-user-deployments``), ``deployment`` one of its ``deployments``.
    """
    fullname = _user_fullname(user_deployments, release)
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
    if deployment.get("readinessProbe"):
        raise NotImplementedError("a custom readinessProbe is not mirrored")
    container: dict[str, Any] = {
        "name": "dagster-user-deployments",
        "securityContext": deployment.get("securityContext") or {},
        "imagePullPolicy": deployment["image"]["pullPolicy"],
        "image": image,
        "args": _grpc_args(deployment),
        "env": _user_env(user_deployments, deployment, release, namespace, image),
        "envFrom": env_from,
        "resources": deployment.get("resources") or {},
        "readinessProbe": {
            "exec": {"command": ["dagster", "api", "grpc-health-check", "-p", port]},
            "periodSeconds": 20,
            "timeoutSeconds": 10,
            "successThreshold": 1,
            "failureThreshold": 15,
        },  # fmt: skip
    }
    if deployment.get("volumeMounts"):
        container["volumeMounts"] = deployment["volumeMounts"]
    pod: dict[str, Any] = {
        "securityContext": deployment.get("podSecurityContext") or {},
        "containers": [container],
    }
    if deployment.get("volumes"):
        pod["volumes"] = deployment["volumes"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{fullname}-{deployment['name']}"},
        "spec": {"replicas": 1, "template": {"spec": pod}},
    }
