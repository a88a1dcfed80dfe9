"""MLflow runs left RUNNING by Dagster runs that are over, ended FAILED with the reason.

When the MLflow server is down until a Dagster run has failed, the run's FAILED mark never
reaches it and the MLflow run would stay RUNNING forever. The tracking resource calls
:func:`end_abandoned_runs` when it first opens a run in an experiment (once per process):
one ``search_runs`` request for the experiment's RUNNING runs carrying a ``dagster.run_id``
tag, then the Dagster instance says which of those Dagster runs are over. A run id this
instance does not know is left alone: it may belong to another Dagster deployment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagster import DagsterInstance, RunsFilter

from dagma.tracking.recorder import FAILURE_TAG, failure_tags

if TYPE_CHECKING:
    from mlflow import MlflowClient

DAGSTER_RUN_TAG = "dagster.run_id"
END_REASON_TAG = "dagma.end_reason"
# One request, bounded: more than this many abandoned runs are ended by the next sweeps.
MAX_RUNS_PER_SWEEP = 100
RUNNING_WITH_A_DAGSTER_RUN = (
    f"attributes.status = 'RUNNING' AND tags.`{DAGSTER_RUN_TAG}` IS NOT NULL"
)


def end_abandoned_runs(
    client: MlflowClient, instance: DagsterInstance, experiment_id: str
) -> list[str]:
    """End FAILED the experiment's RUNNING runs whose Dagster run is over; return their ids."""
    from mlflow.entities import RunTag

    running = client.search_runs(
        [experiment_id], RUNNING_WITH_A_DAGSTER_RUN, max_results=MAX_RUNS_PER_SWEEP
    )
    if not running:
        return []
    dagster_run_ids = sorted({run.data.tags[DAGSTER_RUN_TAG] for run in running})
    # Known and finished only: a run id unknown here may be another deployment's, in progress.
    finished = {
        record.dagster_run.run_id: record
        for record in instance.get_run_records(RunsFilter(run_ids=dagster_run_ids))
        if record.dagster_run.is_finished
    }
    ended = []
    for run in running:
        record = finished.get(run.data.tags[DAGSTER_RUN_TAG])
        if record is None:
            continue
        reason = (
            f"ended by dagma: Dagster run {record.dagster_run.run_id} ended as "
            f"{record.dagster_run.status.value} while this MLflow run was still RUNNING: its end "
            "never reached the MLflow server (unreachable then, or the process was killed)"
        )
        tags = {END_REASON_TAG: reason}
        if FAILURE_TAG not in run.data.tags:  # keep the asset's own error when it got through
            tags.update(failure_tags(reason))
        client.log_batch(run.info.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        end_time = int(record.end_time * 1000) if record.end_time else None
        client.set_terminated(run.info.run_id, "FAILED", end_time=end_time)
        ended.append(run.info.run_id)
    return ended
