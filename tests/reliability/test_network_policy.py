"""values/production.yaml: only the release's pods and its run pods reach MLflow.

The rendered NetworkPolicies are evaluated (support.network_policy) for the pods that exist in
a production install: Dagster's webserver, daemon and code location (labels of the Dagster
chart), the run pod dagster-k8s builds from these values, both `helm test` Pods, and pods that
must stay out — another app in the namespace, a run pod of another namespace wearing the
client label, any other namespace. The ingress controller's namespace is admitted on purpose
(the MLflow UI and API behind basic auth). PostgreSQL is external in production; see
docs/reliability.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.helm import Rendered
from support.network_policy import PodRef, admits
from support.run_pod import USER_CODE, build_run_job
from support.umbrella import NAMESPACE, RELEASE, effective_values, render_umbrella, values_paths

PRODUCTION = values_paths(["production.yaml"])
HERE = {"kubernetes.io/metadata.name": NAMESPACE}


def _in_release_namespace(labels: dict[str, str]) -> PodRef:
    return PodRef(labels, NAMESPACE, HERE)


def _dagster(component: str) -> dict[str, str]:
    # The Dagster chart's selector labels (templates/helpers/_helpers.tpl, dagster.selectorLabels).
    return {
        "app.kubernetes.io/name": "dagster",
        "app.kubernetes.io/instance": RELEASE,
        "component": component,
    }


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    return render_umbrella(values_files=PRODUCTION)


@pytest.fixture(scope="module")
def run_pod_labels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    job = build_run_job(PRODUCTION, Path(tmp_path_factory.mktemp("run")))
    return job["spec"]["template"]["metadata"]["labels"]


def _server(rendered: Rendered) -> PodRef:
    labels = rendered.one("Deployment", "dagma-mlflow")["spec"]["template"]["metadata"]["labels"]
    return _in_release_namespace(labels)


def _sources(rendered: Rendered, run_pod_labels: dict[str, str]) -> dict[str, tuple[PodRef, bool]]:
    """Who tries to connect, and whether they should get in."""
    code_location = {
        "app.kubernetes.io/name": "dagster-user-deployments",
        "app.kubernetes.io/instance": RELEASE,
        "component": "user-deployments",
        "deployment": USER_CODE,
    }
    tests = {doc["metadata"]["name"]: doc["metadata"]["labels"] for doc in rendered.tests}
    return {
        "dagster webserver": (_in_release_namespace(_dagster("dagster-webserver")), True),
        "dagster daemon": (_in_release_namespace(_dagster("dagster-daemon")), True),
        "code location": (_in_release_namespace(code_location), True),
        "run pod": (_in_release_namespace(run_pod_labels), True),
        **{
            f"helm test {name}": (_in_release_namespace(labels), True)
            for name, labels in tests.items()
        },
        "ingress controller": (
            PodRef(
                {"app.kubernetes.io/name": "ingress-nginx"},
                "ingress-nginx",
                {"kubernetes.io/metadata.name": "ingress-nginx"},
            ),
            True,
        ),
        "another app in the namespace": (_in_release_namespace({"app": "other"}), False),
        "another Dagster's run pod": (
            _in_release_namespace({"app.kubernetes.io/instance": "dagster"}),
            False,
        ),
        "a labelled pod in another namespace": (
            PodRef(run_pod_labels, "other", {"kubernetes.io/metadata.name": "other"}),
            False,
        ),
        "a release-named pod in another namespace": (
            PodRef(
                _dagster("dagster-webserver"), "other", {"kubernetes.io/metadata.name": "other"}
            ),
            False,
        ),
    }


def test_only_the_release_and_its_run_pods_reach_mlflow(
    rendered: Rendered, run_pod_labels: dict[str, str]
) -> None:
    policies = rendered.of_kind("NetworkPolicy")
    server = _server(rendered)
    wrong = {
        name: f"admitted={admitted}, expected {expected}"
        for name, (source, expected) in _sources(rendered, run_pod_labels).items()
        if (admitted := admits(policies, server, source, "http")) != expected
    }
    sources = _sources(rendered, run_pod_labels)
    print(f"network policy: {len(sources) - len(wrong)} of {len(sources)} sources as intended")
    assert not wrong, wrong


def test_mlflow_admits_nothing_on_other_ports(
    rendered: Rendered, run_pod_labels: dict[str, str]
) -> None:
    policies = rendered.of_kind("NetworkPolicy")
    run_pod = _in_release_namespace(run_pod_labels)
    assert not admits(policies, _server(rendered), run_pod, 9000)


def test_pods_that_serve_nothing_admit_nobody(
    rendered: Rendered, run_pod_labels: dict[str, str]
) -> None:
    policies = rendered.of_kind("NetworkPolicy")
    release_pod = _in_release_namespace(_dagster("dagster-webserver"))
    targets = [rendered.one("Job")["spec"]["template"]["metadata"]["labels"]]
    targets += [doc["metadata"]["labels"] for doc in rendered.tests]
    for labels in targets:
        assert not admits(policies, _in_release_namespace(labels), release_pod, "http"), labels


def test_the_evaluation_is_not_vacuous(rendered: Rendered) -> None:
    # Without the policies everyone gets in; the stranger is kept out only by them.
    stranger = _in_release_namespace({"app": "other"})
    assert admits([], _server(rendered), stranger, "http")


def test_production_postgresql_is_external_and_encrypted() -> None:
    # No in-cluster PostgreSQL for a NetworkPolicy to guard: access is the database's firewall's.
    values = effective_values(values_files=PRODUCTION)
    assert values["dagster"]["postgresql"]["enabled"] is False
    assert values["dagster"]["postgresql"]["postgresqlParams"]["sslmode"] == "require"
    assert values["mlflow"]["backendStore"]["type"] == "postgresql"
