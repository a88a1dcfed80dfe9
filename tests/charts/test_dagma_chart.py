"""charts/dagma's own templates, rendered by the real Helm engine with the MLflow subchart.

The Dagster chart itself cannot be fetched here; its values are covered by
test_dagma_dagster_values.py and the run pods by test_dagma_run_pod.py.
"""

from __future__ import annotations

import base64

import helm_python
import pytest
from support.dagster_chart import dagster_version_in_lock
from support.helm import CHARTS, Rendered, load_values_files, validate_strict
from support.umbrella import (
    NAMESPACE,
    RELEASE,
    VALUES_FILES,
    render_umbrella,
    umbrella_dir,
    values_paths,
)

VALUE_SETS = {"defaults": [], **{name: [name] for name in VALUES_FILES}}
USER_DEPLOYMENT_PATH = ("dagster", "dagster-user-deployments", "deployments")


def _decoded(secret: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def _user_deployment(**overrides: object) -> dict:
    """The chart's default user deployment with ``overrides`` (lists replace whole)."""
    with helm_python.Chart.load(CHARTS / "dagma") as chart:
        deployment = dict(chart.values["dagster"]["dagster-user-deployments"]["deployments"][0])
    deployment.update(overrides)
    return {"dagster": {"dagster-user-deployments": {"deployments": [deployment]}}}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_values_file_renders_valid_manifests(value_set: str) -> None:
    rendered = render_umbrella(values_files=values_paths(VALUE_SETS[value_set]))
    kinds = {doc["kind"] for doc in rendered.manifests}
    assert {"ConfigMap", "Secret", "Deployment", "Service"} <= kinds, kinds
    validate_strict(rendered.all())
    # dagma's fixed names must not collide with the subchart's release-derived ones.
    keys = [(doc["kind"], doc["metadata"]["name"]) for doc in rendered.all()]
    assert len(keys) == len(set(keys)), sorted(keys)


def test_dagster_dependency_is_pinned_to_the_locked_dagster_version() -> None:
    with helm_python.Chart.load(CHARTS / "dagma") as chart:
        dependencies = {d["name"]: d for d in chart.metadata["dependencies"]}
    assert dependencies["dagster"]["repository"] == "https://dagster-io.github.io/helm"
    assert dependencies["dagster"]["version"] == dagster_version_in_lock()


def test_mlflow_dependency_is_the_local_chart_at_its_version() -> None:
    with helm_python.Chart.load(CHARTS / "dagma") as chart:
        mlflow = next(d for d in chart.metadata["dependencies"] if d["name"] == "mlflow")
    with helm_python.Chart.load(CHARTS / "mlflow") as chart:
        version = chart.version
    assert mlflow["repository"] == "file://../mlflow"
    assert mlflow["version"] == version
    assert mlflow["condition"] == "mlflow.enabled"


def test_built_dependencies_are_the_mlflow_chart_and_nothing_fetched() -> None:
    # What the tests render: MLflow packaged as `helm dependency build` would; the
    # Dagster chart is absent (it would be downloaded), never vendored.
    status = {d["name"]: d["status"] for d in helm_python.dependency_list(umbrella_dir())}
    assert status == {"dagster": "missing", "mlflow": "ok"}
    assert not (CHARTS / "dagma" / "charts" / "dagster").exists()


def test_tracking_configmap_carries_the_mlflow_settings() -> None:
    rendered = render_umbrella()
    configmap = rendered.one("ConfigMap", "dagma-mlflow-env")
    assert configmap["data"] == {
        "MLFLOW_USE_TRACKING": "true",
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "MLFLOW_EXPERIMENT": "Default",
        "MLFLOW_PARENT_RUNS": "true",
        # MLflow's client reads these: a dead server fails a run in about 2 minutes, not 8.
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
        # A run started while the MLflow pod restarts (11-16 s) waits for it.
        "MLFLOW_SERVER_WAIT_SECONDS": "60",
    }


def test_parent_runs_can_be_switched_off() -> None:
    rendered = render_umbrella({"tracking": {"parentRuns": False}})
    data = rendered.one("ConfigMap", "dagma-mlflow-env")["data"]
    assert data["MLFLOW_PARENT_RUNS"] == "false"


def test_tracking_uri_follows_the_mlflow_service_value() -> None:
    rendered = render_umbrella({"mlflow": {"service": {"name": "tracking", "port": 5050}}})
    service = rendered.one("Service", "tracking")
    assert [p["port"] for p in service["spec"]["ports"]] == [5050]
    uri = rendered.one("ConfigMap", "dagma-mlflow-env")["data"]["MLFLOW_TRACKING_URI"]
    assert uri == "http://tracking:5050"


def test_external_mlflow_needs_an_explicit_uri() -> None:
    with pytest.raises(helm_python.HelmError, match="set tracking.uri"):
        render_umbrella({"mlflow": {"enabled": False}})
    rendered = render_umbrella(
        {"mlflow": {"enabled": False}, "tracking": {"uri": "https://mlflow.example.com"}}
    )
    data = rendered.one("ConfigMap", "dagma-mlflow-env")["data"]
    assert data["MLFLOW_TRACKING_URI"] == "https://mlflow.example.com"
    assert not [d for d in rendered.all() if d["kind"] == "Deployment"]


def test_ui_urls_reach_the_configmap_when_set() -> None:
    rendered = render_umbrella(values_files=values_paths(["local.yaml"]))
    data = rendered.one("ConfigMap", "dagma-mlflow-env")["data"]
    assert data["MLFLOW_UI_URL"] == "http://localhost:5000"
    assert data["DAGSTER_UI_URL"] == "http://localhost:3000"


def test_tracking_switch_off_is_written_as_false() -> None:
    rendered = render_umbrella({"tracking": {"enabled": False}})
    data = rendered.one("ConfigMap", "dagma-mlflow-env")["data"]
    assert data["MLFLOW_USE_TRACKING"] == "false"


def test_credentials_secret_is_empty_without_mlflow_auth() -> None:
    values = {"tracking": {"credentials": {"username": "u", "password": "p"}}}
    secret = render_umbrella(values).one("Secret", "dagma-mlflow-credentials")
    assert _decoded(secret) == {}


def test_credentials_secret_holds_the_login_when_mlflow_auth_is_on() -> None:
    values = {
        "mlflow": {"auth": {"enabled": True, "existingSecret": "mlflow-admin"}},
        "tracking": {"credentials": {"username": "admin", "password": "s3cret"}},
    }
    rendered = render_umbrella(values)
    assert _decoded(rendered.one("Secret", "dagma-mlflow-credentials")) == {
        "MLFLOW_TRACKING_USERNAME": "admin",
        "MLFLOW_TRACKING_PASSWORD": "s3cret",
    }
    assert "mlflow-admin" in rendered.notes
    assert "MLFLOW_TRACKING_PASSWORD" in rendered.notes


def test_token_for_an_external_server_goes_into_the_secret() -> None:
    values = {
        "mlflow": {"enabled": False},
        "tracking": {"uri": "https://mlflow.example.com", "credentials": {"token": "t0k"}},
    }
    secret = render_umbrella(values).one("Secret", "dagma-mlflow-credentials")
    assert _decoded(secret) == {"MLFLOW_TRACKING_TOKEN": "t0k"}


def test_mlflow_auth_without_client_credentials_fails_the_render() -> None:
    values = {"mlflow": {"auth": {"enabled": True, "existingSecret": "mlflow-admin"}}}
    with pytest.raises(helm_python.HelmError, match="tracking.existingSecret"):
        render_umbrella(values)


def test_existing_secret_replaces_the_created_one() -> None:
    values = {
        "mlflow": {"auth": {"enabled": True, "existingSecret": "mlflow-admin"}},
        "tracking": {"existingSecret": "team-mlflow-login"},
        **_user_deployment(envSecrets=[{"name": "team-mlflow-login"}]),
    }
    rendered = render_umbrella(values)
    assert not rendered.of_kind("Secret") or all(
        s["metadata"]["name"] != "dagma-mlflow-credentials" for s in rendered.of_kind("Secret")
    )
    assert "Secret/team-mlflow-login" in rendered.notes


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"envConfigMaps": [{"name": "other"}]}, "must name the MLflow ConfigMap"),
        ({"envConfigMaps": []}, "must name the MLflow ConfigMap"),
        ({"envSecrets": [{"name": "other"}]}, "must name the MLflow credentials Secret"),
        ({"includeConfigInLaunchedRuns": {"enabled": False}}, "run pods would not get"),
    ],
)
def test_dagster_values_that_lose_the_mlflow_env_fail_the_render(
    overrides: dict, message: str
) -> None:
    with pytest.raises(helm_python.HelmError, match=message):
        render_umbrella(_user_deployment(**overrides))


def test_existing_secret_must_be_the_one_the_deployment_reads() -> None:
    # Naming an existing Secret but leaving envSecrets on the default name.
    with pytest.raises(helm_python.HelmError, match='"team-mlflow-login"'):
        render_umbrella({"tracking": {"existingSecret": "team-mlflow-login"}})


def test_renamed_configmap_must_be_renamed_in_the_dagster_values_too() -> None:
    with pytest.raises(helm_python.HelmError, match='"renamed-env"'):
        render_umbrella({"tracking": {"configMapName": "renamed-env"}})
    values = {
        "tracking": {"configMapName": "renamed-env"},
        **_user_deployment(envConfigMaps=[{"name": "renamed-env"}]),
    }
    assert render_umbrella(values).one("ConfigMap", "renamed-env")


@pytest.mark.parametrize(
    "values",
    [
        {"tracking": {"enabled": "yes"}},
        {"tracking": {"uri": "mlflow:5000"}},
        {"tracking": {"configMapName": "Not_A_Name"}},
        {"tracking": {"credentials": {"user": "x"}}},
        {"trackign": {}},
        {"mlflow": {"service": {"port": "5000"}}},
    ],
    ids=[
        "switch-not-boolean",
        "uri-without-scheme",
        "bad-name",
        "unknown-credential",
        "typo-key",
        "port-as-string",
    ],
)
def test_schema_rejects_wrong_values(values: dict) -> None:
    with pytest.raises(helm_python.HelmError):
        render_umbrella(values)


def _dagma_test_pod(rendered: Rendered) -> dict:
    return rendered.one("Pod", f"{RELEASE}-test-mlflow-health")


def test_helm_test_pod_checks_the_configmap_uri_from_the_user_code_image() -> None:
    pod = _dagma_test_pod(render_umbrella(values_files=values_paths(["local.yaml"])))
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [container] = pod["spec"]["containers"]
    assert container["image"] == "dagma-user-code:0.1.0"
    assert container["envFrom"] == [{"configMapRef": {"name": "dagma-mlflow-env"}}]
    assert 'os.environ["MLFLOW_TRACKING_URI"]' in container["args"][0]
    assert "/health" in container["args"][0]


def test_helm_test_pod_script_is_valid_python() -> None:
    pod = _dagma_test_pod(render_umbrella())
    compile(pod["spec"]["containers"][0]["args"][0], "helm-test", "exec")


def test_an_empty_user_code_tag_is_refused_not_replaced_by_the_dagster_version() -> None:
    # The Dagster chart would pull <repository>:<its own version>, an image nobody built.
    image = {"repository": "registry.example.com/dagma", "tag": "", "pullPolicy": "Always"}
    with pytest.raises(helm_python.HelmError) as refused:
        render_umbrella(_user_deployment(image=image))
    assert "image.tag is empty" in str(refused.value)
    assert dagster_version_in_lock() in str(refused.value)


def test_notes_give_both_port_forwards_and_where_to_materialize() -> None:
    notes = render_umbrella().notes
    forward = f"kubectl --namespace {NAMESPACE} port-forward"
    assert f"{forward} svc/{RELEASE}-dagster-webserver 3000:3000" in notes
    assert f"{forward} svc/mlflow 5000:5000" in notes
    assert "train_model_stub" in notes and "Materialize" in notes
    assert "MLFLOW_TRACKING_PASSWORD" not in notes  # no auth, no credentials to read


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_lint_passes_strictly(value_set: str) -> None:
    # With the Dagster dependency present (its values-only stand-in), as after
    # `helm dependency build`.
    values = load_values_files(values_paths(VALUE_SETS[value_set]))
    report = helm_python.lint(
        umbrella_dir(with_dagster_values=True), values, strict=True, namespace=NAMESPACE
    )
    errors = [m for m in report["messages"] if m["severity"] >= 2]
    assert not errors and not report["errors"], report
