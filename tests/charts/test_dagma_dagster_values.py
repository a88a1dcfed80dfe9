"""The `dagster:` block, as the official Dagster chart would receive it.

Helm coalesces our values with the chart's official defaults (a values-only
stand-in built from ../shared/reference at test time), and the result is
validated against the chart's own schemas: what an install would check.
"""

from __future__ import annotations

import helm_python
import pytest
from support.dagster_chart import (
    DAGSTER_REFERENCE,
    USER_DEPLOYMENTS_REFERENCE,
    schema_errors,
    user_deployment,
)
from support.helm import CHARTS
from support.pss import pod_from_values, restricted_violations
from support.umbrella import VALUES_FILES, effective_values, values_paths

VALUE_SETS = {"defaults": [], **{name: [name] for name in VALUES_FILES}}
USER_CODE = "dagma-user-code"


@pytest.fixture(scope="module", params=list(VALUE_SETS))
def effective(request: pytest.FixtureRequest) -> dict:
    """All values an install with this value set computes."""
    return effective_values(values_files=values_paths(VALUE_SETS[request.param]))


def test_dagster_values_validate_against_the_official_schema(effective: dict) -> None:
    assert schema_errors(effective["dagster"], DAGSTER_REFERENCE / "values.schema.json") == []


def test_user_deployment_values_validate_against_the_official_subchart_schema(
    effective: dict,
) -> None:
    subchart = effective["dagster"]["dagster-user-deployments"]
    schema = USER_DEPLOYMENTS_REFERENCE / "values.schema.json"
    assert schema_errors(subchart, schema) == []


@pytest.mark.parametrize(
    ("bad", "where"),
    [
        ({"runLauncher": {"type": "SomeLauncher"}}, "runLauncher.type"),
        (
            {"dagsterWebserver": {"podSecurityContext": {"runAsUser": "root"}}},
            "dagsterWebserver.podSecurityContext.runAsUser",
        ),
        (
            {"dagsterDaemon": {"securityContext": {"capabilities": {"drop": "ALL"}}}},
            "dagsterDaemon.securityContext.capabilities.drop",
        ),
    ],
    ids=["unknown-launcher", "k8s-type-via-remote-ref", "k8s-nested-type"],
)
def test_schema_check_rejects_what_the_chart_would(bad: dict, where: str) -> None:
    # Proves the validator is not vacuous, including the remote Kubernetes $refs.
    values = effective_values({"dagster": bad})
    errors = schema_errors(values["dagster"], DAGSTER_REFERENCE / "values.schema.json")
    assert any(e.startswith(where) for e in errors), errors


def test_user_code_deployment_serves_dagma_definitions_with_the_mlflow_env(
    effective: dict,
) -> None:
    deployment = user_deployment(effective["dagster"], USER_CODE)
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "dagma.definitions"]
    assert deployment["port"] == 3030
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert deployment["image"]["repository"].endswith(("dagma-user-code", "dagma/user-code"))
    tracking = effective["tracking"]
    secret = tracking["existingSecret"] or tracking["secretName"]
    assert [ref["name"] for ref in deployment["envConfigMaps"]] == [tracking["configMapName"]]
    assert [ref["name"] for ref in deployment["envSecrets"]] == [secret]


def test_user_code_image_tag_is_the_chart_app_version(effective: dict) -> None:
    with helm_python.Chart.load(CHARTS / "dagma") as chart:
        app_version = chart.metadata["appVersion"]
    assert user_deployment(effective["dagster"], USER_CODE)["image"]["tag"] == app_version


def test_runs_are_launched_as_kubernetes_jobs(effective: dict) -> None:
    assert effective["dagster"]["runLauncher"]["type"] == "K8sRunLauncher"


def test_local_clusters_never_pull_the_loaded_images() -> None:
    dagster = effective_values(values_files=values_paths(["local.yaml"]))["dagster"]
    launcher = dagster["runLauncher"]["config"]["k8sRunLauncher"]
    assert launcher["imagePullPolicy"] == "IfNotPresent"
    for deployment in dagster["dagster-user-deployments"]["deployments"]:
        assert deployment["image"]["pullPolicy"] == "IfNotPresent"


def test_dagster_storage_defaults_to_the_bundled_official_postgres() -> None:
    dagster = effective_values()["dagster"]
    postgresql = dagster["postgresql"]
    assert postgresql["enabled"] is True
    assert (postgresql["image"]["registry"], postgresql["image"]["repository"]) == (
        "docker.io",
        "library/postgres",
    )


def test_production_uses_an_external_postgres_from_an_existing_secret() -> None:
    dagster = effective_values(values_files=values_paths(["production.yaml"]))["dagster"]
    assert dagster["postgresql"]["enabled"] is False
    assert dagster["postgresql"]["postgresqlHost"]
    assert dagster["generatePostgresqlPasswordSecret"] is False
    assert dagster["global"]["postgresqlSecretName"] == "dagster-postgresql"


def test_every_dagster_pod_meets_pod_security_restricted(effective: dict) -> None:
    dagster = effective["dagster"]
    pods = {
        name: pod_from_values(
            dagster[name]["podSecurityContext"],
            dagster[name]["securityContext"],
            dagster[name].get("volumes"),
        )
        for name in ("dagsterWebserver", "dagsterDaemon")
    }
    for deployment in dagster["dagster-user-deployments"]["deployments"]:
        pods[deployment["name"]] = pod_from_values(
            deployment["podSecurityContext"],
            deployment["securityContext"],
            deployment.get("volumes"),
        )
    violations = {name: restricted_violations(pod) for name, pod in pods.items()}
    assert violations == {name: [] for name in pods}


def test_pod_security_check_is_not_vacuous() -> None:
    assert restricted_violations(pod_from_values({}, {})) == [
        "main: allowPrivilegeEscalation is not false",
        "main: capabilities do not drop ALL",
        "main: runAsNonRoot is not true",
        "main: seccompProfile is unset",
    ]


def test_upstream_images_run_with_a_writable_dagster_home(effective: dict) -> None:
    # As UID 10001 the upstream image's root-owned DAGSTER_HOME is read-only, and
    # Dagster writes telemetry there: an emptyDir is mounted at DAGSTER_HOME.
    dagster = effective["dagster"]
    home = dagster["global"]["dagsterHome"]
    for name in ("dagsterWebserver", "dagsterDaemon"):
        volumes = {v["name"]: v for v in dagster[name]["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in dagster[name]["volumeMounts"]}
        assert "emptyDir" in volumes[mounts[home]], name
        assert {"name": "HOME", "value": home} in dagster[name]["env"], name


def test_webserver_listens_on_an_unprivileged_port(effective: dict) -> None:
    webserver = effective["dagster"]["dagsterWebserver"]
    assert webserver["service"]["port"] >= 1024
    assert webserver["readinessProbe"]["httpGet"]["port"] == "http"


TRAINING_CODE = "dagma-training"
# What the training code location shares with dagma's own: the MLflow env passed on to its
# run pods (and through them to step pods), the restricted contexts, the writable volumes.
SHARED_WITH_USER_CODE = ("port", "includeConfigInLaunchedRuns", "envConfigMaps", "envSecrets",
                         "volumes", "volumeMounts", "podSecurityContext", "securityContext",
                         "resources")  # fmt: skip


@pytest.mark.parametrize(("value_set", "locations"), [
    ("defaults", [USER_CODE]),
    ("local.yaml", [USER_CODE, TRAINING_CODE]),
    ("production.yaml", [USER_CODE]),
])  # fmt: skip
def test_the_training_location_is_on_for_local_clusters_only(
    value_set: str, locations: list[str]
) -> None:
    dagster = effective_values(values_files=values_paths(VALUE_SETS[value_set]))["dagster"]
    deployments = dagster["dagster-user-deployments"]["deployments"]
    assert [d["name"] for d in deployments] == locations


def test_the_training_location_serves_its_module_from_its_image_with_the_mlflow_env() -> None:
    dagster = effective_values(values_files=values_paths(["local.yaml"]))["dagster"]
    training = user_deployment(dagster, TRAINING_CODE)
    user_code = user_deployment(dagster, USER_CODE)
    assert training["dagsterApiGrpcArgs"] == ["-m", "dagma.examples.training.definitions"]
    assert training["image"] == {**user_code["image"], "repository": "dagma-training"}
    assert {key: training[key] for key in SHARED_WITH_USER_CODE} == {
        key: user_code[key] for key in SHARED_WITH_USER_CODE
    }
