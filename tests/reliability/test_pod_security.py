"""Pod Security "restricted" for every pod dagma controls: M of M, and read-only root filesystems.

The pods: charts/mlflow's server, migration Job and `helm test` Pod for each option;
charts/dagma's `helm test` Pod; Dagster's webserver, daemon and the dagma user-code deployment
as the Dagster chart receives them (podSecurityContext/securityContext/volumes from the
effective values); and the run pod dagster-k8s builds for a materialization — for the chart
defaults and each file under values/. The one pod that cannot comply, the Dagster chart's
bundled PostgreSQL, is explained in docs/reliability.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import container_spec
from support.helm import render
from support.mlflow_options import OPTIONS
from support.pss import restricted_violations
from support.run_pod import USER_CODE, build_run_job
from support.umbrella import VALUES_FILES, effective_values, render_umbrella, values_paths

VALUE_SETS = {"defaults": [], **{name: [name] for name in VALUES_FILES}}
WORKLOADS = {"Deployment", "Job", "Pod", "StatefulSet", "DaemonSet"}
# Where each of Dagster's own components keeps its pod settings in the Dagster chart's values.
DAGSTER_COMPONENTS = ("dagsterWebserver", "dagsterDaemon")


def _chart_pods() -> dict[str, dict[str, Any]]:
    """Every pod spec the two charts render, by a readable name."""
    pods = {}
    for option, values in OPTIONS.items():
        for doc in render("mlflow", values).all():
            if doc["kind"] in WORKLOADS:
                pods[f"mlflow[{option}] {doc['kind']}/{doc['metadata']['name']}"] = (
                    container_spec.pod_spec(doc)
                )
    for value_set, files in VALUE_SETS.items():
        for doc in render_umbrella(values_files=values_paths(files)).all():
            if doc["kind"] in WORKLOADS:
                name = f"dagma[{value_set}] {doc['kind']}/{doc['metadata']['name']}"
                pods[name] = container_spec.pod_spec(doc)
    return pods


def _dagster_pods() -> dict[str, dict[str, Any]]:
    """Dagster's pods as far as its values decide their security (its templates are absent)."""
    pods = {}
    for value_set, files in VALUE_SETS.items():
        dagster = effective_values(values_files=values_paths(files))["dagster"]
        components = {name: dagster[name] for name in DAGSTER_COMPONENTS}
        for deployment in dagster["dagster-user-deployments"]["deployments"]:
            components[f"user deployment {deployment['name']}"] = deployment
        for name, values in components.items():
            pods[f"dagster[{value_set}] {name}"] = {
                "securityContext": values.get("podSecurityContext") or {},
                "containers": [
                    {
                        "name": name,
                        "securityContext": values.get("securityContext") or {},
                        "volumeMounts": values.get("volumeMounts") or [],
                    }
                ],
                "volumes": values.get("volumes") or [],
            }
    return pods


@pytest.fixture(scope="module")
def pods(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    found = {**_chart_pods(), **_dagster_pods()}
    for value_set, files in VALUE_SETS.items():
        job = build_run_job(values_paths(files), Path(tmp_path_factory.mktemp("run")))
        found[f"run pod[{value_set}]"] = job["spec"]["template"]["spec"]
    containers = sum(
        len(spec.get("containers", [])) + len(spec.get("initContainers", []))
        for spec in found.values()
    )
    print(f"pod security: {len(found)} pod templates, {containers} containers")
    return found


def test_every_pod_we_control_is_restricted(pods: dict[str, dict[str, Any]]) -> None:
    failing = {
        name: problems for name, spec in pods.items() if (problems := restricted_violations(spec))
    }
    compliant = len(pods) - len(failing)
    print(f"restricted: {compliant} of {len(pods)} pod templates")
    assert not failing, failing


def test_the_census_covers_every_kind_of_pod(pods: dict[str, dict[str, Any]]) -> None:
    names = " ".join(pods)
    for expected in (
        "Deployment/dagma-mlflow",
        "Job/dagma-mlflow-migrate-1",
        "test-log-artifact",
        "test-mlflow-health",
        "dagsterWebserver",
        "dagsterDaemon",
        USER_CODE,
        "run pod",
    ):
        assert expected in names, expected


def test_every_container_has_a_read_only_root_and_writable_volumes_only(
    pods: dict[str, dict[str, Any]],
) -> None:
    problems = []
    for name, spec in pods.items():
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
            where = f"{name} {container['name']}"
            if (container.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: root filesystem writable")
            for mount in container.get("volumeMounts", []):
                kind = set(volumes.get(mount["name"], {"missing": 1})) - {"name"}
                if not mount.get("readOnly") and not kind <= {"emptyDir", "persistentVolumeClaim"}:
                    problems.append(f"{where}: writable mount {mount['mountPath']} on {kind}")
    assert not problems, problems


def test_dagster_containers_can_write_where_dagster_writes(pods: dict[str, dict[str, Any]]) -> None:
    # HOME/DAGSTER_HOME (telemetry, logs, compute logs) and /tmp, on emptyDirs.
    for name, spec in pods.items():
        if not name.startswith(("dagster[", "run pod[")):
            continue
        mounts = {m["mountPath"] for c in spec["containers"] for m in c.get("volumeMounts", [])}
        assert {"/opt/dagster/dagster_home", "/tmp"} <= mounts, (name, mounts)
