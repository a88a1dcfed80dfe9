"""The chart's NOTES end with the ``dagma verify`` line, and that line is a valid command."""

from __future__ import annotations

import shlex

from support.dagster_manifests import webserver_name
from support.umbrella import effective_values, render_umbrella

from dagma.cli import endpoints, parser

VERIFY = "dagma verify --dagster-url http://localhost:3000 --mlflow-url http://localhost:5000"


def test_notes_end_with_the_verify_command_for_both_port_forwards() -> None:
    notes = render_umbrella().notes
    assert notes.rstrip().splitlines()[-1].strip() == VERIFY
    assert "port-forward svc/dagma-dagster-webserver 3000:" in notes
    assert "port-forward svc/mlflow 5000:5000" in notes
    args = parser().parse_args(shlex.split(VERIFY)[1:])
    assert (args.command, args.dagster_url, args.mlflow_url) == (
        "verify",
        "http://localhost:3000",
        "http://localhost:5000",
    )


def test_notes_say_how_to_run_doctor_in_the_code_locations_pod() -> None:
    notes = render_umbrella().notes
    doctor = (
        'kubectl --namespace dagma exec "$(kubectl --namespace dagma get pod '
        '-l deployment=dagma-user-code -o name | head -n 1)" -- python -m dagma doctor'
    )
    assert doctor in notes


def test_notes_ask_for_the_login_when_mlflow_requires_one() -> None:
    values = {
        "mlflow": {"auth": {"enabled": True, "existingSecret": "mlflow-admin"}},
        "tracking": {"credentials": {"username": "admin", "password": "s3cret"}},
    }
    notes = render_umbrella(values).notes
    [index] = [i for i, row in enumerate(notes.splitlines()) if row.strip() == VERIFY]
    assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in notes.splitlines()[index + 1]


def test_verify_hints_forward_the_services_the_chart_renders() -> None:
    """``dagma verify``'s hints name the Services and ports of charts/dagma as installed
    (Dagster's webserver as the official chart computes it, MLflow's as rendered), forward
    the local port of the URL given, and match the NOTES' port-forwards at the defaults."""
    dagster = effective_values()["dagster"]
    assert webserver_name(dagster) == endpoints.DAGSTER_WEBSERVER_SERVICE
    service_port = int(dagster["dagsterWebserver"]["service"]["port"])
    assert service_port == endpoints.DAGSTER_WEBSERVER_SERVICE_PORT
    rendered = render_umbrella()
    mlflow = rendered.one("Service", endpoints.MLFLOW_SERVICE)
    assert [p["port"] for p in mlflow["spec"]["ports"]] == [endpoints.MLFLOW_SERVICE_PORT]
    for hint in (endpoints.webserver_hint(endpoints.DEFAULT_DAGSTER_URL),
                 endpoints.mlflow_hint(endpoints.DEFAULT_MLFLOW_URL)):  # fmt: skip
        forward = hint.split("port-forward: ")[1].split(";")[0]
        assert forward in rendered.notes, (forward, rendered.notes)
    assert f"3100:{service_port}" in endpoints.webserver_hint("http://127.0.0.1:3100")
    assert "5100:5000" in endpoints.mlflow_hint("http://localhost:5100")
