"""Runs never stay RUNNING, and a missing server fails fast with a message people can act on."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow as mlflow_module
import pytest
from dagster import AssetExecutionContext, DagsterInstance, asset, materialize
from mlflow import MlflowClient

from dagma import MlflowRunRecorder, MlflowTrackingResource
from dagma.dev.local_mlflow import free_port


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


def _run_id(instance: DagsterInstance, result, node: str) -> str:
    """The MLflow run id the resource announced in the step's event log."""
    for record in instance.get_records_for_run(result.run_id).records:
        entry = record.event_log_entry
        if entry.step_key == node and entry.user_message.startswith("MLflow run "):
            return entry.user_message.split()[2]
    raise AssertionError(f"no MLflow run announced by step {node}")


def _failure_text(result) -> str:
    [failure] = result.get_step_failure_events()
    return failure.step_failure_data.error.to_string()


def test_asset_exception_marks_run_failed(
    tracking: MlflowTrackingResource, client: MlflowClient, instance: DagsterInstance
) -> None:
    @asset
    def breaks_midway(context: AssetExecutionContext, tracking: MlflowRunRecorder) -> None:
        with tracking.run(context):
            tracking.log_param("stage", "before the error")
            raise ValueError("training diverged")

    result = materialize(
        [breaks_midway], resources={"tracking": tracking}, instance=instance, raise_on_error=False
    )
    assert not result.success
    run = client.get_run(_run_id(instance, result, "breaks_midway"))
    assert run.info.status == "FAILED"
    assert run.data.params == {"stage": "before the error"}
    # Why it failed, on the run itself: a tag and the run's note (its UI description).
    assert run.data.tags["dagster.failure"] == "ValueError: training diverged"
    assert "ValueError: training diverged" in run.data.tags["mlflow.note.content"]


def test_run_left_open_by_a_raising_asset_is_closed_failed_at_teardown(
    tracking: MlflowTrackingResource, client: MlflowClient, instance: DagsterInstance
) -> None:
    @asset
    def forgets_to_close(context: AssetExecutionContext, tracking: MlflowRunRecorder) -> None:
        tracking.start_run(context)
        raise RuntimeError("no close_run after this")

    result = materialize(
        [forgets_to_close],
        resources={"tracking": tracking},
        instance=instance,
        raise_on_error=False,
    )
    run = client.get_run(_run_id(instance, result, "forgets_to_close"))
    assert run.info.status == "FAILED"
    # Closed at teardown: the reason comes from the step failure in Dagster's event log.
    assert run.data.tags["dagster.failure"] == "RuntimeError: no close_run after this"
    assert "RuntimeError: no close_run after this" in run.data.tags["mlflow.note.content"]


def test_close_run_failed_inside_except_records_the_exception(
    tracking: MlflowTrackingResource, client: MlflowClient
) -> None:
    @asset
    def handles_its_error(context: AssetExecutionContext, tracking: MlflowRunRecorder) -> str:
        run_id = tracking.start_run()
        try:
            raise KeyError("feature 'age' missing")
        except KeyError:
            tracking.close_run("FAILED")
        return run_id

    result = materialize([handles_its_error], resources={"tracking": tracking})
    run = client.get_run(result.output_for_node("handles_its_error"))
    assert run.info.status == "FAILED"
    assert run.data.tags["dagster.failure"] == "KeyError: \"feature 'age' missing\""


def test_finished_runs_carry_no_failure_tag(
    tracking: MlflowTrackingResource, client: MlflowClient
) -> None:
    @asset
    def succeeds(context: AssetExecutionContext, tracking: MlflowRunRecorder) -> str:
        with tracking.run() as run_id:
            tracking.log_metric("loss", 0.1)
        return run_id

    result = materialize([succeeds], resources={"tracking": tracking})
    run = client.get_run(result.output_for_node("succeeds"))
    assert run.info.status == "FINISHED"
    assert "dagster.failure" not in run.data.tags


def test_run_left_open_by_a_succeeding_asset_is_closed_finished(
    tracking: MlflowTrackingResource, client: MlflowClient, instance: DagsterInstance
) -> None:
    @asset
    def succeeds_unclosed(context: AssetExecutionContext, tracking: MlflowRunRecorder) -> int:
        tracking.start_run(context)
        tracking.log_metric("loss", 0.5)
        return 1

    @asset
    def fails_later(succeeds_unclosed: int) -> None:
        raise RuntimeError("a different step fails")

    result = materialize(
        [succeeds_unclosed, fails_later],
        resources={"tracking": tracking},
        instance=instance,
        raise_on_error=False,
    )
    # Only the failing step's runs are FAILED; this step succeeded.
    assert client.get_run(_run_id(instance, result, "succeeds_unclosed")).info.status == "FINISHED"


def test_direct_mlflow_calls_land_in_the_resources_run(
    tracking: MlflowTrackingResource, client: MlflowClient
) -> None:
    @asset
    def uses_mlflow_directly(context: AssetExecutionContext, tracking: MlflowRunRecorder) -> str:
        with tracking.run(context) as run_id:
            mlflow_module.log_param("from_fluent_api", "yes")
            mlflow_module.set_tag("autolog_like", "1")
            assert mlflow_module.active_run().info.run_id == run_id
        assert mlflow_module.active_run() is None  # closing the run ends the active run too
        return run_id

    result = materialize([uses_mlflow_directly], resources={"tracking": tracking})
    run = client.get_run(result.output_for_node("uses_mlflow_directly"))
    assert run.data.params == {"from_fluent_api": "yes"}
    assert run.data.tags["autolog_like"] == "1"
    assert run.info.status == "FINISHED"


def test_two_assets_in_one_process_never_share_a_run(
    tracking: MlflowTrackingResource, client: MlflowClient
) -> None:
    @asset
    def model_a(context: AssetExecutionContext, tracking: MlflowRunRecorder) -> str:
        with tracking.run(context) as run_id:
            tracking.log_param("model", "a")
        return run_id

    @asset
    def model_b(context: AssetExecutionContext, tracking: MlflowRunRecorder, model_a: str) -> str:
        with tracking.run(context) as run_id:
            tracking.log_param("model", "b")
            mlflow_module.log_metric("b_only", 2.0)
        return run_id

    result = materialize([model_a, model_b], resources={"tracking": tracking})
    run_a = client.get_run(result.output_for_node("model_a"))
    run_b = client.get_run(result.output_for_node("model_b"))
    assert run_a.info.run_id != run_b.info.run_id
    assert (run_a.data.params, run_a.data.metrics) == ({"model": "a"}, {})
    assert (run_b.data.params, run_b.data.metrics) == ({"model": "b"}, {"b_only": 2.0})
    assert (run_a.info.run_name, run_b.info.run_name) == ("model_a", "model_b")


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A port that accepts TCP connections but never answers, like a hung host."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("kind", ["closed port", "silent server"])
def test_unreachable_server_fails_within_ten_seconds_with_the_fix(
    kind: str, silent_server: str
) -> None:
    from dagma.defs.train_model import train_model_stub

    uri = silent_server if kind == "silent server" else f"http://127.0.0.1:{free_port()}"
    resource = MlflowTrackingResource(tracking_uri=uri, tracking_uri_source="MLFLOW_TRACKING_URI")
    started = time.monotonic()
    result = materialize([train_model_stub], resources={"tracking": resource}, raise_on_error=False)
    elapsed = time.monotonic() - started
    assert not result.success
    assert elapsed <= 10, f"took {elapsed:.1f}s to fail"
    message = _failure_text(result)
    assert f"MLflow Tracking server at {uri} (from MLFLOW_TRACKING_URI) is not reachable" in message
    assert "MLFLOW_USE_TRACKING=false" in message
    # Never a silent fallback to the stub.
    assert result.get_asset_materialization_events() == []


def test_missing_mlflow_client_names_the_package_to_install() -> None:
    script = (
        "import sys; sys.modules['mlflow'] = None\n"
        "from dagma.tracking.resource import import_mlflow\n"
        "import_mlflow()\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode != 0
    assert "pip install mlflow-skinny" in result.stderr
    assert "MLFLOW_USE_TRACKING=false" in result.stderr


def test_unreachable_server_message_comes_first_in_dagsters_cli_output(tmp_path: Path) -> None:
    # What a user reads after `dagster asset materialize` against a server that is down.
    uri = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_USE_TRACKING="true", MLFLOW_TRACKING_URI=uri, DAGSTER_HOME=str(tmp_path))
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize",
        "-m", "dagma.definitions", "--select", "train_model_stub",
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    message = f"MLflow Tracking server at {uri} (from MLFLOW_TRACKING_URI) is not reachable"
    # The step's error starts with the message and its fix, not with a Dagster wrapper.
    assert "STEP_FAILURE" in output, output[-3000:]
    after_failure = output.split("STEP_FAILURE", 1)[1].strip().splitlines()
    first_error = next(line for line in after_failure[1:] if line.strip())
    assert message in first_error, output[-3000:]
    assert "MLFLOW_USE_TRACKING=false" in first_error
    # Once in the run worker's warning (no parent run, the steps still run), once for the
    # step, once in Dagster's run summary; no chained copies of the cause.
    assert "No MLflow parent run for this Dagster run" in output, output[-3000:]
    assert output.count(message) == 3, output[-3000:]
    assert "The above exception was" not in output
    assert "DagsterExecutionStepExecutionError" not in output
    assert "Max retries exceeded" not in output
