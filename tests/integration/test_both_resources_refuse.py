"""The stub refuses what the tracking resource refuses, with the same error, row by row.

Each bad input runs inside a real asset against BOTH resources (tracking against the
session's MLflow server): the error names the offending value, and what the run holds is read
back (nothing of the refused call; no artifact byte anywhere on the server's disk). Each row
MLflow refuses too is also sent to MLflow's own client, to show the rule is MLflow's; the rows
it accepts (NaN and inf metrics, a FIFO) dagma refuses on purpose.
"""

import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from dagster import asset, materialize
from mlflow import MlflowClient

from dagma import (
    MlflowRunRecorder,
    MlflowStubResource,
    MlflowTrackingResource,
    TrackingInputError,
    TrackingUsageError,
)

MISSING = "/nonexistent/dagma/report.txt"
# Files the artifact rows upload (made by the `scratch` fixture), named uniquely so a search of
# the server's whole data directory finds any byte of them that was written anyway.
SCRATCH = Path(tempfile.gettempdir()) / f"dagma-refusals-{uuid.uuid4().hex[:8]}"
REPORT = SCRATCH / f"report-{uuid.uuid4().hex[:8]}.txt"
LOCKED = SCRATCH / f"locked-{uuid.uuid4().hex[:8]}.txt"  # mode 000, read as an unprivileged user
FIFO = SCRATCH / "pipe"  # a reader of it blocks until something writes
NOBODY = 65534


@contextmanager
def unprivileged() -> Iterator[None]:
    """The block as an unprivileged user when the test runs as root (who may read mode 000)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)


def _changed_param(tracking: MlflowRunRecorder) -> None:
    tracking.log_param("lr", 0.1)
    tracking.log_param("lr", 0.2)


def _changed_param_in_mlflow(client: MlflowClient, run_id: str) -> None:
    client.log_param(run_id, "lr", 0.1)
    client.log_param(run_id, "lr", 0.2)


def _locked_artifact(tracking: MlflowRunRecorder) -> None:
    with unprivileged():
        tracking.log_artifact(LOCKED)


def _locked_artifact_in_mlflow(client: MlflowClient, run_id: str) -> None:
    with unprivileged():
        client.log_artifact(run_id, str(LOCKED))


# (row, what the asset does inside an open run, what MLflow's client is asked to do, or None
# where MLflow accepts it and dagma refuses on purpose, what the error must name)
BAD_INPUTS: list[
    tuple[str, Callable[[Any], None], Callable[[MlflowClient, str], Any] | None, str]
] = [
    ("missing artifact file",
     lambda t: t.log_artifact(MISSING), lambda c, r: c.log_artifact(r, MISSING), MISSING),
    ("unreadable artifact file (mode 000)",
     _locked_artifact, _locked_artifact_in_mlflow, "chmod a+r"),
    # MLflow's client would open it and wait for a writer forever.
    ("a FIFO as the artifact", lambda t: t.log_artifact(FIFO), None, "FIFO"),
    ("artifact_path climbing out with '..'",
     lambda t: t.log_artifact(REPORT, artifact_path="../x"),
     lambda c, r: c.log_artifact(r, str(REPORT), artifact_path="../x"), "'../x'"),
    ("artifact_path climbing out through a folder",
     lambda t: t.log_artifact(REPORT, artifact_path="a/../../b"),
     lambda c, r: c.log_artifact(r, str(REPORT), artifact_path="a/../../b"), "'a/../../b'"),
    ("absolute artifact_path",
     lambda t: t.log_artifact(REPORT, artifact_path="/tmp/escaped"),
     lambda c, r: c.log_artifact(r, str(REPORT), artifact_path="/tmp/escaped"),
     "'/tmp/escaped'"),
    ("text as a metric value",
     lambda t: t.log_metric("rmse", "high"), lambda c, r: c.log_metric(r, "rmse", "high"),
     "'rmse'"),
    ("None as a metric value",
     lambda t: t.log_metric("rmse", None), lambda c, r: c.log_metric(r, "rmse", None), "'rmse'"),
    ("a list as a metric value",
     lambda t: t.log_metrics({"scores": [0.1, 0.2]}),
     lambda c, r: c.log_metric(r, "scores", [0.1, 0.2]), "'scores'"),
    # MLflow keeps NaN, and stores +/-inf as +/-1.8e308.
    ("NaN as a metric value", lambda t: t.log_metric("rmse", math.nan), None, "'rmse'"),
    ("inf as a metric value", lambda t: t.log_metric("rmse", math.inf), None, "'rmse'"),
    ("-inf as a metric value",
     lambda t: t.log_metrics({"loss": -math.inf}), None, "'loss'"),
    ("'nan' text as a metric value", lambda t: t.log_metric("rmse", "nan"), None, "'rmse'"),
    ("text as a step",
     lambda t: t.log_metric("loss", 1.0, step="3"),
     lambda c, r: c.log_metric(r, "loss", 1.0, step="3"), "step='3'"),
    ("metric name with '!'",
     lambda t: t.log_metric("loss!", 1.0), lambda c, r: c.log_metric(r, "loss!", 1.0), "'loss!'"),
    ("metric name climbing out with '..'",
     lambda t: t.log_metric("../loss", 1.0), lambda c, r: c.log_metric(r, "../loss", 1.0),
     "'../loss'"),
    ("param name climbing out with '..'",
     lambda t: t.log_param("../x", 1), lambda c, r: c.log_param(r, "../x", 1), "'../x'"),
    ("param name of 251 characters",
     lambda t: t.log_params({"k" * 251: 1}), lambda c, r: c.log_param(r, "k" * 251, 1), "251"),
    # MLflow cuts these to 6000 and 8000 characters with only a warning.
    ("param value over MLflow's 6000 characters",
     lambda t: t.log_param("notes", "x" * 6001), None, "'notes'"),
    ("tag value over MLflow's 8000 characters",
     lambda t: t.set_tag("notes", "x" * 8001), None, "'notes'"),
    ("tag name with '?'",
     lambda t: t.set_tag("a?b", 1), lambda c, r: c.set_tag(r, "a?b", 1), "'a?b'"),
    ("param changed within a run", _changed_param, _changed_param_in_mlflow, "'lr'"),
    ("unknown run status",
     lambda t: t.close_run("DONE"), lambda c, r: c.set_terminated(r, "DONE"), "'DONE'"),
]  # fmt: skip
# What a row may legitimately have recorded before its refused call.
KEPT_PARAMS = {"lr": "0.1"}

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
    """Run ``action`` in an asset; return the error it raised."""
    return _refusal_in_run(resource, action, open_run)[0]


def _refusal_in_run(
    resource: MlflowRunRecorder, action: Callable[[Any], None], open_run: bool = True
) -> tuple[str, str | None]:
    """Run ``action`` in an asset; return the error it raised and the run the asset opened."""

    @asset
    def misbehaves(tracking: MlflowRunRecorder) -> tuple[str, str | None]:
        run_id = tracking.start_run() if open_run else None
        try:
            action(tracking)
        except Exception as error:
            return f"{type(error).__name__}: {error}", run_id
        return "accepted", run_id

    result = materialize([misbehaves], resources={"tracking": resource})
    return result.output_for_node("misbehaves")


@pytest.fixture(scope="module", autouse=True)
def scratch() -> Iterator[None]:
    SCRATCH.mkdir()
    SCRATCH.chmod(0o755)  # an unprivileged user reaches the locked file and is refused by it
    REPORT.write_text("report\n")
    LOCKED.write_text("secret\n")
    LOCKED.chmod(0o000)
    os.mkfifo(FIFO)
    yield
    shutil.rmtree(SCRATCH)


@pytest.fixture(params=["stub", "tracking"])
def resource(request: pytest.FixtureRequest, mlflow_server: str) -> MlflowRunRecorder:
    if request.param == "stub":
        return MlflowStubResource()
    return MlflowTrackingResource(tracking_uri=mlflow_server, experiment="refusals")


@pytest.mark.parametrize(
    ("row", "action", "in_mlflow", "named"), BAD_INPUTS, ids=[r[0] for r in BAD_INPUTS]
)
def test_bad_input_is_refused_by_both_resources_and_nothing_is_half_written(
    row: str,
    action: Callable[[Any], None],
    in_mlflow: Callable[[MlflowClient, str], Any] | None,
    named: str,
    resource: MlflowRunRecorder,
    client: MlflowClient,
    mlflow_artifacts_dir: Path,
) -> None:
    outcome, run_id = _refusal_in_run(resource, action)
    assert outcome.startswith(f"{TrackingInputError.__name__}: "), outcome
    assert named in outcome, f"the error does not name {named}: {outcome}"
    # Nothing of the refused call was recorded, read back from where it would be.
    if isinstance(resource, MlflowStubResource):
        stub_run = resource.runs[run_id]
        recorded = (stub_run.params, stub_run.metrics, stub_run.skipped_artifacts)
    else:
        run = client.get_run(run_id)
        recorded = (run.data.params, run.data.metrics, client.list_artifacts(run_id))
        assert not set(run.data.tags) & {"a?b"}
    params, metrics, artifacts = recorded
    assert params.items() <= KEPT_PARAMS.items() and metrics == {} and not artifacts
    written = [
        path for path in mlflow_artifacts_dir.parent.parent.rglob("*")
        if path.name in (REPORT.name, LOCKED.name) and not path.is_relative_to(SCRATCH)
    ]  # fmt: skip
    assert written == [], "an artifact reached the server's disk"


@pytest.mark.parametrize(
    ("row", "in_mlflow"),
    [(r[0], r[2]) for r in BAD_INPUTS if r[2] is not None],
    ids=[r[0] for r in BAD_INPUTS if r[2] is not None],
)
def test_mlflow_itself_refuses_the_same_rows(
    row: str, in_mlflow: Callable[[MlflowClient, str], Any], client: MlflowClient
) -> None:
    # MLflow's own client refuses it too (the resources refuse it earlier, at the call, because
    # the tracking resource sends values in batches later): the rule is MLflow's, not ours.
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
