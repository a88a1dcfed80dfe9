"""A run that starts before its MLflow server answers waits up to MLFLOW_SERVER_WAIT_SECONDS.

In the cluster a run can start while the MLflow pod restarts (11-16 s: a `helm upgrade`, a
drained node, a deleted pod); charts/dagma gives run pods a 60 s wait. Locally the wait is 0, so
a wrong URI under `make demo`/`dagster dev` still fails at once. Real servers on 127.0.0.1: an
MLflow server (dagma.dev.local_mlflow) started after the run, a closed port, and a server that
answers HTTP 503 (an answer, which is never waited out).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize
from dagster._core.execution.execution_result import ExecutionResult
from mlflow import MlflowClient

from dagma.defs.train_model import train_model_stub
from dagma.dev import local_mlflow
from dagma.settings import load_settings
from dagma.tracking.from_env import mlflow_resource_for

WAITING = "not answering yet"
SERVER_STARTS_AFTER_SECONDS = 3  # the run is under way (and refused) before the server starts


def _materialize(uri: str, env: dict[str, str]) -> tuple[ExecutionResult, list[str]]:
    """``train_model_stub`` with the resource ``env`` gives; the result and the run's log lines."""
    settings = load_settings(
        {"MLFLOW_USE_TRACKING": "true", "MLFLOW_TRACKING_URI": uri, **env}
        | {"MLFLOW_EXPERIMENT": f"wait-{uuid.uuid4().hex[:8]}"}
    )
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [train_model_stub],
            resources={"tracking": mlflow_resource_for(settings)},
            instance=instance,
            raise_on_error=False,
        )
        records = instance.get_records_for_run(result.run_id).records
        lines = [r.event_log_entry.user_message for r in records]
    return result, lines


def _failure_text(result: ExecutionResult) -> str:
    [failure] = result.get_step_failure_events()
    return failure.step_failure_data.error.to_string()


@pytest.fixture
def late_server(tmp_path: Path) -> Iterator[str]:
    """The URL of an MLflow server that starts a few seconds from now, on a free port."""
    port = local_mlflow.free_port()
    started: list[local_mlflow.LocalMlflowServer] = []

    def start_later() -> None:
        time.sleep(SERVER_STARTS_AFTER_SECONDS)
        started.append(local_mlflow.start(tmp_path / "mlflow", port=port))

    starter = threading.Thread(target=start_later, daemon=True)
    starter.start()
    yield f"http://127.0.0.1:{port}"
    starter.join(timeout=120)
    for server in started:
        server.stop()


@pytest.fixture
def answers_503() -> Iterator[tuple[str, list[str]]]:
    """A server that answers every request with HTTP 503; the paths it was asked for."""
    asked: list[str] = []

    class Unavailable(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            asked.append(self.path)
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b"upstream connect error")

        def log_message(self, *args: object) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", asked
    server.shutdown()
    server.server_close()


def test_a_run_that_starts_before_the_server_waits_for_it_and_is_recorded(late_server: str) -> None:
    # 120 s, not the chart's 60: a loaded test machine may take longer to start MLflow.
    result, lines = _materialize(late_server, {"MLFLOW_SERVER_WAIT_SECONDS": "120"})
    assert result.success, _failure_text(result)
    waited = [line for line in lines if WAITING in line]
    assert waited == [
        f"MLflow Tracking server at {late_server} (from MLFLOW_TRACKING_URI) not answering yet "
        "(connection refused); waiting up to 120 s (MLFLOW_SERVER_WAIT_SECONDS)"
    ]
    # Read back from the server: the run is complete, with what the asset logged.
    run_id = result.output_for_node("train_model_stub")["run_id"]
    client = MlflowClient(late_server)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"n_estimators": "10"}
    assert run.data.metrics == {"rmse": 0.123}
    assert [a.path for a in client.list_artifacts(run_id)] == ["train_summary.txt"]


def test_by_default_a_server_not_up_yet_fails_the_run_without_waiting() -> None:
    uri = f"http://127.0.0.1:{local_mlflow.free_port()}"
    result, lines = _materialize(uri, {})
    assert not result.success
    message = _failure_text(result)
    assert (
        f"MLflow Tracking server at {uri} (from MLFLOW_TRACKING_URI) is not reachable "
        "(connection refused). Start the server or correct MLFLOW_TRACKING_URI" in message
    )
    assert not any(WAITING in line for line in lines)


def test_a_server_that_never_answers_fails_the_run_after_the_wait_naming_the_setting() -> None:
    uri = f"http://127.0.0.1:{local_mlflow.free_port()}"
    result, lines = _materialize(uri, {"MLFLOW_SERVER_WAIT_SECONDS": "3"})
    assert not result.success
    message = _failure_text(result)
    assert (
        f"MLflow Tracking server at {uri} (from MLFLOW_TRACKING_URI) is not reachable "
        "(connection refused) after waiting 3 s (MLFLOW_SERVER_WAIT_SECONDS; raise it" in message
    )
    assert "MLFLOW_USE_TRACKING=false" in message
    assert sum(WAITING in line for line in lines) == 1
    assert result.get_asset_materialization_events() == []  # never a fallback to the stub


def test_an_http_answer_is_never_waited_out(answers_503: tuple[str, list[str]]) -> None:
    uri, asked = answers_503
    result, lines = _materialize(uri, {"MLFLOW_SERVER_WAIT_SECONDS": "30"})
    assert not result.success
    message = _failure_text(result)
    assert "answered HTTP 503" in message and "after waiting" not in message
    assert not any(WAITING in line for line in lines)
    assert len(asked) == 1  # asked once: no retry of an answer
