"""Secrets only in Secrets: marker credentials handed to the charts appear nowhere else.

Both charts are rendered with a marker for every credential a user can give them in values
(the MLflow client's username, password and token). Each marker must reach the Secret the
chart writes (else the test would prove nothing) and no ConfigMap, no command, argument or
plain env value, no annotation and no NOTES. Credentials users keep in their own Secrets
(database URI, S3 keys, admin login) are referenced by name only, so every rendering is also
searched for any URL with a ``user:password@`` part. The same over a real PostgreSQL run is in
tests/charts/test_mlflow_postgres_server.py.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any

import pytest
from support import container_spec
from support.helm import Rendered, render
from support.mlflow_options import OPTIONS
from support.umbrella import VALUES_FILES, render_umbrella, values_paths

MARKERS = {
    "username": "user-Mk1-marker",
    "password": "pass-Mk2-marker",
    "token": "token-Mk3-marker",
}
URL_WITH_PASSWORD = re.compile(r"://[^/@\s:]+:[^/@\s]+@")
AUTH_ON = {"auth": {"enabled": True, "existingSecret": "mlflow-admin"}}


def _with_markers(credentials: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"tracking": {"credentials": credentials, **extra.pop("tracking", {})}, **extra}


def _renderings() -> dict[str, Rendered]:
    basic = {k: MARKERS[k] for k in ("username", "password")}
    renderings = {
        "dagma: in-cluster MLflow with basic auth": render_umbrella(
            _with_markers(basic, mlflow=AUTH_ON)
        ),
        "dagma: external MLflow with a token": render_umbrella(
            _with_markers(
                {"token": MARKERS["token"]},
                mlflow={"enabled": False},
                tracking={"uri": "https://mlflow.example.com"},
            )
        ),
    }
    for name in VALUES_FILES:
        # production.yaml names an existing Secret (which the login must then be in).
        login = {} if name == "production.yaml" else _with_markers(basic, mlflow=AUTH_ON)
        renderings[f"dagma: {name}"] = render_umbrella(login, values_files=values_paths([name]))
    for option, values in OPTIONS.items():
        renderings[f"mlflow: {option}"] = render("mlflow", values)
    return renderings


def _exposed_text(rendered: Rendered) -> Iterator[tuple[str, str]]:
    """(where, text) of every place a secret must not be: all but Secret data."""
    yield "NOTES.txt", rendered.notes
    for doc in rendered.all():
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        for key, value in (doc["metadata"].get("annotations") or {}).items():
            yield f"{name} annotation {key}", str(value)
        if doc["kind"] == "ConfigMap":
            for key, value in (doc.get("data") or {}).items():
                yield f"{name} data {key}", str(value)
        if doc["kind"] in {"Deployment", "Job", "Pod", "StatefulSet"}:
            for container in container_spec.containers(doc):
                where = f"{name} container {container['name']}"
                yield f"{where} command", " ".join(container.get("command", []))
                yield f"{where} args", " ".join(container.get("args", []))
                for item in container.get("env", []):
                    yield f"{where} env {item['name']}", str(item.get("value", ""))


def _secret_values(rendered: Rendered) -> set[str]:
    return {
        base64.b64decode(value).decode()
        for doc in rendered.of_kind("Secret")
        for value in (doc.get("data") or {}).values()
    }


@pytest.fixture(scope="module")
def renderings() -> dict[str, Rendered]:
    return _renderings()


def test_markers_reach_the_secret_they_belong_in(renderings: dict[str, Rendered]) -> None:
    stored = _secret_values(renderings["dagma: in-cluster MLflow with basic auth"])
    assert {MARKERS["username"], MARKERS["password"]} <= stored
    assert MARKERS["token"] in _secret_values(renderings["dagma: external MLflow with a token"])


def test_no_marker_outside_secrets(renderings: dict[str, Rendered]) -> None:
    places = 0
    hits = []
    for rendering, rendered in renderings.items():
        for where, text in _exposed_text(rendered):
            places += 1
            hits += [f"{rendering}: {where}" for marker in MARKERS.values() if marker in text]
    print(
        f"secret hygiene: {len(renderings)} renderings, {places} places searched, {len(hits)} hits"
    )
    assert not hits, hits


def test_no_url_with_a_password_outside_secrets(renderings: dict[str, Rendered]) -> None:
    hits = [
        f"{rendering}: {where}"
        for rendering, rendered in renderings.items()
        for where, text in _exposed_text(rendered)
        if URL_WITH_PASSWORD.search(text)
    ]
    assert not hits, hits


def test_an_existing_secret_renders_no_secret_of_ours(renderings: dict[str, Rendered]) -> None:
    # production.yaml: tracking.existingSecret, so the release holds no credential at all.
    secrets = renderings["dagma: production.yaml"].of_kind("Secret")
    assert [s["metadata"]["name"] for s in secrets] == ["dagma-mlflow-flask"]


def test_the_url_check_is_not_vacuous() -> None:
    assert URL_WITH_PASSWORD.search("postgresql+psycopg2://mlflow:pw@db:5432/mlflow")
    assert not URL_WITH_PASSWORD.search("http://mlflow:5000")


def test_no_command_line_expands_a_secret(renderings: dict[str, Rendered]) -> None:
    # The kubelet expands $(VAR) in command and args: a Secret's value would land in argv.
    hits = []
    for rendering, rendered in renderings.items():
        for doc in rendered.all():
            if doc["kind"] not in {"Deployment", "Job", "Pod", "StatefulSet"}:
                continue
            for container in container_spec.containers(doc):
                from_secrets = {
                    item["name"]
                    for item in container.get("env", [])
                    if "secretKeyRef" in (item.get("valueFrom") or {})
                }
                argv = " ".join([*container.get("command", []), *container.get("args", [])])
                hits += [
                    f"{rendering}: {doc['metadata']['name']}/{container['name']} $({name})"
                    for name in from_secrets
                    if f"$({name})" in argv
                ]
    assert not hits, hits
