"""The API both MLflow resources share, and the bookkeeping of the runs they open.

An asset is written once against :class:`MlflowRunRecorder`::

    tracking.start_run()
    tracking.log_param("n_estimators", 10)
    tracking.log_metric("rmse", 0.12)
    tracking.close_run()

or with ``with tracking.run():`` around the same calls. The tracking resource
(:mod:`.resource`) sends everything to MLflow; the stub (:mod:`.stub`) keeps it
in memory. Both check every input first (:mod:`.checks`), with the same errors, so
code that passes with tracking off does not fail when it is turned on.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dagster import (
    AssetExecutionContext,
    ConfigurableResource,
    DagsterEventType,
    DagsterExecutionInterruptedError,
    DagsterInvariantViolationError,
    InitResourceContext,
)
from pydantic import PrivateAttr

from dagma.tracking.checks import (
    check_artifact_file,
    check_artifact_path,
    check_key,
    check_metric,
    check_step,
    check_value,
)
from dagma.tracking.dagster_records import interrupted_status
from dagma.tracking.errors import TrackingInputError, TrackingUsageError

RunStatus = Literal["FINISHED", "FAILED", "KILLED"]
RUN_STATUSES: tuple[RunStatus, ...] = ("FINISHED", "FAILED", "KILLED")

FAILURE_TAG = "dagster.failure"
NOTE_TAG = "mlflow.note.content"  # the run's description in the MLflow UI
# The machine that ran the step or run worker; on Kubernetes its pod (a pod's host name).
HOST_TAG = "dagster.host"
MAX_FAILURE_TEXT = 4000


@dataclass
class OpenRun:
    """A run a resource started and has not closed yet."""

    run_id: str
    dagster_run_id: str
    step_key: str | None
    params: dict[str, str] = field(default_factory=dict)  # every param logged, to refuse changes


class MlflowRunRecorder(ConfigurableResource):
    """The API both resources share (annotate assets with it); subclasses say where data goes.

    Methods that log take ``run_id`` to address a run explicitly; by default they use
    the run this resource opened last.
    """

    experiment: str = "Default"
    _open_runs: dict[str, OpenRun] = PrivateAttr(default_factory=dict)

    # -- the public API ----------------------------------------------------

    def start_run(self, context: AssetExecutionContext | None = None) -> str:
        """Open a new run for this materialization and return its id.

        ``context`` defaults to the asset being executed (Dagster's
        ``AssetExecutionContext.get()``); outside an asset, pass it.
        """
        context = current_asset_context(context)
        run_id = self._start(context)
        step_key = context.get_step_execution_context().step.key
        self._open_runs[run_id] = OpenRun(run_id, context.run.run_id, step_key)
        return run_id

    def log_param(self, key: str, value: Any, run_id: str | None = None) -> None:
        """Record a parameter; logging a different value for the same key is refused."""
        self.log_params({key: value}, run_id=run_id)

    def log_params(self, params: Mapping[str, Any], run_id: str | None = None) -> None:
        """Record several parameters at once."""
        run = self._open_run(run_id)
        checked = {}
        for key, value in params.items():
            check_key("param", key)
            text = check_value("param", key, value)
            previous = run.params.get(key, checked.get(key))
            if previous is not None and previous != text:
                raise TrackingInputError(
                    f"Param {key!r} was already logged as {previous!r} in run {run.run_id}; "
                    f"MLflow does not allow changing it to {text!r}. Log the new value under "
                    "another key, or as a metric or tag."
                )
            checked[key] = text
        new = {k: v for k, v in checked.items() if k not in run.params}
        run.params.update(new)
        if new:
            self._record_params(run.run_id, new)

    def log_metric(
        self, key: str, value: float, step: int | None = None, run_id: str | None = None
    ) -> None:
        """Record one value of a metric, at ``step`` (default 0)."""
        self.log_metrics({key: value}, step=step, run_id=run_id)

    def log_metrics(
        self, metrics: Mapping[str, float], step: int | None = None, run_id: str | None = None
    ) -> None:
        """Record several metrics at one ``step`` (default 0)."""
        run = self._open_run(run_id)
        checked_step = check_step(step)
        checked = {key: check_metric(key, value) for key, value in metrics.items()}
        self._record_metrics(run.run_id, checked, checked_step)

    def set_tag(self, key: str, value: Any, run_id: str | None = None) -> None:
        """Set a tag on the run; a later value for the same key replaces the earlier one."""
        run = self._open_run(run_id)
        check_key("tag", key)
        self._record_tags(run.run_id, {key: check_value("tag", key, value)})

    def log_artifact(
        self, local_path: str | Path, artifact_path: str | None = None, run_id: str | None = None
    ) -> None:
        """Upload a local file (or a directory's files) to the run's artifacts."""
        run = self._open_run(run_id)
        check_artifact_path(artifact_path)
        path = check_artifact_file(local_path)
        self._record_artifact(run.run_id, path, artifact_path)

    def close_run(self, status: RunStatus = "FINISHED", run_id: str | None = None) -> str:
        """End the run with ``status`` and return its id.

        Called with ``"FAILED"`` while an exception is being handled, the exception's
        type and message are recorded on the run.
        """
        if status not in RUN_STATUSES:
            raise TrackingInputError(f"status={status!r} is not one of {', '.join(RUN_STATUSES)}.")
        error = sys.exc_info()[1] if status == "FAILED" else None
        failure = f"{type(error).__name__}: {error}" if error is not None else None
        return self._close(self._open_run(run_id).run_id, status, failure)

    def flush(self, run_id: str | None = None) -> None:
        """Send what is buffered for the run now; values are also sent when a batch is full,
        before an artifact upload and at close (the stub has nothing to send)."""
        self._open_run(run_id)

    @contextmanager
    def run(self, context: AssetExecutionContext | None = None) -> Iterator[str]:
        """Open a run, yield its id, and end it FINISHED, or FAILED if the block raises
        (KILLED if Dagster interrupted it for a cancel; FAILED if for anything else, such as
        its pod deleted)."""
        run_id = self.start_run(context)
        try:
            yield run_id
        except BaseException as error:
            if run_id in self._open_runs:
                status: RunStatus = "FAILED"
                if interrupted(error) and context is None:
                    status = "KILLED"
                elif interrupted(error):
                    status = interrupted_status(context.instance, context.run.run_id)
                self._close(run_id, status, f"{type(error).__name__}: {error}")
            raise
        if run_id in self._open_runs:
            self._close(run_id, "FINISHED", None)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        """Close runs the asset left open: FAILED (with Dagster's error) if its step failed."""
        for open_run in list(self._open_runs.values()):
            failure = _step_failure(context, open_run)
            self._close(open_run.run_id, "FINISHED" if failure is None else "FAILED", failure)

    # -- what subclasses implement ------------------------------------------

    def _start(self, context: AssetExecutionContext) -> str:
        raise NotImplementedError

    def _record_params(self, run_id: str, params: dict[str, str]) -> None:
        raise NotImplementedError

    def _record_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def _record_tags(self, run_id: str, tags: dict[str, str]) -> None:
        raise NotImplementedError

    def _record_artifact(self, run_id: str, path: Path, artifact_path: str | None) -> None:
        raise NotImplementedError

    def _end(self, run_id: str, status: RunStatus) -> None:
        raise NotImplementedError

    # -- shared bookkeeping -------------------------------------------------

    def _close(self, run_id: str, status: RunStatus, failure: str | None) -> str:
        """Record why a run failed, end it, and forget it even if ending raises."""
        try:
            if failure is not None:
                self._record_tags(run_id, failure_tags(failure))
            self._end(run_id, status)
        finally:
            self._open_runs.pop(run_id, None)
        return run_id

    def _open_run(self, run_id: str | None) -> OpenRun:
        if run_id is not None:
            if run_id not in self._open_runs:
                raise TrackingUsageError(
                    f"Run {run_id!r} is not open in this {type(self).__name__} (open: "
                    f"{', '.join(self._open_runs) or 'none'}): start it with start_run() first; "
                    "a closed run cannot be logged to."
                )
            return self._open_runs[run_id]
        if not self._open_runs:
            raise TrackingUsageError(
                f"{type(self).__name__} has no open run: call start_run() "
                "(or use `with tracking.run():`) before logging or closing."
            )
        return self._open_runs[next(reversed(self._open_runs))]


def current_asset_context(context: AssetExecutionContext | None) -> AssetExecutionContext:
    """``context``, or the context of the asset Dagster is executing right now."""
    if context is not None:
        return context
    try:
        current = AssetExecutionContext.get()
    except DagsterInvariantViolationError:
        current = None
    if not isinstance(current, AssetExecutionContext):
        raise TrackingUsageError(
            "start_run() without a context works only inside an executing Dagster asset; "
            "here there is none. Pass the asset's context: start_run(context)."
        )
    return current


def interrupted(error: BaseException) -> bool:
    """Whether ``error`` is Dagster stopping the step (a cancel, SIGTERM/SIGINT), not a fault."""
    return isinstance(error, (DagsterExecutionInterruptedError, KeyboardInterrupt))


def failure_tags(failure: str, note: str | None = None) -> dict[str, str]:
    """Why a run failed, as a tag and as the run's note (its description in the MLflow UI),
    after the run's own ``note`` if it has one (a parent's list of steps)."""
    text = failure if len(failure) <= MAX_FAILURE_TEXT else failure[:MAX_FAILURE_TEXT] + " ..."
    why = f"Failed in Dagster:\n\n```\n{text}\n```"
    return {FAILURE_TAG: text, NOTE_TAG: f"{note}\n\n{why}" if note else why}


def _step_failure(context: InitResourceContext, open_run: OpenRun) -> str | None:
    """The error Dagster recorded for the step that opened ``open_run``, None if it succeeded."""
    instance = context.instance
    if instance is None:
        # No event log to ask: an unclosed run is safest marked FAILED.
        return "unknown error: the run was left open and Dagster's event log is unavailable"
    records = instance.get_records_for_run(
        open_run.dagster_run_id, of_type=DagsterEventType.STEP_FAILURE
    ).records
    for record in records:
        entry = record.event_log_entry
        if entry.step_key != open_run.step_key:
            continue
        error = entry.dagster_event.step_failure_data.error if entry.dagster_event else None
        # Dagster wraps the asset's exception; the user's own is the cause.
        while (
            error is not None and error.cause is not None and error.cls_name.startswith("Dagster")
        ):
            error = error.cause
        # Dagster's message already starts with the exception's type: "ValueError: ...".
        return error.message.strip() if error is not None else "step failed (no error recorded)"
    return None
