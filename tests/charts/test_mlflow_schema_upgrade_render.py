"""charts/mlflow's schema-upgrade hook as rendered: when it exists, what it may do, how it runs.

The hook (templates/schema-upgrade-hook.yaml) is a pre-upgrade Job that stops the servers
before a migration; helm_python renders an upgrade with ``revision`` > 1. What it does against
a real database is in test_mlflow_schema_upgrade_hook.py; the Kubernetes API part (scaling the
servers to 0) is proved on the cluster only.
"""

from __future__ import annotations

from typing import Any

import pytest
from support import container_spec
from support.helm import Rendered, render, validate_strict
from support.mlflow_options import AUTH, OPTIONS, POSTGRESQL, S3
from support.pss import restricted_violations

ROLLING = {**POSTGRESQL, **S3}  # no volume: the Deployment rolls, so the hook is needed
HOOK = "dagma-mlflow-schema-upgrade"
SETUP_KINDS = ("ConfigMap", "ServiceAccount", "Role", "RoleBinding")


def _hooks(rendered: Rendered) -> list[dict[str, Any]]:
    return [
        doc
        for doc in rendered.manifests
        if "helm.sh/hook" in doc["metadata"].get("annotations", {})
    ]


@pytest.fixture(scope="module")
def upgrade() -> Rendered:
    return render("mlflow", ROLLING, revision=2)


def test_upgrade_creates_the_hooks_setup_before_its_job(upgrade: Rendered):
    hooks = {doc["kind"]: doc["metadata"] for doc in _hooks(upgrade)}
    assert sorted(hooks) == sorted([*SETUP_KINDS, "Job"])
    assert {meta["name"] for meta in hooks.values()} == {HOOK}
    job = hooks["Job"]["annotations"]
    assert job["helm.sh/hook"] == "pre-upgrade"
    # Kept after success for its logs; replaced by the next upgrade's.
    assert job["helm.sh/hook-delete-policy"] == "before-hook-creation"
    for kind in SETUP_KINDS:
        setup = hooks[kind]["annotations"]
        assert setup["helm.sh/hook"] == "pre-upgrade"
        assert int(setup["helm.sh/hook-weight"]) < int(job["helm.sh/hook-weight"]), kind
        assert setup["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"


def test_hook_role_scales_only_the_server_deployment_and_lists_pods(upgrade: Rendered):
    role = upgrade.one("Role", HOOK)
    deployment = upgrade.one("Deployment")["metadata"]["name"]
    assert role["rules"] == [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments/scale"],
            "resourceNames": [deployment],
            "verbs": ["get", "patch"],
        },
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    ]
    binding = upgrade.one("RoleBinding", HOOK)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": HOOK,
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": HOOK, "namespace": "dagma"}]
    env = {e["name"]: e for e in _hook_container(upgrade)["env"]}
    assert env["SERVER_DEPLOYMENT"]["value"] == deployment
    assert env["POD_NAMESPACE"]["value"] == "dagma"


def _hook_container(rendered: Rendered) -> dict[str, Any]:
    return container_spec.container(rendered.one("Job", HOOK), "stop-writers-and-migrate")


def test_only_the_hook_pod_gets_an_api_token_and_it_runs_restricted_like_the_migration(
    upgrade: Rendered,
):
    hook_pod = container_spec.pod_spec(upgrade.one("Job", HOOK))
    assert hook_pod["serviceAccountName"] == HOOK
    assert hook_pod["automountServiceAccountToken"] is True
    assert upgrade.one("ServiceAccount", HOOK)["automountServiceAccountToken"] is False
    others = [doc for doc in upgrade.all() if doc["kind"] in {"Deployment", "Job", "Pod"}]
    tokens = {
        doc["metadata"]["name"]
        for doc in others
        if container_spec.pod_spec(doc).get("automountServiceAccountToken") is not False
    }
    assert tokens == {HOOK}
    migrate = upgrade.one("Job", "dagma-mlflow-migrate-2")
    assert hook_pod["securityContext"] == container_spec.pod_spec(migrate)["securityContext"]
    migration_step = container_spec.containers(migrate)[0]
    assert _hook_container(upgrade)["securityContext"] == migration_step["securityContext"]


def test_hook_runs_the_new_image_with_the_new_scripts(upgrade: Rendered):
    # The release's scripts ConfigMap still holds the old chart's files during pre-upgrade.
    server = container_spec.container(upgrade.one("Deployment"), "mlflow")
    hook = _hook_container(upgrade)
    assert hook["image"] == server["image"]
    assert hook["command"] == ["python", "/opt/mlflow-chart/stop_writers_and_migrate.py"]
    volumes = {v["name"]: v for v in container_spec.pod_spec(upgrade.one("Job", HOOK))["volumes"]}
    assert volumes["scripts"]["configMap"]["name"] == HOOK
    scripts = upgrade.one("ConfigMap", "dagma-mlflow-scripts")["data"]
    assert upgrade.one("ConfigMap", HOOK)["data"] == scripts
    assert {"stop_writers_and_migrate.py", "migrate.py", "wait_for_schema.py"} <= set(scripts)


def test_hook_reads_the_same_databases_as_the_migration_job():
    rendered = render("mlflow", {**ROLLING, **AUTH}, revision=2)
    hook_env = {e["name"]: e for e in _hook_container(rendered)["env"]}
    job = rendered.one("Job", "dagma-mlflow-migrate-2")
    job_env = {e["name"]: e for step in container_spec.containers(job) for e in step["env"]}
    for name in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_AUTH_DATABASE_URI"):
        assert hook_env[name] == job_env[name], name


@pytest.mark.parametrize(
    ("values", "revision", "why"),
    [
        (ROLLING, 1, "an install has no servers to stop"),
        ({**ROLLING, "migrations": {"stopServersForSchemaUpgrade": False}}, 2, "turned off"),
        ({}, 2, "a ReadWriteOnce volume: the Deployment is Recreate already"),
        (POSTGRESQL, 2, "artifacts on a ReadWriteOnce volume: Recreate"),
    ],
)
def test_no_hook_where_it_is_not_wanted(values: dict[str, Any], revision: int, why: str):
    rendered = render("mlflow", values, revision=revision)
    assert _hooks(rendered) == [], why
    assert [doc["metadata"]["name"] for doc in rendered.of_kind("Job")] == [
        f"dagma-mlflow-migrate-{revision}"
    ]


def test_upgrade_without_the_hook_keeps_the_zero_downtime_rolling_update():
    off = render(
        "mlflow", {**ROLLING, "migrations": {"stopServersForSchemaUpgrade": False}}, revision=2
    )
    on = render("mlflow", ROLLING, revision=2)
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    for rendered in (on, off):
        assert rendered.one("Deployment")["spec"]["strategy"] == strategy
    # The hook adds objects of its own and changes none of the release's.
    assert [d for d in on.manifests if d not in _hooks(on)] == off.manifests


@pytest.mark.parametrize("option", list(OPTIONS))
def test_every_option_renders_an_upgrade_valid_for_each_kubernetes_version(option: str):
    validate_strict(render("mlflow", OPTIONS[option], revision=2).all())


@pytest.mark.parametrize("option", ["postgresql-and-s3", "read-write-many", "everything-external"])
def test_the_hook_pod_meets_the_restricted_pod_security_standard(option: str):
    job = render("mlflow", OPTIONS[option], revision=2).one("Job", HOOK)
    spec = container_spec.pod_spec(job)
    assert restricted_violations(spec) == []
    [container] = spec["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "/tmp" in [m["mountPath"] for m in container["volumeMounts"]]
    # Credentials only by reference, as everywhere in the chart.
    for item in container["env"]:
        if item["name"].endswith("_URI"):
            assert "secretKeyRef" in item.get("valueFrom", {}) or "sqlite" in item["value"]
