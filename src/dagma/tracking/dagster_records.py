"""What a Dagster run records about its MLflow runs, and reading it back, never from MLflow.

Every MLflow run dagma opens is written down on the Dagster side the moment it exists, so
whatever ends the Dagster run later (its own processes, or the daemon's sensor in
:mod:`.run_endings` when those processes are dead) finds it by id, with no search:

- the **parent** run (one per Dagster run, :mod:`.parent_runs`): its id, experiment and link
  as tags on the Dagster run, where every step process (a subprocess, a step pod) reads them
  and the Dagster UI shows them; and an engine event in the run's log when it is created;
- each **child** run (a step's materialization): an engine event in the run's log when it is
  created, in the step's own process, before the asset logs anything;
- every **end** (by its own process or by the sensor): an engine event too, so nothing is
  ended twice and the sensor asks MLflow only about runs nobody recorded an end for.

The event log is append-only, so parallel steps never overwrite each other's records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, MetadataValue
from dagster._core.events import EngineEventData

PARENT_RUN_TAG = "dagma/mlflow_parent_run_id"
EXPERIMENT_TAG = "dagma/mlflow_experiment_id"
PARENT_URL_TAG = "dagma/mlflow_parent_run_url"
# Metadata keys of dagma's engine events: which MLflow run, which role, what happened to it.
RUN_KEY = "mlflow_run_id"
ROLE_KEY = "mlflow_run_role"
ENDED_KEY = "mlflow_run_ended"
PARENT, CHILD = "parent", "child"


@dataclass(frozen=True)
class RecordedParent:
    """The MLflow parent of a Dagster run, as its tags say."""

    run_id: str
    experiment_id: str


@dataclass
class RecordedRun:
    """An MLflow run a Dagster run recorded: who opened it, and its end if one was recorded."""

    run_id: str
    role: str
    step_key: str | None
    ended: str | None = None  # the MLflow status recorded at its end


def interrupted_status(
    instance: DagsterInstance, dagster_run_id: str
) -> Literal["FAILED", "KILLED"]:
    """The MLflow status of a run whose process Dagster interrupted: KILLED when the Dagster
    run is being canceled, FAILED otherwise (its pod deleted, its node drained)."""
    try:
        run = instance.get_run_by_id(dagster_run_id)
    except Exception:  # the instance unreachable mid-interrupt: it was stopped, say so
        return "KILLED"
    canceled = (DagsterRunStatus.CANCELING, DagsterRunStatus.CANCELED)
    return "KILLED" if run is None or run.status in canceled else "FAILED"


def recorded_parent(instance: DagsterInstance, dagster_run_id: str) -> RecordedParent | None:
    """The parent the Dagster run records now (read fresh: the run worker adds it at start)."""
    run = instance.get_run_by_id(dagster_run_id)
    tags = run.tags if run is not None else {}
    if PARENT_RUN_TAG not in tags or EXPERIMENT_TAG not in tags:
        return None
    return RecordedParent(tags[PARENT_RUN_TAG], tags[EXPERIMENT_TAG])


def record_parent(
    instance: DagsterInstance, dagster_run: DagsterRun, parent: RecordedParent, url: str | None
) -> None:
    """Write the parent on the Dagster run, before any step starts."""
    tags = {PARENT_RUN_TAG: parent.run_id, EXPERIMENT_TAG: parent.experiment_id}
    if url:
        tags[PARENT_URL_TAG] = url
    instance.add_run_tags(dagster_run.run_id, tags)
    metadata = {RUN_KEY: parent.run_id, ROLE_KEY: PARENT}
    if url:
        metadata["mlflow_run_url"] = MetadataValue.url(url)
    _report(instance, dagster_run, None, f"MLflow parent run {parent.run_id} created", metadata)


def record_started(
    instance: DagsterInstance, dagster_run: DagsterRun, step_key: str | None, run_id: str,
    url: str | None,
) -> None:  # fmt: skip
    """Write a step's new MLflow run in the Dagster run's log."""
    metadata = {RUN_KEY: run_id, ROLE_KEY: CHILD}
    if url:
        metadata["mlflow_run_url"] = MetadataValue.url(url)
    _report(instance, dagster_run, step_key, f"MLflow child run {run_id} created", metadata)


def record_ended(
    instance: DagsterInstance, dagster_run: DagsterRun, step_key: str | None, run_id: str,
    role: str, status: str, by: str,
) -> None:  # fmt: skip
    """Write that an MLflow run has ended with ``status``, and who ended it."""
    message = f"MLflow {role} run {run_id} ended {status} ({by})"
    _report(instance, dagster_run, step_key, message, {
        RUN_KEY: run_id, ROLE_KEY: role, ENDED_KEY: status,
    })  # fmt: skip


def recorded_runs(instance: DagsterInstance, dagster_run_id: str) -> list[RecordedRun]:
    """Every MLflow run the Dagster run recorded, in creation order, with the ends recorded."""
    runs: dict[str, RecordedRun] = {}
    records = instance.get_records_for_run(dagster_run_id, of_type=DagsterEventType.ENGINE_EVENT)
    for record in records.records:
        entry = record.event_log_entry
        event = entry.dagster_event
        data = event.engine_event_data if event is not None else None
        metadata = data.metadata if data is not None else {}
        if RUN_KEY not in metadata:
            continue
        run_id = str(metadata[RUN_KEY].value)
        role = str(metadata[ROLE_KEY].value)
        run = runs.setdefault(run_id, RecordedRun(run_id, role, entry.step_key))
        if ENDED_KEY in metadata:
            run.ended = str(metadata[ENDED_KEY].value)
    return list(runs.values())


def _report(
    instance: DagsterInstance, dagster_run: DagsterRun, step_key: str | None, message: str,
    metadata: dict,
) -> None:  # fmt: skip
    instance.report_engine_event(
        message, dagster_run, EngineEventData(metadata=metadata), step_key=step_key
    )
