"""charts/mlflow rendered with the real Helm engine: valid objects with the promised properties."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import pytest
from support import container_spec
from support.helm import CHARTS, Rendered, lint_problems, render, validate_strict
from support.mlflow_options import EXTERNAL, INGRESS, OPTIONS, POSTGRESQL, S3

OPTION_IDS = list(OPTIONS)


def _server(rendered: Rendered) -> dict[str, Any]:
    return container_spec.container(rendered.one("Deployment"), "mlflow")


def _argv(rendered: Rendered) -> list[str]:
    server = _server(rendered)
    return [*server["command"], *server["args"]]


def _arg(rendered: Rendered, flag: str) -> str:
    argv = _argv(rendered)
    return argv[argv.index(flag) + 1]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


@pytest.fixture(scope="module")
def default() -> Rendered:
    return render("mlflow")


@pytest.mark.parametrize("option", OPTION_IDS)
def test_every_option_renders_objects_valid_for_each_kubernetes_version(option: str):
    validate_strict(render("mlflow", OPTIONS[option]).all())


@pytest.mark.parametrize("option", OPTION_IDS)
def test_every_option_passes_strict_lint(option: str):
    assert lint_problems("mlflow", OPTIONS[option]) == []


def test_service_is_named_by_value_for_a_predictable_url(default: Rendered):
    service = default.one("Service")
    assert service["metadata"]["name"] == "mlflow"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 5000, "targetPort": "http", "protocol": "TCP"}
    ]
    assert (
        service["spec"]["selector"] == default.one("Deployment")["spec"]["selector"]["matchLabels"]
    )
    assert "http://mlflow:5000" in default.notes


def test_service_name_and_port_values_move_the_url_everywhere():
    rendered = render("mlflow", {"service": {"name": "tracking", "port": 8080}})
    assert rendered.one("Service")["metadata"]["name"] == "tracking"
    assert rendered.one("Service")["spec"]["ports"][0]["port"] == 8080
    test_env = _env(rendered.tests[0]["spec"]["containers"][0])
    assert test_env["MLFLOW_TRACKING_URI"]["value"] == "http://tracking:8080"
    assert "tracking" in _arg(rendered, "--allowed-hosts").split(",")
    assert "port-forward service/tracking 8080:8080" in rendered.notes


def test_server_listens_on_all_interfaces_on_the_container_port(default: Rendered):
    assert _arg(default, "--host") == "0.0.0.0"
    assert _arg(default, "--port") == str(_server(default)["ports"][0]["containerPort"])


@pytest.mark.parametrize("option", OPTION_IDS)
def test_artifacts_are_always_proxied_never_a_local_artifact_root(option: str):
    rendered = render("mlflow", OPTIONS[option])
    argv = _argv(rendered)
    assert "--serve-artifacts" in argv and "--artifacts-destination" in argv
    assert not [a for a in argv if a.startswith(("--default-artifact-root", "--no-serve"))]
    for doc in (rendered.one("Deployment"), rendered.one("Job")):
        for spec in container_spec.containers(doc):
            assert "MLFLOW_DEFAULT_ARTIFACT_ROOT" not in _env(spec)


def test_artifacts_go_to_the_volume_by_default_and_to_s3_when_chosen(default: Rendered):
    assert _arg(default, "--artifacts-destination") == "/var/lib/mlflow/artifacts"
    mounts = {m["mountPath"]: m["name"] for m in _server(default)["volumeMounts"]}
    assert mounts["/var/lib/mlflow"] == "data"
    s3 = render("mlflow", S3)
    assert _arg(s3, "--artifacts-destination") == "s3://mlflow-artifacts/dagma"
    assert _env(_server(s3))["MLFLOW_S3_ENDPOINT_URL"]["value"] == "http://minio.storage:9000"


def test_backend_is_sqlite_on_the_volume_by_default(default: Rendered):
    uri = _env(_server(default))["MLFLOW_BACKEND_STORE_URI"]["value"]
    assert uri == "sqlite:////var/lib/mlflow/mlflow.db"


def test_allowed_hosts_name_the_service_every_way_plus_localhost(default: Rendered):
    hosts = set(_arg(default, "--allowed-hosts").split(","))
    names = ["mlflow", "mlflow.dagma", "mlflow.dagma.svc", "mlflow.dagma.svc.cluster.local"]
    names += ["localhost", "127.0.0.1"]
    assert hosts == {*names, *(f"{n}:*" for n in names)}


def test_allowed_hosts_follow_namespace_cluster_domain_ingress_and_extras():
    rendered = render(
        "mlflow",
        {**INGRESS, "clusterDomain": "corp.local", "server": {"extraAllowedHosts": ["10.0.0.5"]}},
        namespace="ml",
    )
    hosts = set(_arg(rendered, "--allowed-hosts").split(","))
    expected = {"mlflow.ml.svc.corp.local:*", "mlflow.example.com", "mlflow.example.com:*"}
    assert expected | {"10.0.0.5", "mlflow.ml"} <= hosts


def test_volume_is_kept_on_uninstall(default: Rendered):
    claim = default.one("PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    volumes = container_spec.pod_spec(default.one("Deployment"))["volumes"]
    claims = [
        v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v
    ]
    assert claims == [claim["metadata"]["name"]]


def test_existing_claim_is_used_and_none_created():
    rendered = render("mlflow", OPTIONS["existing-claim"])
    assert rendered.of_kind("PersistentVolumeClaim") == []
    for doc in (rendered.one("Deployment"), rendered.one("Job")):
        volumes = container_spec.pod_spec(doc)["volumes"]
        assert {"name": "data", "persistentVolumeClaim": {"claimName": "mlflow-data"}} in volumes


def test_no_volume_at_all_with_postgresql_and_s3():
    rendered = render("mlflow", {**POSTGRESQL, **S3})
    assert rendered.of_kind("PersistentVolumeClaim") == []
    for doc in (rendered.one("Deployment"), rendered.one("Job")):
        assert not [v for v in container_spec.pod_spec(doc)["volumes"] if v["name"] == "data"]


def test_one_pod_at_a_time_on_a_read_write_once_volume(default: Rendered):
    deployment = default.one("Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["spec"]["replicas"] == 1


def test_rolling_updates_and_replicas_without_a_volume():
    deployment = render("mlflow", EXTERNAL).one("Deployment")
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["replicas"] == 2


def test_migration_job_upgrades_the_server_database_once_per_revision():
    install, upgrade = render("mlflow"), render("mlflow", revision=7)
    assert install.one("Job")["metadata"]["name"] == "dagma-mlflow-migrate-1"
    assert upgrade.one("Job")["metadata"]["name"] == "dagma-mlflow-migrate-7"
    job = install.one("Job")
    assert "helm.sh/hook" not in job["metadata"].get("annotations", {})
    [step] = container_spec.containers(job)
    # The URI (a password with PostgreSQL) comes from the environment, never the command line.
    assert step["command"] == ["python", "/opt/mlflow-chart/migrate.py", "tracking"]
    assert (
        _env(step)["MLFLOW_BACKEND_STORE_URI"] == _env(_server(install))["MLFLOW_BACKEND_STORE_URI"]
    )
    assert container_spec.pod_spec(job)["restartPolicy"] == "Never"


def test_migration_job_also_upgrades_the_auth_database_when_auth_is_on():
    job = render("mlflow", OPTIONS["auth"]).one("Job")
    steps = [c["name"] for c in container_spec.containers(job)]
    assert steps == ["tracking-schema", "auth-schema"]
    auth = container_spec.container(job, "auth-schema")
    assert auth["command"] == ["python", "/opt/mlflow-chart/migrate.py", "auth"]
    assert _env(auth)["MLFLOW_AUTH_DATABASE_URI"]["value"].startswith("sqlite:///")


def test_server_pod_waits_for_the_schema_before_anything_else(default: Rendered):
    deployment = default.one("Deployment")
    first = container_spec.pod_spec(deployment)["initContainers"][0]
    assert first["name"] == "wait-for-schema"
    assert "upgrade" not in first["command"]
    backend = _env(_server(default))["MLFLOW_BACKEND_STORE_URI"]
    assert _env(first)["MLFLOW_BACKEND_STORE_URI"] == backend


def test_migration_job_runs_beside_the_server_on_a_read_write_once_volume(default: Rendered):
    affinity = container_spec.pod_spec(default.one("Job"))["affinity"]["podAffinity"]
    [term] = affinity["requiredDuringSchedulingIgnoredDuringExecution"]
    server_labels = default.one("Deployment")["spec"]["selector"]["matchLabels"]
    assert term["labelSelector"]["matchLabels"] == server_labels
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert "affinity" not in container_spec.pod_spec(
        render("mlflow", {**POSTGRESQL, **S3}).one("Job")
    )


@pytest.mark.parametrize("probe", ["startupProbe", "readinessProbe", "livenessProbe"])
def test_probes_ask_health_on_the_server_port(default: Rendered, probe: str):
    assert _server(default)[probe]["httpGet"] == {"path": "/health", "port": "http"}


def test_workers_and_resources_come_from_values():
    resources = {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "3Gi"}}
    rendered = render("mlflow", {"server": {"workers": 3}, "resources": resources})
    assert _arg(rendered, "--workers") == "3"
    assert _server(rendered)["resources"] == resources


def test_small_cluster_defaults(default: Rendered):
    assert _arg(default, "--workers") == "1"
    assert _server(default)["resources"]["limits"]["memory"] == "1Gi"
    assert _env(_server(default))["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"]["value"] == "false"


def test_helm_test_pod_logs_through_the_service(default: Rendered):
    [test_pod] = default.tests
    assert test_pod["kind"] == "Pod"
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [container] = test_pod["spec"]["containers"]
    assert _env(container)["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow:5000"
    script = container["command"][-1].rsplit("/", 1)[-1]
    assert script in default.one("ConfigMap")["data"]


def test_notes_give_the_port_forward_command_and_the_url(default: Rendered):
    assert "kubectl --namespace dagma port-forward service/mlflow 5000:5000" in default.notes
    assert "then open http://localhost:5000" in default.notes
    assert "helm test dagma --namespace dagma" in default.notes


def test_ingress_routes_its_hosts_to_the_service():
    ingress = render("mlflow", INGRESS).one("Ingress")
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == "mlflow.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "mlflow", "port": {"name": "http"}}
    assert ingress["spec"]["ingressClassName"] == "nginx"


def test_packaged_chart_carries_every_script_its_pods_run(tmp_path: Path):
    # charts/dagma consumes the chart packaged (helm dependency build): files/ must travel.
    archive = helm_python.package(CHARTS / "mlflow", destination=tmp_path)
    with helm_python.Chart.load(archive) as chart:
        files = chart.render(OPTIONS["auth"], name="dagma", namespace="dagma", is_install=True)
        # The schema-upgrade hook runs only in an upgrade of a rolling Deployment.
        upgrade_files = chart.render(
            {**OPTIONS["auth"], **POSTGRESQL, **S3},
            name="dagma",
            namespace="dagma",
            revision=2,
            is_upgrade=True,
        )
    rendered, upgrade = Rendered(files), Rendered(upgrade_files)
    scripts = rendered.one("ConfigMap")["data"]
    assert set(scripts) == {p.name for p in (CHARTS / "mlflow" / "files").glob("*.py")}
    workloads = [
        rendered.one("Deployment"),
        rendered.one("Job"),
        *rendered.tests,
        upgrade.one("Job", "dagma-mlflow-schema-upgrade"),
    ]
    run = {
        arg.rsplit("/", 1)[-1]
        for doc in workloads
        for spec in container_spec.containers(doc)
        for arg in spec["command"]
        if arg.startswith("/opt/mlflow-chart/")
    }
    assert run == set(scripts)
