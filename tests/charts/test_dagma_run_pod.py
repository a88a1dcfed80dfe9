"""The run pod of `train_model_stub`, built by dagster-k8s's own code from our values.

The chain under test: dagma values -> the Dagster chart's K8sRunLauncher config
and the user deployment's container context (what the chart hands `dagster api
grpc`) -> the real code location's job origin -> K8sRunLauncher's container
context merge -> `construct_dagster_k8s_job`, the function the launcher calls.
Only where the launcher reads its kube credentials is changed (a local kubeconfig
instead of the in-cluster one); nothing talks to a cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest
from support.dagster_chart import user_deployment
from support.helm import validate_strict
from support.network_policy import selects
from support.pss import restricted_violations
from support.run_pod import USER_CODE, build_run_job
from support.umbrella import (
    NAMESPACE,
    RELEASE,
    VALUES_FILES,
    effective_values,
    render_umbrella,
    values_paths,
)

VALUE_SETS = {"defaults": [], **{name: [name] for name in VALUES_FILES}}


class RunCase(NamedTuple):
    values: dict  # the effective values of the value set
    job: dict  # the run Job dagster-k8s builds from them


@pytest.fixture(scope="module", params=list(VALUE_SETS))
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> RunCase:
    files = values_paths(VALUE_SETS[request.param])
    return RunCase(
        effective_values(values_files=files), build_run_job(files, tmp_path_factory.mktemp("run"))
    )


def _container(job: dict) -> dict:
    [container] = job["spec"]["template"]["spec"]["containers"]
    return container


def test_run_pod_gets_the_mlflow_configmap_and_secret(case: RunCase) -> None:
    tracking = case.values["tracking"]
    env_from = _container(case.job)["envFrom"]
    config_maps = [ref["configMapRef"]["name"] for ref in env_from if "configMapRef" in ref]
    secrets = [ref["secretRef"]["name"] for ref in env_from if "secretRef" in ref]
    assert tracking["configMapName"] in config_maps
    assert secrets == [tracking["existingSecret"] or tracking["secretName"]]


def test_run_pod_runs_the_user_code_image_with_dagster_execute_run(case: RunCase) -> None:
    image = user_deployment(case.values["dagster"], USER_CODE)["image"]
    container = _container(case.job)
    assert container["image"] == f"{image['repository']}:{image['tag']}"
    assert container["args"][:3] == ["dagster", "api", "execute_run"]


def test_run_pod_is_in_the_release_namespace_with_its_pull_policy(case: RunCase) -> None:
    assert case.job["metadata"]["namespace"] == NAMESPACE
    assert _container(case.job)["imagePullPolicy"] == "IfNotPresent"


def test_run_pod_meets_pod_security_restricted(case: RunCase) -> None:
    assert restricted_violations(case.job["spec"]["template"]["spec"]) == []


def test_run_pod_root_filesystem_is_read_only_with_writable_home_and_tmp(case: RunCase) -> None:
    spec = case.job["spec"]["template"]["spec"]
    container = _container(case.job)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    # HOME (MLflow's client files), DAGSTER_HOME (logs, compute logs) and temporary files.
    for path in ("/home/dagma", "/opt/dagster/dagster_home", "/tmp"):
        assert "emptyDir" in mounts[path], (path, mounts.get(path))


def test_run_job_is_a_valid_kubernetes_job(case: RunCase) -> None:
    validate_strict([case.job])


def test_run_pod_reads_the_dagster_database_password_from_the_chart_secret(case: RunCase) -> None:
    env = {e["name"]: e for e in _container(case.job)["env"]}
    secret = env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert secret == {
        "name": case.values["dagster"]["global"]["postgresqlSecretName"],
        "key": "postgresql-password",
    }


def test_mlflow_network_policy_admits_the_run_pods(tmp_path: Path) -> None:
    # Run pods carry dagster-k8s's labels (app.kubernetes.io/instance=dagster), not the
    # release's: production's NetworkPolicy must still let them reach MLflow.
    files = values_paths(["production.yaml"])
    policy = render_umbrella(values_files=files).one("NetworkPolicy", "dagma-mlflow")
    job = build_run_job(files, tmp_path)
    labels = job["spec"]["template"]["metadata"]["labels"]
    peers = [peer for rule in policy["spec"]["ingress"] for peer in rule.get("from", [])]
    same_namespace = [p for p in peers if "podSelector" in p and "namespaceSelector" not in p]
    assert any(selects(p["podSelector"], labels) for p in same_namespace), (labels, peers)


def test_mlflow_network_policy_admits_the_code_location_and_the_helm_test() -> None:
    rendered = render_umbrella(values_files=values_paths(["production.yaml"]))
    peers = [
        p
        for rule in rendered.one("NetworkPolicy", "dagma-mlflow")["spec"]["ingress"]
        for p in rule["from"]
    ]
    selectors = [p["podSelector"] for p in peers if "namespaceSelector" not in p]
    # The user-deployments chart labels its pods with the release (selector labels).
    code_location = {
        "app.kubernetes.io/name": "dagster-user-deployments",
        "app.kubernetes.io/instance": RELEASE,
        "component": "user-deployments",
        "deployment": USER_CODE,
    }
    helm_test = rendered.one("Pod", f"{RELEASE}-test-mlflow-health")["metadata"]["labels"]
    for labels in (code_location, helm_test):
        assert any(selects(selector, labels) for selector in selectors), labels


def test_mlflow_network_policy_check_is_not_vacuous() -> None:
    policy = render_umbrella(values_files=values_paths(["production.yaml"])).one(
        "NetworkPolicy", "dagma-mlflow"
    )
    peers = [peer for rule in policy["spec"]["ingress"] for peer in rule.get("from", [])]
    stranger = {"app.kubernetes.io/instance": "dagster", "app.kubernetes.io/name": "dagster"}
    assert not any(selects(p["podSelector"], stranger) for p in peers if "podSelector" in p)
