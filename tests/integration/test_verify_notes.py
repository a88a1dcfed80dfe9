"""The chart's NOTES end with the ``dagma verify`` line, and that line is a valid command."""

from __future__ import annotations

import shlex

from support.umbrella import render_umbrella

from dagma.cli import parser

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
