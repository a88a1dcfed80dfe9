"""The official Dagster chart, as far as tests without its templates can know it.

CI cannot download the Dagster chart, and its templates never enter this
repository. What we do have, as reference data (:mod:`support.reference_data`), are
its default values and its values schemas. This module:

- validates values against those schemas, resolving their remote Kubernetes
  ``$ref``s locally (from the schemas ``kubernetes-validate`` ships: no network);
- mirrors the two small value mappings that matter for run pods, the
  K8sRunLauncher config (``templates/helpers/instance/_run-launcher.tpl``) and the
  user deployment's container context (``charts/dagster-user-deployments/
  templates/helpers/_helpers.tpl``, ``dagsterUserDeployments.k8sContainerContext``),
  so dagster-k8s's own code can build the run Job from them;
- mirrors the instance's ``dagster.yaml`` (:func:`instance_config`) for the stand-in
  objects of :mod:`support.dagster_manifests`.

The chart's values-only stand-in, with which Helm coalesces dagma's ``dagster:`` block
with the chart's defaults, is assembled by :mod:`support.umbrella`.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from support.helm import ROOT
from support.reference_data import REFERENCE_DIR, reference_file

DAGSTER_REFERENCE = REFERENCE_DIR / "dagster-chart"
USER_DEPLOYMENTS_REFERENCE = DAGSTER_REFERENCE / "charts" / "dagster-user-deployments"
# Where the Dagster schemas point for Kubernetes types (resolved locally below).
YANNH_DEFINITIONS = "https://raw.githubusercontent.com/yannh/kubernetes-json-schema/master/v1.19.0/_definitions.json"
# The oldest Kubernetes schema kubernetes-validate ships, non-strict like yannh's.
LOCAL_KUBERNETES_SCHEMA = "v1.25.0-local"


def dagster_version_in_lock() -> str:
    """The ``dagster`` version uv.lock pins (the Dagster chart shares it)."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    versions = {p["version"] for p in lock["package"] if p["name"] == "dagster"}
    assert len(versions) == 1, f"uv.lock pins dagster {versions or 'nowhere'}"
    return versions.pop()


@cache
def _kubernetes_registry() -> Registry:
    """A registry answering the yannh URL with local Kubernetes definitions."""
    package = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    definitions = json.loads((package / LOCAL_KUBERNETES_SCHEMA / "_definitions.json").read_text())
    # yannh's file keeps types under /definitions; these keep them under /$defs and
    # refer to each other as #/$defs/...: serve both pointers from one document.
    document = {"definitions": definitions["$defs"], "$defs": definitions["$defs"]}
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    return Registry().with_resource(YANNH_DEFINITIONS, resource)


def schema_errors(values: Mapping[str, Any], schema_path: Path) -> list[str]:
    """Every violation of the (draft-07) schema at ``schema_path``, as readable lines.

    A schema from the reference data that is missing skips the test (fails in CI).
    """
    if schema_path.is_relative_to(REFERENCE_DIR):
        schema_path = reference_file(schema_path.relative_to(REFERENCE_DIR).as_posix())
    schema = json.loads(schema_path.read_text())
    validator = jsonschema.Draft7Validator(schema, registry=_kubernetes_registry())
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(values), key=lambda e: list(e.absolute_path))
    ]


# --- names the Dagster chart derives (templates/helpers/_helpers.tpl) ----------


def _truncate(name: str) -> str:
    return name[:63].rstrip("-")


def dagster_fullname(dagster: Mapping[str, Any], release: str, chart_name: str = "dagster") -> str:
    """``dagster.fullname``: the prefix of most object names of the chart."""
    global_values = dagster.get("global") or {}
    if global_values.get("fullnameOverride"):
        return _truncate(global_values["fullnameOverride"])
    name = global_values.get("nameOverride") or chart_name
    return _truncate(release if name in release else f"{release}-{name}")


def image_name(image: Mapping[str, Any], chart_version: str) -> str:
    """``dagster.dagsterImage.name``: an empty tag means the chart's version."""
    return f"{image['repository']}:{image.get('tag') or chart_version}"


def user_deployment(dagster: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The user-code deployment called ``name`` in (effective) Dagster values."""
    deployments = dagster["dagster-user-deployments"]["deployments"]
    found = [d for d in deployments if d.get("name") == name]
    assert len(found) == 1, f"expected one user deployment {name!r}, found {deployments}"
    return dict(found[0])


# --- the two mappings run pods depend on ----------------------------------------


def k8s_run_launcher_config(dagster: Mapping[str, Any], release: str, namespace: str) -> dict:
    """The K8sRunLauncher config the chart writes into the instance's dagster.yaml."""
    launcher = dagster["runLauncher"]["config"]["k8sRunLauncher"]
    global_values = dagster["global"]
    fullname = dagster_fullname(dagster, release)
    config: dict[str, Any] = {
        "load_incluster_config": launcher["loadInclusterConfig"],
        "job_namespace": launcher.get("jobNamespace") or namespace,
        "image_pull_policy": launcher["imagePullPolicy"],
        "service_account_name": global_values.get("serviceAccountName")
        or dagster["serviceAccount"].get("name")
        or fullname,
        "dagster_home": global_values["dagsterHome"],
        "instance_config_map": f"{fullname}-instance",
        "postgres_password_secret": global_values.get("postgresqlSecretName")
        or f"{fullname}-postgresql-secret",
    }
    optional = {
        "kubeconfig_file": launcher.get("kubeconfigFile"),
        "image_pull_secrets": dagster.get("imagePullSecrets"),
        "env_config_maps": [ref["name"] for ref in launcher.get("envConfigMaps") or []],
        "env_secrets": [ref["name"] for ref in launcher.get("envSecrets") or []],
        "env_vars": launcher.get("envVars"),
        "volume_mounts": launcher.get("volumeMounts"),
        "volumes": launcher.get("volumes"),
        "labels": launcher.get("labels"),
        "resources": launcher.get("resources"),
        "fail_pod_on_run_failure": True if launcher.get("failPodOnRunFailure") else None,
        "scheduler_name": launcher.get("schedulerName"),
        "security_context": launcher.get("securityContext"),
    }
    if "image" in launcher:
        optional["job_image"] = image_name(launcher["image"], "")
    config.update({key: value for key, value in optional.items() if value})
    run_k8s = launcher.get("runK8sConfig") or {}
    run_k8s_keys = {
        "containerConfig": "container_config",
        "podSpecConfig": "pod_spec_config",
        "podTemplateSpecMetadata": "pod_template_spec_metadata",
        "jobSpecConfig": "job_spec_config",
        "jobMetadata": "job_metadata",
    }
    run_k8s_config = {
        ours: run_k8s[theirs] for theirs, ours in run_k8s_keys.items() if run_k8s.get(theirs)
    }
    if run_k8s_config:
        config["run_k8s_config"] = run_k8s_config
    return config


def user_code_container_context(
    user_deployments: Mapping[str, Any], deployment: Mapping[str, Any], release: str, namespace: str
) -> dict[str, Any]:
    """The ``k8s`` container context the user-deployments chart hands ``dagster api grpc``.

    ``user_deployments`` are the effective values of that subchart (its own
    defaults coalesced with ``dagster.dagster-user-deployments`` and globals).
    """
    fullname = dagster_fullname(user_deployments, release, chart_name="dagster-user-deployments")
    global_values = user_deployments.get("global") or {}
    service_account = user_deployments.get("serviceAccount") or {}
    context: dict[str, Any] = {
        "image_pull_policy": deployment["image"]["pullPolicy"],
        "env_config_maps": [
            f"{fullname}-{deployment['name']}-user-env",
            *(ref["name"] for ref in deployment.get("envConfigMaps") or [] if "name" in ref),
        ],
        "namespace": namespace,
        "service_account_name": global_values.get("serviceAccountName")
        or service_account.get("name")
        or f"{fullname}-user-deployments",
    }
    optional = {
        "image_pull_secrets": user_deployments.get("imagePullSecrets"),
        "env_secrets": [ref["name"] for ref in deployment.get("envSecrets") or [] if "name" in ref],
        "volume_mounts": deployment.get("volumeMounts"),
        "volumes": deployment.get("volumes"),
        "labels": deployment.get("labels"),
        "resources": deployment.get("resources"),
        "scheduler_name": deployment.get("schedulerName"),
        # Only the list form of env reaches run pods (the map form is a ConfigMap).
        "env": deployment["env"] if isinstance(deployment.get("env"), list) else None,
    }
    context.update({key: value for key, value in optional.items() if value})
    pod_spec = {
        "containers": deployment.get("sidecarContainers"),
        "init_containers": deployment.get("initContainers"),
    }
    pod_spec = {key: value for key, value in pod_spec.items() if value}
    if pod_spec:
        context["run_k8s_config"] = {"pod_spec_config": pod_spec}
    return {"k8s": context}


# --- the instance's dagster.yaml (templates/configmap-instance.yaml) -------------

Values = Mapping[str, Any]


def unmirrored(what: str) -> NotImplementedError:
    """The error for a value the copies of the chart's templates here do not handle."""
    return NotImplementedError(f"{what} is not mirrored by the tests' copy of the chart")


def postgresql_host(dagster: Values, release: str) -> str:
    """``dagster.postgresql.host``: the bundled database's Service, or ``postgresqlHost``."""
    postgresql = dagster["postgresql"]
    if postgresql.get("postgresqlHost") or not postgresql["enabled"]:
        return str(postgresql["postgresqlHost"])
    return f"{release}-{postgresql.get('nameOverride') or 'postgresql'}"[:63].rstrip("-")


def postgresql_secret_name(dagster: Values, release: str) -> str:
    """``dagster.postgresql.secretName``."""
    return dagster["global"].get("postgresqlSecretName") or (
        f"{dagster_fullname(dagster, release)}-postgresql-secret"
    )


def _storage(module: str, cls: str, dagster: Values, release: str) -> dict[str, Any]:
    """One storage section with ``dagsterYaml.postgresql.config``."""
    if dagster["global"].get("postgresqlAuthWifEnabled"):
        raise unmirrored("global.postgresqlAuthWifEnabled")
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
    return {"module": module, "class": cls, "config": {"postgres_db": config}}


def _run_coordinator(dagster: Values) -> dict[str, Any]:
    """``dagsterYaml.runCoordinator.queued`` (concurrency off, as charts/dagma has it)."""
    coordinator = dagster["dagsterDaemon"]["runCoordinator"]
    if coordinator["type"] != "QueuedRunCoordinator":
        raise unmirrored(f"runCoordinator.type {coordinator['type']!r}")
    queued = coordinator["config"]["queuedRunCoordinator"]
    if queued.get("blockOpConcurrencyLimitedRuns"):
        raise unmirrored("queuedRunCoordinator.blockOpConcurrencyLimitedRuns")
    result: dict[str, Any] = {"module": "dagster.core.run_coordinator",
                              "class": "QueuedRunCoordinator"}  # fmt: skip
    if not any(value not in (None, "", 0, False, [], {}) for value in queued.values()):
        return result
    limit = queued.get("maxConcurrentRuns")
    config: dict[str, Any] = {"max_concurrent_runs": -1 if limit is None else limit}
    for key, ours in (("tagConcurrencyLimits", "tag_concurrency_limits"),
                      ("dequeueIntervalSeconds", "dequeue_interval_seconds"),
                      ("dequeueUseThreads", "dequeue_use_threads"),
                      ("dequeueNumWorkers", "dequeue_num_workers")):  # fmt: skip
        if queued.get(key):
            config[ours] = queued[key]
    return result | {"config": config}


def _daemon_sections(dagster: Values) -> dict[str, Any]:
    """run_monitoring, run_retries, sensors and schedules, as the daemon values ask."""
    daemon = dagster["dagsterDaemon"]
    sections: dict[str, Any] = {}
    monitoring = daemon["runMonitoring"]
    if monitoring["enabled"]:
        optional = ("cancelTimeoutSeconds", "maxResumeRunAttempts")
        sections["run_monitoring"] = {
            "enabled": True,
            "start_timeout_seconds": monitoring["startTimeoutSeconds"],
            **{_snake(key): monitoring[key] for key in optional
               if monitoring.get(key) is not None},
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
            sections[key] = {"use_threads": True} | {
                _snake(name): threads[name]
                for name in ("numWorkers", "numSubmitWorkers") if threads.get(name)
            }  # fmt: skip
    return sections


def _snake(key: str) -> str:
    """``maxResumeRunAttempts`` -> ``max_resume_run_attempts``."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def instance_config(dagster: Values, release: str, namespace: str) -> dict[str, Any]:
    """The ``dagster.yaml`` of the ``<fullname>-instance`` ConfigMap.

    The chart's ``configmap-instance.yaml`` with ``helpers/instance/_postgresql.tpl``,
    ``_scheduler.tpl``, ``_run-coordinator.tpl``, ``_compute-log-manager.tpl`` and
    ``_run-launcher.tpl``, for the values charts/dagma and the chart's defaults set.
    """
    not_mirrored = {
        "concurrency.enabled": (dagster.get("concurrency") or {}).get("enabled"),
        "defsStateStorage": dagster.get("defsStateStorage"),
        "pythonLogs": dagster.get("pythonLogs"),
        "retention.enabled": (dagster.get("retention") or {}).get("enabled"),
        "scheduler.config": (dagster["scheduler"].get("config") or {}).get("daemonScheduler"),
        "dagsterDaemon.enabled=false": not dagster["dagsterDaemon"]["enabled"],
    }
    for key, value in not_mirrored.items():
        if value:
            raise unmirrored(key)
    for key, kind in (("scheduler", "DagsterDaemonScheduler"), ("runLauncher", "K8sRunLauncher"),
                      ("computeLogManager", "NoOpComputeLogManager")):  # fmt: skip
        if dagster[key]["type"] != kind:
            raise unmirrored(f"{key}.type {dagster[key]['type']!r}")
    config: dict[str, Any] = {
        "scheduler": {"module": "dagster.core.scheduler", "class": "DagsterDaemonScheduler"},
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
    if dagster["dagsterDaemon"]["runCoordinator"]["enabled"]:
        config["run_coordinator"] = _run_coordinator(dagster)
    config["compute_logs"] = {"module": "dagster.core.storage.noop_compute_log_manager",
                              "class": "NoOpComputeLogManager"}  # fmt: skip
    config.update(_daemon_sections(dagster))
    config["telemetry"] = {"enabled": dagster["telemetry"]["enabled"]}
    config.update(dagster.get("additionalInstanceConfig") or {})
    return config
