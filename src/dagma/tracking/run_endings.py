"""The daemon's sensor that ends the MLflow runs a Dagster run left RUNNING, whatever killed it.

A step or run worker SIGKILLed, a pod deleted or OOM-killed, a cancel, a run failed by
Dagster's run monitoring, an MLflow server down when the run ended: the processes that would
have ended their MLflow runs are gone. The sensor runs in the Dagster daemon, which none of
that stops. For every Dagster run that has ended since its last evaluation it reads what the
run recorded (:mod:`.dagster_records`: ids written when the runs were created, never a
search) and ends each MLflow run with no recorded end that MLflow still shows RUNNING:

- a step's run by the step's outcome: FINISHED if the step succeeded, FAILED if it failed;
  else by the Dagster run's: CANCELED -> KILLED, FAILURE -> FAILED, SUCCESS -> FINISHED;
- the parent by the Dagster run's status, the same way;

with the reason on the run (``dagster.failure`` and the run's note) and its end recorded, so
evaluating again changes nothing, and a run its own process ended is left as it is. When the
MLflow server does not answer, the Dagster run stays in the cursor and is tried again at the
next evaluation (every ``minimum_interval_seconds``) until it does. Each code location's
sensor looks only at the runs launched from its location, which its resource recorded.

Ship it in your ``Definitions`` beside the parent runs' executor::

    sensors=[mlflow_run_endings_sensor(tracking)]
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC

from dagster import (
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRecord,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from dagma.settings import HttpRequestSettings
from dagma.tracking import dagster_records
from dagma.tracking.dagster_records import PARENT, RecordedRun
from dagma.tracking.recorder import (
    FAILURE_TAG,
    NOTE_TAG,
    MlflowRunRecorder,
    RunStatus,
    failure_tags,
)

END_REASON_TAG = "dagma.end_reason"
ENDED_STATUSES = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]
BY_RUN_STATUS: dict[DagsterRunStatus, RunStatus] = {
    DagsterRunStatus.SUCCESS: "FINISHED",
    DagsterRunStatus.FAILURE: "FAILED",
    DagsterRunStatus.CANCELED: "KILLED",
}
RUNS_PER_EVALUATION = 50  # Dagster runs read per evaluation; the rest at the next one
MAX_PENDING = 200  # Dagster runs kept for a server that does not answer, oldest dropped first
FIRST_LOOK_BACK_SECONDS = 3600  # on its first evaluation, runs ended this long ago are included
# The sensor must finish inside Dagster's sensor timeout (60 s): one try per request, short.
ERROR_LINE_CHARS = 300  # of a step's error, in the reason; the whole error is Dagster's
SENSOR_REQUESTS = HttpRequestSettings(max_retries=0, backoff_factor=0, timeout_seconds=10)


@dataclass
class Cursor:
    """Runs updated after ``after`` are next; ``pending`` are ended runs MLflow missed."""

    after: float
    pending: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        if not text:
            return cls(after=time.time() - FIRST_LOOK_BACK_SECONDS)
        return cls(**json.loads(text))

    def dump(self) -> str:
        return json.dumps(asdict(self))


def mlflow_run_endings_sensor(
    tracking: MlflowRunRecorder,
    name: str = "dagma_mlflow_run_endings",
    minimum_interval_seconds: int = 10,
) -> SensorDefinition:
    """The sensor that ends, within about ``minimum_interval_seconds``, the MLflow runs of
    ended Dagster runs that are still RUNNING. Running by default; nothing to do (and no
    request) with the stub resource or when every run was ended by its own process."""

    @sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Ends the MLflow runs (parent and steps) that ended Dagster runs left "
        "RUNNING: a killed process, a deleted pod, a cancel, an unreachable server.",
    )
    def _sensor(context: SensorEvaluationContext) -> SkipReason:
        cursor = Cursor.parse(context.cursor)
        records = context.instance.get_run_records(
            RunsFilter(statuses=ENDED_STATUSES, updated_after=_utc(cursor.after)),
            limit=RUNS_PER_EVALUATION, order_by="update_timestamp", ascending=True,
        )  # fmt: skip
        if cursor.pending:
            records += context.instance.get_run_records(RunsFilter(run_ids=cursor.pending))
        ended, pending = [], []
        for record in _unique(records):
            if not _of_this_location(context, record):
                continue  # its own location's sensor (and MLflow server) ends its runs
            try:
                ended += end_left_runs(tracking, context.instance, record)
            except Exception as error:  # the server: try this run again next time
                context.log.warning(f"Run {record.dagster_run.run_id}: {error}")
                pending.append(record.dagster_run.run_id)
        if records:
            cursor.after = max(cursor.after, *(r.update_timestamp.timestamp() for r in records))
        cursor.pending = pending[-MAX_PENDING:]
        context.update_cursor(cursor.dump())
        return SkipReason(
            f"ended {len(ended)} MLflow run(s) left RUNNING: {', '.join(ended)}"
            if ended else "no MLflow run left RUNNING"
        )  # fmt: skip

    return _sensor


def end_left_runs(
    tracking: MlflowRunRecorder, instance: DagsterInstance, record: RunRecord
) -> list[str]:
    """End the MLflow runs the ended Dagster run left RUNNING; return their ids."""
    from mlflow.entities import RunTag

    from dagma.tracking.resource import MlflowTrackingResource

    dagster_run = record.dagster_run
    left = [
        run for run in dagster_records.recorded_runs(instance, dagster_run.run_id)
        if run.ended is None
    ]  # fmt: skip
    if not left or not isinstance(tracking, MlflowTrackingResource):
        return []
    outcomes = _step_outcomes(instance, dagster_run.run_id)
    end_time = int(record.end_time * 1000) if record.end_time else None
    ended = []
    with tracking.bounded_client(SENSOR_REQUESTS) as client:
        for run in left:
            current = client.get_run(run.run_id)
            if current.info.status == "RUNNING":
                status, reason = _ending(run, dagster_run.status, outcomes)
                tags = {END_REASON_TAG: reason}
                # A FAILED run keeps the asset's own error when it got through.
                if status != "FINISHED" and FAILURE_TAG not in current.data.tags:
                    note = current.data.tags.get(NOTE_TAG) if run.role == PARENT else None
                    tags.update(failure_tags(reason, note))
                client.log_batch(run.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
                client.set_terminated(run.run_id, status, end_time=end_time)
                ended.append(run.run_id)
                by = "by dagma's run-endings sensor"
            else:
                status = current.info.status
                by = "by its own process, as dagma's run-endings sensor found"
            dagster_records.record_ended(
                instance, dagster_run, run.step_key, run.run_id, run.role, status, by
            )
    return ended


def _ending(
    run: RecordedRun, dagster_status: DagsterRunStatus, outcomes: dict[str, str]
) -> tuple[RunStatus, str]:
    """The status a run left RUNNING gets, and why."""
    ended_as = f"Dagster run ended {dagster_status.value}"
    if run.role == PARENT or run.step_key not in outcomes:
        status = BY_RUN_STATUS[dagster_status]
        where = "while its steps ran" if run.role == PARENT else f"during step {run.step_key}"
        return status, f"{ended_as} {where}; ended by dagma (its process could not)"
    outcome = outcomes[run.step_key]
    status = "FINISHED" if outcome == "success" else "FAILED"
    return status, f"step {run.step_key} ended in {outcome}; {ended_as}; ended by dagma"


def _step_outcomes(instance: DagsterInstance, dagster_run_id: str) -> dict[str, str]:
    """``success`` or ``failure`` for each step of the run that got that far; a failure
    with the first line of Dagster's error, which names what killed a step whose own
    process could not report (on Kubernetes, its failed Job)."""
    outcomes = {}
    for event_type, outcome in (
        (DagsterEventType.STEP_SUCCESS, "success"),
        (DagsterEventType.STEP_FAILURE, "failure"),
    ):
        for record in instance.get_records_for_run(dagster_run_id, of_type=event_type).records:
            entry = record.event_log_entry
            if entry.step_key:
                outcomes[entry.step_key] = outcome + _error_line(entry.dagster_event)
    return outcomes


def _error_line(event: DagsterEvent | None) -> str:
    """`` (the error's first line)`` for a step failure that carries an error, else ``""``."""
    data = event.step_failure_data if event and event.is_step_failure else None
    if data is None or data.error is None:
        return ""
    lines = data.error.message.strip().splitlines()
    return f" ({lines[0][:ERROR_LINE_CHARS]})" if lines else ""


def _of_this_location(context: SensorEvaluationContext, record: RunRecord) -> bool:
    """Whether the Dagster run was launched from the sensor's code location (or either is
    unknown, as for a run executed in process)."""
    origin, here = record.dagster_run.remote_job_origin, context.code_location_origin
    if origin is None or here is None:
        return True
    return origin.location_name == here.location_name


def _unique(records: list[RunRecord]) -> list[RunRecord]:
    seen: dict[str, RunRecord] = {}
    for record in records:
        seen.setdefault(record.dagster_run.run_id, record)
    return list(seen.values())


def _utc(timestamp: float):  # noqa: ANN202
    from datetime import datetime

    return datetime.fromtimestamp(timestamp, tz=UTC)
