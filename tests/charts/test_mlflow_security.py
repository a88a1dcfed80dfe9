"""charts/mlflow admits only whom it should: restricted pods, secrets by reference, policies."""

from __future__ import annotations

from typing import Any

import pytest
from support import container_spec
from support.helm import Rendered, render
from support.mlflow_options import AUTH, EXTERNAL, NETWORK_POLICY, OPTIONS
from support.pss import restricted_violations

OPTION_IDS = list(OPTIONS)
# Environment variables that carry credentials: they must come from a Secret.
CREDENTIAL_VARIABLES = {
    "MLFLOW_BACKEND_STORE_URI": ("mlflow-db", "uri"),
    "MLFLOW_AUTH_DATABASE_URI": ("mlflow-db", "uri"),
    "AWS_ACCESS_KEY_ID": ("mlflow-s3", "AWS_ACCESS_KEY_ID"),
    "AWS_SECRET_ACCESS_KEY": ("mlflow-s3", "AWS_SECRET_ACCESS_KEY"),
    "MLFLOW_AUTH_ADMIN_USERNAME": ("mlflow-admin", "username"),
    "MLFLOW_AUTH_ADMIN_PASSWORD": ("mlflow-admin", "password"),
    "MLFLOW_TRACKING_USERNAME": ("mlflow-admin", "username"),
    "MLFLOW_TRACKING_PASSWORD": ("mlflow-admin", "password"),
    "MLFLOW_FLASK_SERVER_SECRET_KEY": ("dagma-mlflow-flask", "secret-key"),
}


def _pods(rendered: Rendered) -> list[dict[str, Any]]:
    """Every workload the chart creates: the Deployment, the migration Job, the test Pod."""
    return [d for d in rendered.all() if d["kind"] in {"Deployment", "Job", "Pod"}]


def _env_entries(rendered: Rendered) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{doc['kind']}/{spec['name']}", item)
        for doc in _pods(rendered)
        for spec in container_spec.containers(doc)
        for item in spec.get("env", [])
    ]


@pytest.mark.parametrize("option", OPTION_IDS)
def test_every_pod_meets_the_restricted_pod_security_standard(option: str):
    rendered = render("mlflow", OPTIONS[option])
    kinds = sorted(doc["kind"] for doc in _pods(rendered))
    assert kinds == ["Deployment", "Job", "Pod"]
    for doc in _pods(rendered):
        spec = container_spec.pod_spec(doc)
        assert restricted_violations(spec) == [], doc["metadata"]["name"]
        assert spec["securityContext"]["runAsUser"] == 10001  # explicit, the image's user


@pytest.mark.parametrize("option", OPTION_IDS)
def test_root_filesystems_are_read_only_and_writes_go_to_volumes(option: str):
    rendered = render("mlflow", OPTIONS[option])
    for doc in _pods(rendered):
        volumes = {v["name"]: v for v in container_spec.pod_spec(doc)["volumes"]}
        for spec in container_spec.containers(doc):
            assert spec["securityContext"]["readOnlyRootFilesystem"] is True, spec["name"]
            writable = [m for m in spec["volumeMounts"] if not m.get("readOnly")]
            for mount in writable:
                kind = set(volumes[mount["name"]]) - {"name"}
                assert kind <= {"emptyDir", "persistentVolumeClaim"}, (spec["name"], mount)
            assert "/tmp" in [m["mountPath"] for m in writable], spec["name"]


@pytest.mark.parametrize("option", OPTION_IDS)
def test_no_pod_gets_a_kubernetes_api_token(option: str):
    for doc in _pods(render("mlflow", OPTIONS[option])):
        assert container_spec.pod_spec(doc)["automountServiceAccountToken"] is False


def test_credentials_reach_containers_only_through_secret_references():
    rendered = render("mlflow", EXTERNAL)
    seen = set()
    for where, item in _env_entries(rendered):
        if item["name"] not in CREDENTIAL_VARIABLES:
            continue
        seen.add(item["name"])
        assert "value" not in item, f"{where}: {item['name']} is a plain value"
        reference = item["valueFrom"]["secretKeyRef"]
        assert (reference["name"], reference["key"]) == CREDENTIAL_VARIABLES[item["name"]], where
    assert seen == set(CREDENTIAL_VARIABLES)


def test_the_only_secret_the_chart_writes_is_its_generated_csrf_key():
    rendered = render("mlflow", EXTERNAL)
    [secret] = rendered.of_kind("Secret")
    assert secret["metadata"]["name"] == "dagma-mlflow-flask"
    assert set(secret["data"]) == {"secret-key"}
    assert render("mlflow").of_kind("Secret") == []


def test_basic_auth_runs_the_auth_app_with_the_admin_secret():
    rendered = render("mlflow", AUTH)
    server = container_spec.container(rendered.one("Deployment"), "mlflow")
    assert server["args"][server["args"].index("--app-name") + 1] == "basic-auth"
    env = {item["name"]: item for item in server["env"]}
    assert env["MLFLOW_AUTH_CONFIG_PATH"]["value"] == "/etc/mlflow-auth/basic_auth.ini"
    mounts = {m["mountPath"]: m for m in server["volumeMounts"]}
    assert mounts["/etc/mlflow-auth"]["readOnly"] is True
    volumes = {v["name"]: v for v in container_spec.pod_spec(rendered.one("Deployment"))["volumes"]}
    assert volumes["auth-config"]["emptyDir"]["medium"] == "Memory"
    assert (
        "basic-auth"
        not in container_spec.container(render("mlflow").one("Deployment"), "mlflow")["args"]
    )


def test_notes_tell_how_to_read_the_login_without_printing_it():
    notes = render("mlflow", AUTH).notes
    assert "get secret mlflow-admin -o jsonpath='{.data.password}'" in notes


def test_network_policy_admits_only_release_pods_and_labelled_clients_on_the_server_port():
    rendered = render("mlflow", NETWORK_POLICY)
    policy = rendered.one("NetworkPolicy", "dagma-mlflow")
    server_labels = rendered.one("Deployment")["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["podSelector"] == {"matchLabels": server_labels}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "dagma"}}},
        {"podSelector": {"matchLabels": {"dagma/mlflow-client": "true"}}},
    ]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    # The helm test Pod is one of the release's pods, so the policy lets it in.
    test_labels = rendered.tests[0]["metadata"]["labels"]
    assert test_labels["app.kubernetes.io/instance"] == "dagma"


def test_network_policy_takes_extra_peers():
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    rendered = render("mlflow", {"networkPolicy": {"enabled": True, "extraIngressFrom": [peer]}})
    peers = rendered.one("NetworkPolicy", "dagma-mlflow")["spec"]["ingress"][0]["from"]
    assert peers[2:] == [peer]
    # Replacing the list keeps the release's pods and the labelled clients (run pods).
    assert {"podSelector": {"matchLabels": {"dagma/mlflow-client": "true"}}} in peers[:2]


def test_no_network_policy_unless_asked():
    assert render("mlflow").of_kind("NetworkPolicy") == []


def test_network_policy_closes_the_pods_that_serve_nothing():
    rendered = render("mlflow", NETWORK_POLICY)
    deny = rendered.one("NetworkPolicy", "dagma-mlflow-deny-ingress")
    assert deny["spec"]["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny["spec"]  # no rule: no connection admitted
    selector = deny["spec"]["podSelector"]["matchLabels"]
    for doc in _pods(rendered):
        template = doc if doc["kind"] == "Pod" else doc["spec"]["template"]
        assert selector.items() <= template["metadata"]["labels"].items(), doc["metadata"]["name"]
