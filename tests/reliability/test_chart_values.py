"""Bad chart values, both charts: each is refused before anything reaches a cluster.

Every row is a value that would otherwise render something broken or silently do something
other than meant. Each must be refused — by the values schema (naming the value's path) or
by the templates' validation (naming the value and the fix) — and a refusal never echoes a
password it was handed. The validation lists every broken value of a render in one failure,
one line each, so bad values from several rows are all reported by one render. The second
table holds awkward values that are fine: they must render manifests a real API server
accepts, with integers printed as integers.
"""

from __future__ import annotations

import re
from typing import Any

import helm_python
import pytest
from support.bad_chart_values import BAD_VALUES, MARKER, USER_CODE
from support.helm import Rendered, merge_values, render, validate_strict
from support.mlflow_options import AUTH, POSTGRESQL, S3
from support.umbrella import render_umbrella


def _render(chart: str, values: dict[str, Any]) -> Rendered:
    return render("mlflow", values) if chart == "mlflow" else render_umbrella(values)


def _listed(message: str) -> list[str]:
    """The broken values a template refusal lists: one ``- `` line each."""
    return [line.removeprefix("- ") for line in message.splitlines() if line.startswith("- ")]


def _header(chart: str, broken: int) -> str:
    return f"charts/{chart}: {broken} value{'' if broken == 1 else 's'} to fix:"


def test_the_table_has_at_least_fifty_bad_values() -> None:
    assert len(BAD_VALUES) >= 50


@pytest.mark.parametrize("case", BAD_VALUES)
def test_bad_value_is_refused_naming_the_value_and_the_fix(case: str) -> None:
    bad = BAD_VALUES[case]
    with pytest.raises(helm_python.HelmError) as refused:
        _render(bad.chart, bad.values)
    message = str(refused.value)
    missing = [fragment for fragment in bad.says if fragment not in message]
    assert not missing, f"refusal lacks {missing}: {message}"
    assert MARKER not in message
    if isinstance(refused.value, helm_python.HelmRenderError):
        assert _header(bad.chart, bad.broken) in message, message
        assert len(_listed(message)) == bad.broken, message


# Rows of the table whose values do not overlap: one render with all of them.
ONE_RENDER = {
    "mlflow": (
        "pod-label-over-a-selector-label",
        "allowed-hosts-wildcard-all",
        "arg-host",
        "env-plain-password",
        "node-port-without-login",
    ),
    # dagma's own checks and the MLflow subchart's, in the same failure.
    "dagma": (
        "ui-url-with-password",
        "dagster-ui-url-with-token-user",
        "network-policy-without-run-pod-label",
        "user-code-tag-a-number",
        "subchart-value-refused-through-umbrella",
    ),
}


@pytest.mark.parametrize("chart", ONE_RENDER)
def test_one_render_reports_every_bad_value_in_one_failure(chart: str) -> None:
    rows = {name: BAD_VALUES[name] for name in ONE_RENDER[chart]}
    with pytest.raises(helm_python.HelmRenderError) as refused:
        _render(chart, merge_values(*(bad.values for bad in rows.values())))
    message = str(refused.value)
    assert _header(chart, len(rows)) in message, message
    listed = _listed(message)
    assert len(listed) == len(rows), message
    unlisted = [
        name
        for name, bad in rows.items()
        if not any(all(fragment in line for fragment in bad.says) for line in listed)
    ]
    assert not unlisted, f"no line of the refusal is about {unlisted}: {message}"
    assert MARKER not in message


# Values at the edges that are right: they render, and every manifest is valid.
BIG_ID = 1000680000  # an OpenShift-range UID
GOOD_VALUES: dict[str, tuple[str, dict[str, Any]]] = {
    "openshift-range-ids": (
        "mlflow",
        {"podSecurityContext": {"runAsUser": BIG_ID, "runAsGroup": BIG_ID, "fsGroup": BIG_ID}},
    ),
    "long-deadlines-and-timeouts": (
        "mlflow",
        {
            "migrations": {
                "activeDeadlineSeconds": 2147483647,
                "waitTimeoutSeconds": 10000000,
                "backoffLimit": 100,
            },
            "probes": {"startup": {"failureThreshold": 1000000, "periodSeconds": 1000000}},
        },
    ),
    "many-replicas-highest-ports": (
        "mlflow",
        {
            **POSTGRESQL,
            **S3,
            "replicaCount": 100,
            "service": {"port": 65535},
            "server": {"port": 65535, "workers": 64},
        },
    ),
    "quantities-as-numbers": (
        "mlflow",
        {"resources": {"requests": {"cpu": 2, "memory": 1073741824}, "limits": {"memory": 2e9}}},
    ),
    "ingress-with-login-and-wildcard-host": (
        "mlflow",
        {**AUTH, "ingress": {"enabled": True, "hosts": ["*.mlflow.example.com"]}},
    ),
    "load-balancer-opted-in": (
        "mlflow",
        {"service": {"type": "LoadBalancer"}, "auth": {"allowUnauthenticatedExposure": True}},
    ),
    "allowed-extras": (
        "mlflow",
        {
            "server": {
                "extraArgs": [
                    "--cors-allowed-origins",
                    "https://ui.example.com",
                    "--expose-prometheus=/tmp/m",
                ],
                "extraEnv": [
                    {
                        "name": "MLFLOW_REGISTRY_STORE_URI",
                        "valueFrom": {"secretKeyRef": {"name": "reg", "key": "uri"}},
                    }
                ],
            }
        },
    ),
    "longest-client-waits": (
        "dagma",
        {"tracking": {"http": {"timeoutSeconds": 3600, "serverWaitSeconds": 3600}}},
    ),
    "user-code-big-ids": (
        "dagma",
        {
            "dagster": {
                "dagster-user-deployments": {
                    "deployments": [
                        {
                            **USER_CODE,
                            "podSecurityContext": {"runAsUser": BIG_ID, "runAsGroup": BIG_ID},
                        }
                    ]
                }
            }
        },
    ),
}
FLOAT_TEXT = re.compile(r"^-?\d+(\.\d+)?e[+-]?\d+$")


def _scalars(node: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in _scalars(value, f"{path}.{key}")]
    if isinstance(node, list):
        return [s for i, value in enumerate(node) for s in _scalars(value, f"{path}[{i}]")]
    return [(path, node)]


@pytest.mark.parametrize("case", GOOD_VALUES)
def test_edge_values_render_manifests_the_api_accepts_with_integers_as_integers(case: str) -> None:
    chart, values = GOOD_VALUES[case]
    rendered = _render(chart, values)
    validate_strict(rendered.all())
    floats = [
        (doc["kind"], path, value)
        for doc in rendered.all()
        for path, value in _scalars(doc)
        if isinstance(value, float) or (isinstance(value, str) and FLOAT_TEXT.match(value))
    ]
    assert not floats, f"numbers rendered in float notation: {floats}"


def test_large_ids_reach_every_pod_unchanged() -> None:
    _, values = GOOD_VALUES["openshift-range-ids"]
    rendered = render("mlflow", values)
    for doc in (rendered.one("Deployment"), rendered.one("Job"), *rendered.tests):
        spec = doc["spec"]["template"]["spec"] if doc["kind"] != "Pod" else doc["spec"]
        assert spec["securityContext"]["runAsUser"] == BIG_ID
        assert spec["securityContext"]["fsGroup"] == BIG_ID
