"""How the release test reads the NOTES' port-forwards, checked without a cluster.

The NOTES are charts/dagma's own, rendered by Helm's engine with values/local.yaml (what
``helm get notes`` prints after the release test's install); a taken port stops the test
before kubectl runs, naming the port and what to stop.
"""

from __future__ import annotations

import shlex
import socket

import pytest
from support.release_ui import DAGSTER_UI, MLFLOW_UI, NotesForward, forwarding, notes_forwards
from support.umbrella import render_umbrella, values_paths


def test_the_notes_give_a_port_forward_and_an_address_for_each_ui() -> None:
    notes = render_umbrella(values_files=values_paths(["local.yaml"])).notes
    forwards = notes_forwards(notes)
    dagster, mlflow = forwards[DAGSTER_UI], forwards[MLFLOW_UI]
    assert shlex.split(dagster.command) == [
        "kubectl", "--namespace", "dagma",
        "port-forward", "svc/dagma-dagster-webserver", "3000:3000",
    ]  # fmt: skip
    assert (dagster.local_port, dagster.url) == (3000, "http://localhost:3000")
    assert shlex.split(mlflow.command)[3:] == ["port-forward", "svc/mlflow", "5000:5000"]
    assert (mlflow.local_port, mlflow.url) == (5000, "http://localhost:5000")


def test_notes_without_a_ui_are_refused_with_the_notes() -> None:
    notes = "1. Dagster UI\n     kubectl port-forward svc/web 3000:80\n   then open http://localhost:3000\n"
    with pytest.raises(AssertionError, match=r"no port-forward for \{'MLflow UI'\}"):
        notes_forwards(notes)


def test_a_taken_local_port_fails_naming_the_port_and_what_to_stop() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        forward = NotesForward(DAGSTER_UI, f"kubectl port-forward svc/web {port}:80", "http://x")
        # No layout needed: the check comes before kubectl is started.
        with pytest.raises(AssertionError) as error, forwarding(forward, layout=None):  # type: ignore[arg-type]
            pass
    message = str(error.value)
    assert f"local port {port} is taken" in message
    assert "Stop what listens there" in message and "kubectl port-forward" in message
