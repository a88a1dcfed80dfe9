"""charts/mlflow refuses wrong values before anything is installed.

The @param lines and the README values table: test_values_tables.py.
"""

from __future__ import annotations

from typing import Any

import helm_python
import pytest
from support.helm import CHARTS, render

CHART = CHARTS / "mlflow"


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicas": 2}, "additional properties 'replicas'"),
        ({"server": {"host": "127.0.0.1"}}, "additional properties 'host'"),
        ({"service": {"port": "5000"}}, "/service/port"),
        ({"service": {"name": "MLflow"}}, "/service/name"),
        ({"auth": {"enabled": "yes"}}, "/auth/enabled"),
        ({"auth": {"defaultPermission": "ALL"}}, "/auth/defaultPermission"),
        ({"server": {"workers": 0}}, "/server/workers"),
        ({"server": {"extraAllowedHosts": ["a.example,b.example"]}}, "/server/extraAllowedHosts"),
        ({"replicaCount": -1}, "/replicaCount"),
        ({"backendStore": {"type": "mysql"}}, "/backendStore/type"),
        ({"backendStore": {"postgresql": {"password": "hunter2"}}}, "'password'"),
        ({"artifacts": {"type": "local"}}, "/artifacts/type"),
        ({"artifacts": {"s3": {"destination": "/mnt/artifacts"}}}, "/artifacts/s3/destination"),
        ({"persistence": {"size": "ten gigs"}}, "/persistence/size"),
        ({"persistence": {"accessMode": "ReadOnlyMany"}}, "/persistence/accessMode"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"ingress": {"hosts": ["https://mlflow.example.com"]}}, "/ingress/hosts"),
        ({"podSecurityContext": {"runAsUser": 0}}, "/podSecurityContext/runAsUser"),
        ({"probes": {"startup": {"failureThreshold": 0}}}, "/probes/startup/failureThreshold"),
        ({"migrations": {"waitTimeoutSeconds": "forever"}}, "/migrations/waitTimeoutSeconds"),
    ],
    ids=[
        "unknown-top-level-key",
        "unknown-nested-key",
        "port-as-string",
        "service-name-not-dns",
        "switch-not-boolean",
        "unknown-permission",
        "no-workers",
        "comma-in-allowed-host",
        "negative-replicas",
        "unsupported-backend",
        "password-as-plain-value",
        "unsupported-artifact-store",
        "s3-destination-not-s3",
        "size-not-a-quantity",
        "unsupported-access-mode",
        "unknown-pull-policy",
        "ingress-host-with-scheme",
        "root-user",
        "probe-never-fails",
        "timeout-not-a-number",
    ],
)
def test_schema_rejects(values: dict[str, Any], complaint: str):
    with pytest.raises(helm_python.HelmValuesError) as rejected:
        render("mlflow", values)
    assert complaint in str(rejected.value)


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCount": 2}, "needs backendStore.type=postgresql"),
        (
            {"replicaCount": 2, "backendStore": {"type": "postgresql"}},
            "needs backendStore.postgresql.existingSecret",
        ),
        (
            {
                "replicaCount": 2,
                "backendStore": {"type": "postgresql", "postgresql": {"existingSecret": "db"}},
            },
            "needs persistence.accessMode=ReadWriteMany",
        ),
        ({"artifacts": {"type": "s3"}}, "needs artifacts.s3.destination"),
        ({"auth": {"enabled": True}}, "needs auth.existingSecret"),
        ({"ingress": {"enabled": True}}, "needs at least one host"),
        ({"server": {"extraArgs": ["--default-artifact-root=/tmp/a"]}}, "always proxies artifacts"),
        ({"server": {"extraArgs": ["--no-serve-artifacts"]}}, "always proxies artifacts"),
        (
            {"server": {"extraEnv": [{"name": "MLFLOW_DEFAULT_ARTIFACT_ROOT", "value": "/a"}]}},
            "always proxies artifacts",
        ),
    ],
    ids=[
        "replicas-on-sqlite",
        "postgresql-without-secret",
        "replicas-on-one-node-volume",
        "s3-without-destination",
        "auth-without-secret",
        "ingress-without-hosts",
        "local-artifact-root-by-argument",
        "no-artifact-proxy",
        "local-artifact-root-by-environment",
    ],
)
def test_render_refuses_combinations_with_the_fix(values: dict[str, Any], complaint: str):
    with pytest.raises(helm_python.HelmRenderError) as refused:
        render("mlflow", values)
    assert complaint in str(refused.value)


def test_umbrella_dependency_condition_is_accepted():
    # charts/dagma may set mlflow.enabled: true; Helm then hands `enabled` to this chart.
    render("mlflow", {"enabled": True, "global": {"anything": 1}})


def test_chart_documents_its_url_and_port_forward():
    readme = (CHART / "README.md").read_text()
    assert "http://mlflow:5000" in readme
    assert "kubectl --namespace <namespace> port-forward service/mlflow 5000:5000" in readme
