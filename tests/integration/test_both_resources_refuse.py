"""The stub refuses what the tracking resource refuses, with the same error, row by row.

Each bad input runs inside a real asset against BOTH resources (tracking against the
session's MLflow server); each input row is also sent to MLflow's own client, to show
the refusal is MLflow's rule and not one of ours.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dagster import asset, materialize
from mlflow import MlflowClient

from dagma.defs.models.resources import (
    MlflowRunRecorder,
    MlflowStubResource,
    MlflowTrackingResource,
    TrackingInputError,
    TrackingUsageError,
)

MISSING = "/nonexistent/dagma/report.txt"


def _changed_param(tracking: MlflowRunRecorder) -> None:
    tracking.log_param("lr", 0.1)
    tracking.log_param("lr", 0.2)


def _changed_param_in_mlflow(client: MlflowClient, run_id: str) -> None:
    client.log_param(run_id, "lr", 0.1)
    client.log_param(run_id, "lr", 0.2)


# (row, what the asset does inside an open run, what MLflow's client is asked to do)
BAD_INPUTS: list[tuple[str, Callable[[Any], None], Callable[[MlflowClient, str], Any]]] = [
    ("missing artifact file",
     lambda t: t.log_artifact(MISSING), lambda c, r: c.log_artifact(r, MISSING)),
    ("text as a metric value",
     lambda t: t.log_metric("rmse", "high"), lambda c, r: c.log_metric(r, "rmse", "high")),
    ("None as a metric value",
     lambda t: t.log_metric("rmse", None), lambda c, r: c.log_metric(r, "rmse", None)),
    ("a list as a metric value",
     lambda t: t.log_metrics({"scores": [0.1, 0.2]}),
     lambda c, r: c.log_metric(r, "scores", [0.1, 0.2])),
    ("text as a step",
     lambda t: t.log_metric("loss", 1.0, step="3"),
     lambda c, r: c.log_metric(r, "loss", 1.0, step="3")),
    ("metric name with '!'",
     lambda t: t.log_metric("loss!", 1.0), lambda c, r: c.log_metric(r, "loss!", 1.0)),
    ("param name climbing out with '..'",
     lambda t: t.log_param("../x", 1), lambda c, r: c.log_param(r, "../x", 1)),
    ("param name of 251 characters",
     lambda t: t.log_params({"k" * 251: 1}), lambda c, r: c.log_param(r, "k" * 251, 1)),
    ("tag name with '?'",
     lambda t: t.set_tag("a?b", 1), lambda c, r: c.set_tag(r, "a?b", 1)),
    ("param changed within a run", _changed_param, _changed_param_in_mlflow),
    ("unknown run status",
     lambda t: t.close_run("DONE"), lambda c, r: c.set_terminated(r, "DONE")),
]  # fmt: skip

# (row, what the asset does; no run is open unless the row opens one)
MISUSES: list[tuple[str, Callable[[Any], None]]] = [
    ("logging with no open run", lambda t: t.log_param("a", 1)),
    ("a metric with no open run", lambda t: t.log_metric("a", 1.0)),
    ("an artifact with no open run", lambda t: t.log_artifact(__file__)),
    ("close_run with nothing open", lambda t: t.close_run()),
    ("logging to a run already closed",
     lambda t: t.log_metric("a", 1.0, run_id=t.close_run(run_id=t.start_run()))),
]  # fmt: skip


def _refusal(resource: MlflowRunRecorder, action: Callable[[Any], None], open_run: bool) -> str:
    """Run ``action`` in an asset; return the name of the error it raised."""

    @asset
    def misbehaves(tracking: MlflowRunRecorder) -> str:
        if open_run:
            tracking.start_run()
        try:
            action(tracking)
        except Exception as error:
            return f"{type(error).__name__}: {error}"
        return "accepted"

    return materialize([misbehaves], resources={"tracking": resource}).output_for_node("misbehaves")


@pytest.fixture(params=["stub", "tracking"])
def resource(request: pytest.FixtureRequest, mlflow_server: str) -> MlflowRunRecorder:
    if request.param == "stub":
        return MlflowStubResource()
    return MlflowTrackingResource(tracking_uri=mlflow_server, experiment="refusals")


@pytest.mark.parametrize(("row", "action", "in_mlflow"), BAD_INPUTS, ids=[r[0] for r in BAD_INPUTS])
def test_bad_input_is_refused_by_both_resources_as_mlflow_refuses_it(
    row: str,
    action: Callable[[Any], None],
    in_mlflow: Callable[[MlflowClient, str], Any],
    resource: MlflowRunRecorder,
    client: MlflowClient,
) -> None:
    outcome = _refusal(resource, action, open_run=True)
    assert outcome.startswith(f"{TrackingInputError.__name__}: "), outcome
    # MLflow's own client refuses the same thing (the tracking resource refuses it earlier,
    # at the call, because it sends values in batches later).
    experiment = client.get_experiment_by_name("refusals")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("refusals")
    run_id = client.create_run(experiment_id).info.run_id
    with pytest.raises(Exception):  # noqa: B017 - MlflowException, or OSError for the file
        in_mlflow(client, run_id)


@pytest.mark.parametrize(("row", "action"), MISUSES, ids=[r[0] for r in MISUSES])
def test_misuse_is_refused_by_both_resources(
    row: str, action: Callable[[Any], None], resource: MlflowRunRecorder
) -> None:
    outcome = _refusal(resource, action, open_run=False)
    assert outcome.startswith(f"{TrackingUsageError.__name__}: "), outcome
    assert "start_run()" in outcome  # the fix is in the message


def test_start_run_outside_an_asset_asks_for_the_context(resource: MlflowRunRecorder) -> None:
    with pytest.raises(TrackingUsageError, match=r"Pass the asset's context: start_run\(context\)"):
        resource.start_run()


def test_missing_artifact_message_names_the_file(resource: MlflowRunRecorder) -> None:
    outcome = _refusal(resource, lambda t: t.log_artifact(Path(MISSING)), open_run=True)
    assert f"Artifact {MISSING!r} does not exist" in outcome
