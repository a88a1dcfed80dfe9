"""skaffold.yaml: valid for its schema, and what it hands Helm installs dagma correctly."""

from __future__ import annotations

import re

import jsonschema
import pytest
from support.dagster_chart import user_deployment
from support.helm import ROOT
from support.skaffold import (
    expand_templates,
    helm_values,
    image_env_name,
    load_config,
    load_schema,
    with_profile,
)
from support.umbrella import effective_values, render_umbrella

PROFILES = {"kind": "kind-kind", "minikube": "minikube", "local": "dagma-local"}
# The values file each profile installs with: one for every local cluster.
PROFILE_VALUES = dict.fromkeys(PROFILES, "values/local.yaml")
BUILT = {  # what a build could produce: unique tags, as Skaffold gives loaded images
    "dagma-user-code": ("dagma-user-code", "4f0c2a91e3b7"),
    "dagma-mlflow": ("dagma-mlflow", "9d2e77b10c55"),
    "dagma-training": ("dagma-training", "07be3c1d92fa"),
}
TRAINING = {"image": "dagma-training", "dockerfile": "images/user_code/Dockerfile",
            "target": "training", "deployment": "dagma-training"}  # fmt: skip


def _release(config: dict) -> dict:
    [release] = config["deploy"]["helm"]["releases"]
    return release


def test_skaffold_yaml_is_valid_for_v4beta14() -> None:
    config = load_config()
    assert config["apiVersion"] == "skaffold/v4beta14"
    schema = load_schema()
    jsonschema.Draft7Validator(schema).validate(config)
    for profile in [*PROFILES, "other-ports"]:
        jsonschema.Draft7Validator(schema).validate(with_profile(config, profile))


def test_schema_check_rejects_a_misspelt_key() -> None:
    config = load_config()
    _release(config)["valueFiles"] = ["values/local.yaml"]
    schema = load_schema()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(config)


def test_both_images_are_built_from_their_dockerfiles() -> None:
    artifacts = {a["image"]: a for a in load_config()["build"]["artifacts"]}
    assert set(artifacts) == {"dagma-user-code", "dagma-mlflow"}
    for name, artifact in artifacts.items():
        dockerfile = ROOT / artifact["context"] / artifact["docker"]["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
    # The slim stage by name: the classic builder would build every stage before the last.
    assert artifacts["dagma-user-code"]["docker"]["target"] == "user-code"


@pytest.mark.parametrize("profile", [None, *PROFILES])
def test_every_image_template_names_a_built_artifact(profile: str | None) -> None:
    config = load_config() if profile is None else with_profile(load_config(), profile)
    images = {image_env_name(a["image"]) for a in config["build"]["artifacts"]}
    templates = _release(config)["setValueTemplates"].values()
    used = {m for t in templates for m in re.findall(r"\.IMAGE_(?:REPO|TAG)_(\w+)", t)}
    assert used == images


@pytest.mark.parametrize("profile", PROFILES)
def test_local_profiles_build_the_training_image_for_the_training_location(profile: str) -> None:
    """values/local.yaml adds the training code location: its profiles build its image
    (images/user_code's target ``training``) and hand it to that deployment."""
    patched = with_profile(load_config(), profile)
    artifacts = {a["image"]: a for a in patched["build"]["artifacts"]}
    assert set(artifacts) == {"dagma-user-code", "dagma-mlflow", TRAINING["image"]}
    docker = artifacts[TRAINING["image"]]["docker"]
    assert (docker["dockerfile"], docker["target"]) == (TRAINING["dockerfile"], TRAINING["target"])
    release = _release(patched)
    user_values = helm_values(release, expand_templates(release["setValueTemplates"], BUILT))
    deployment = user_deployment(effective_values(user_values)["dagster"], TRAINING["deployment"])
    assert deployment["image"]["repository"] == TRAINING["image"]
    assert deployment["image"]["tag"] == BUILT[TRAINING["image"]][1]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "dagma.examples.training.definitions"]


@pytest.mark.parametrize(("profile", "context"), PROFILES.items())
def test_local_profiles_activate_by_kube_context_and_never_push(profile: str, context: str) -> None:
    config = load_config()
    spec = next(p for p in config["profiles"] if p["name"] == profile)
    [activation] = spec["activation"]
    assert re.search(activation["kubeContext"], context)  # Skaffold's own test: a search
    patched = with_profile(config, profile)
    assert patched["build"]["local"]["push"] is False
    assert _release(patched)["valuesFiles"] == [PROFILE_VALUES[profile]]


def test_local_profile_is_the_kind_profile_for_the_local_clusters_context_only() -> None:
    config = load_config()
    assert with_profile(config, "local")["build"] == with_profile(config, "kind")["build"]
    assert with_profile(config, "local")["deploy"] == with_profile(config, "kind")["deploy"]
    [activation] = next(p for p in config["profiles"] if p["name"] == "local")["activation"]
    # Anchored: Skaffold searches the pattern, so a bare name would also activate on
    # any context that merely contains it.
    for other in ("kind-dagma-local", "dagma-local-2", "minikube", "kind-kind"):
        assert not re.search(activation["kubeContext"], other), other
    for spec in config["profiles"]:
        if spec["name"] != "local" and "activation" in spec:
            assert not re.search(spec["activation"][0]["kubeContext"], "dagma-local"), spec


@pytest.mark.parametrize("profile", [None, *PROFILES])
def test_image_override_keeps_the_user_deployment_name_and_port(profile: str | None) -> None:
    config = load_config() if profile is None else with_profile(load_config(), profile)
    release = _release(config)
    user_values = helm_values(release, expand_templates(release["setValueTemplates"], BUILT))
    dagster = effective_values(user_values)["dagster"]
    deployment = user_deployment(dagster, "dagma-user-code")
    assert deployment["port"] == 3030
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "dagma.definitions"]
    assert deployment["image"]["repository"] == "dagma-user-code"
    assert deployment["image"]["tag"] == "4f0c2a91e3b7"
    # dagma's own templates accept it (ConfigMap/Secret names still referenced).
    mlflow = render_umbrella(user_values).one("Deployment", "dagma-mlflow")
    [server] = mlflow["spec"]["template"]["spec"]["containers"]
    assert server["image"] == "dagma-mlflow:9d2e77b10c55"


def test_without_the_values_file_the_override_would_lose_the_deployment() -> None:
    # The pitfall the valuesFiles entry avoids (helm/helm#11734): same --set, no -f.
    release = {**_release(load_config()), "valuesFiles": []}
    user_values = helm_values(release, expand_templates(release["setValueTemplates"], BUILT))
    [deployment] = effective_values(user_values)["dagster"]["dagster-user-deployments"][
        "deployments"
    ]
    assert "name" not in deployment and "port" not in deployment


def test_port_forwards_match_the_services_the_charts_create() -> None:
    forwards = {f["localPort"]: f for f in load_config()["portForward"]}
    assert set(forwards) == {3000, 5000}
    values = effective_values()
    dagster_ui, mlflow_ui = forwards[3000], forwards[5000]
    assert dagster_ui["resourceName"] == f"{_release(load_config())['name']}-dagster-webserver"
    assert dagster_ui["port"] == values["dagster"]["dagsterWebserver"]["service"]["port"]
    mlflow_service = render_umbrella().one("Service", mlflow_ui["resourceName"])
    assert [p["port"] for p in mlflow_service["spec"]["ports"]] == [mlflow_ui["port"]]
    namespace = _release(load_config())["namespace"]
    assert dagster_ui["namespace"] == mlflow_ui["namespace"] == namespace


def test_other_ports_profile_moves_only_the_local_ports_and_is_never_automatic() -> None:
    """``skaffold dev -p other-ports``: the UIs on 3100 and 5100 (make demo and make dev keep
    3000 and 5000), the same Services and ports behind them; chosen only by name."""
    config = load_config()
    spec = next(p for p in config["profiles"] if p["name"] == "other-ports")
    assert "activation" not in spec
    moved = with_profile(config, "other-ports")["portForward"]
    assert [f["localPort"] for f in moved] == [3100, 5100]
    unchanged = [{**f, "localPort": None} for f in config["portForward"]]
    assert [{**f, "localPort": None} for f in moved] == unchanged
