"""The official Dagster chart, as far as tests without its templates can know it.

CI cannot download the Dagster chart, and its templates never enter this
repository. What we do have, as reference data (:mod:`support.reference_data`), are
its default values and its values schemas. This module:

- validates values against those schemas, resolving their remote Kubernetes
  ``$ref``s locally (from the schemas ``kubernetes-validate`` ships: no network);
- builds a *values-only stand-in* of the chart in a temporary directory (the
  official ``values.yaml`` files, no templates), so Helm itself coalesces
  dagma's ``dagster:`` block with the chart's defaults exactly as an install would;
- mirrors the two small value mappings that matter for run pods, the
  K8sRunLauncher config (``templates/helpers/instance/_run-launcher.tpl``) and the
  user deployment's container context (``charts/dagster-user-deployments/
  templates/helpers/_helpers.tpl``, ``dagsterUserDeployments.k8sContainerContext``),
  so dagster-k8s's own code can build the run Job from them.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
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


def write_values_stand_in(charts_dir: Path, version: str) -> Path:
    """Write the Dagster chart's values (no templates) as ``charts_dir/dagster``.

    Its ``Chart.yaml`` declares the user-deployments subchart like the real one
    (present, with its official values), so Helm coalesces both levels.
    """
    values = reference_file("dagster-chart/values.yaml")
    sub_values = reference_file("dagster-chart/charts/dagster-user-deployments/values.yaml")
    chart = charts_dir / "dagster"
    subchart = chart / "charts" / "dagster-user-deployments"
    subchart.mkdir(parents=True)
    shutil.copyfile(values, chart / "values.yaml")
    shutil.copyfile(sub_values, subchart / "values.yaml")
    metadata = {
        "apiVersion": "v2",
        "name": "dagster",
        "version": version,
        "description": "values-only stand-in of the official Dagster chart (tests only)",
        "dependencies": [
            {
                "name": "dagster-user-deployments",
                "version": "0.0.1-dev",
                "condition": "dagster-user-deployments.enableSubchart",
            }
        ],
    }
    (chart / "Chart.yaml").write_text(yaml.safe_dump(metadata))
    sub_metadata = {"apiVersion": "v2", "name": "dagster-user-deployments", "version": "0.0.1-dev"}
    (subchart / "Chart.yaml").write_text(yaml.safe_dump(sub_metadata))
    return chart


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
