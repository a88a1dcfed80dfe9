"""The front door of a Tracking server (dagma.mlflow_server): each answer classified, each raised
as its own error by the tracking resource, against real servers on 127.0.0.1.

The servers: the session's MLflow server, a closed port, a host that accepts connections and
never answers, and Python's own web server — plain, or asking for a login as an
authenticating proxy in front of MLflow would. A refused Host header needs MLflow's own
middleware: ``dagma doctor``'s tests prove that outcome of the same probe on a real server.
"""

import threading
import uuid
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from dagster import AssetExecutionContext, Failure, asset, materialize
from support.silent_server import silent_server

from dagma import (
    MlflowLoginRefusedError,
    MlflowRunRecorder,
    MlflowServerError,
    MlflowServerUnreachableError,
    MlflowTrackingResource,
    NotAnMlflowServerError,
)
from dagma.dev.local_mlflow import free_port
from dagma.mlflow_server import EXPERIMENT_BY_NAME, Outcome, probe


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[str]:
    """Python's web server on ``tmp_path``: the lookup's path is an HTML page (200, not JSON)."""
    page = tmp_path / EXPERIMENT_BY_NAME.lstrip("/")
    page.parent.mkdir(parents=True)
    page.write_text("<html><body>a web site, not MLflow</body></html>")
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    yield from _serve(handler)


@pytest.fixture
def login_proxy() -> Iterator[str]:
    """A server that answers every request 401 with a Basic challenge, as a proxy asking for
    a login does."""

    class AsksForLogin(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="mlflow"')
            self.end_headers()
            self.wfile.write(b"login required")

        def log_message(self, *args: object) -> None:
            pass

    yield from _serve(AsksForLogin)


def _serve(handler: type[BaseHTTPRequestHandler] | partial) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_found_and_missing_experiments(mlflow_server: str) -> None:
    found = probe(mlflow_server, "Default", timeout=5)
    assert found.outcome is Outcome.FOUND and found.status_code == 200
    assert found.experiment is not None and found.experiment["experiment_id"] == "0"
    missing = probe(mlflow_server, f"never-created-{uuid.uuid4().hex}", timeout=5)
    assert (missing.outcome, missing.status_code) == (Outcome.MISSING, 404)


def test_closed_port_and_silent_host_are_no_answer_worth_waiting_for() -> None:
    closed = probe(f"http://127.0.0.1:{free_port()}", "Default", timeout=2)
    assert (closed.outcome, closed.reason, closed.retryable) == (
        Outcome.NO_ANSWER,
        "connection refused",
        True,
    )
    with silent_server() as port:
        silent = probe(f"http://127.0.0.1:{port}", "Default", timeout=1)
    assert silent.outcome is Outcome.NO_ANSWER and silent.retryable
    assert silent.reason == (
        "no answer within 1 s (the connection was accepted, then nothing came back)"
    )


def test_a_web_server_that_is_not_mlflow_is_named_so(web_server: str) -> None:
    page = probe(web_server, "Default", timeout=5)
    assert (page.outcome, page.status_code) == (Outcome.NOT_MLFLOW, 200)  # HTML, not JSON
    not_found = probe(f"{web_server}/elsewhere", "Default", timeout=5)
    assert (not_found.outcome, not_found.status_code) == (Outcome.NOT_MLFLOW, 404)


def test_a_login_challenge_is_login_refused(login_proxy: str) -> None:
    answer = probe(login_proxy, "Default", timeout=5)
    assert (answer.outcome, answer.status_code) == (Outcome.LOGIN_REFUSED, 401)


def _error_of_first_run(uri: str) -> MlflowServerError:
    """What an asset catches when its run cannot start at ``uri``."""
    caught: list[MlflowServerError] = []

    @asset
    def catches_the_server_error(
        context: AssetExecutionContext, tracking: MlflowRunRecorder
    ) -> None:
        try:
            tracking.start_run(context)
        except MlflowServerError as error:
            caught.append(error)

    resource = MlflowTrackingResource(tracking_uri=uri, experiment=f"e-{uuid.uuid4().hex}")
    materialize([catches_the_server_error], resources={"tracking": resource})
    [error] = caught
    return error


def test_each_refusal_raises_its_own_error_naming_the_fix(
    web_server: str, login_proxy: str
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    unreachable = _error_of_first_run(closed)
    assert type(unreachable) is MlflowServerUnreachableError
    assert f"MLflow Tracking server at {closed} (from MLFLOW_TRACKING_URI) is not reachable " in (
        str(unreachable.description)
    )

    login = _error_of_first_run(login_proxy)
    assert type(login) is MlflowLoginRefusedError
    assert "refused the credentials (HTTP 401): set MLFLOW_TRACKING_USERNAME" in str(
        login.description
    )

    not_mlflow = _error_of_first_run(web_server)
    assert type(not_mlflow) is NotAnMlflowServerError
    assert f"answered HTTP 200 to {EXPERIMENT_BY_NAME}" in str(not_mlflow.description)
    assert "Is it an MLflow Tracking server?" in str(not_mlflow.description)
    # Dagster reports a Failure's message as the step's error as is.
    assert all(isinstance(e, Failure) for e in (unreachable, login, not_mlflow))
