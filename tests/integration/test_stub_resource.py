"""Tracking off: the stub needs no server, opens no socket, and keeps what was logged."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from dagster import DagsterInstance, asset, materialize

from dagma import MlflowRunRecorder, MlflowStubResource
from dagma.defs.train_model import train_model_stub


def test_stub_keeps_what_the_asset_logged_for_users_tests() -> None:
    stub = MlflowStubResource()
    result = materialize([train_model_stub], resources={"tracking": stub})
    output = result.output_for_node("train_model_stub")
    [run] = stub.runs.values()
    assert output == {"run_id": run.run_id, "status": "FINISHED", "artifact": "train_summary.txt"}
    assert run.run_id.startswith("stub-")
    assert run.run_name == "train_model_stub"
    assert (run.params, run.metrics) == ({"n_estimators": "10"}, {"rmse": 0.123})
    assert run.status == "FINISHED"
    [skipped] = run.skipped_artifacts
    assert skipped.endswith("train_summary.txt")
    assert not skipped.startswith(os.getcwd())  # written in a temporary directory


def test_stub_says_once_in_the_event_log_that_tracking_is_off() -> None:
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [train_model_stub], resources={"tracking": MlflowStubResource()}, instance=instance
        )
        messages = [
            r.event_log_entry.user_message
            for r in instance.get_records_for_run(result.run_id).records
        ]
    about_tracking = [m for m in messages if "tracking is off" in m]
    assert len(about_tracking) == 1
    assert "MLFLOW_USE_TRACKING=true" in about_tracking[0]


def test_stub_run_ids_are_unique_per_materialization() -> None:
    stub = MlflowStubResource()
    for _ in range(3):
        materialize([train_model_stub], resources={"tracking": stub})
    assert len(stub.runs) == 3


def test_default_code_location_materializes_without_opening_a_socket() -> None:
    # The whole default path, tracking unset, in a fresh interpreter that reports any connect.
    script = textwrap.dedent(
        """
        import sys
        from dagma.definitions import defs
        connects = []
        sys.addaudithook(lambda event, args: event == "socket.connect" and connects.append(args))
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process()
        assert result.success
        print("connects:", connects)
        print("mlflow imported:", "mlflow" in sys.modules)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "connects: []" in result.stdout
    assert "mlflow imported: False" in result.stdout


def test_stub_takes_the_seed_api_tags_and_dict_forms() -> None:
    @asset
    def seed_style(tracking: MlflowRunRecorder) -> str:
        run_id = tracking.start_run()  # no context: the stub finds it as the tracking one does
        tracking.set_tag("stage", "champion")
        tracking.log_params({"lr": 0.1})
        tracking.log_metrics({"loss": 0.3}, step=1)
        tracking.log_metric("loss", 0.2, step=2)
        tracking.close_run()
        return run_id

    stub = MlflowStubResource()
    result = materialize([seed_style], resources={"tracking": stub})
    run = stub.runs[result.output_for_node("seed_style")]
    assert (run.status, run.run_name, run.tags) == ("FINISHED", "seed_style", {"stage": "champion"})
    assert (run.params, run.metrics) == ({"lr": "0.1"}, {"loss": 0.2})
    assert run.metric_history == {"loss": [(1, 0.3), (2, 0.2)]}


def test_stub_records_why_a_run_failed() -> None:
    @asset
    def breaks(tracking: MlflowRunRecorder) -> None:
        with tracking.run():
            raise ValueError("training diverged")

    stub = MlflowStubResource()
    assert not materialize([breaks], resources={"tracking": stub}, raise_on_error=False).success
    [run] = stub.runs.values()
    assert run.status == "FAILED"
    assert run.tags["dagster.failure"] == "ValueError: training diverged"
