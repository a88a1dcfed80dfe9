"""One MLflow parent run per Dagster run, created by the run worker before any step starts.

    defs = Definitions(
        assets=[...],
        resources={"tracking": tracking},
        executor=mlflow_parent_runs(tracking),      # default: multi_or_in_process_executor
        sensors=[mlflow_run_endings_sensor(tracking)],
    )

Why the executor: it is the one piece of a Dagster run that runs exactly once, in the run
worker, before any step, for every executor (in-process, multiprocess, ``k8s_job_executor``).
It wraps the executor the job would use, creates the parent there and writes its id on the
Dagster run's tags (:mod:`.dagster_records`); every step process, subprocess or pod, loads the
run from the instance when it starts, so each step reads the id instead of searching MLflow
for it, and no two steps can race to create it. Nothing goes through the environment, where
``MLFLOW_RUN_ID`` would make MLflow resume that run instead of nesting under it (mlflow#15713).

The parent is ended here when the steps are done (FINISHED, or FAILED if a step failed). When
the run worker is interrupted or dies, the daemon's sensor (:mod:`.run_endings`) ends it with
the status Dagster gives the run. A retried or re-executed Dagster run gets a parent of its
own, linked both ways to the parent of the run it retries.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

from dagster import (
    DagsterEvent,
    DagsterEventType,
    DagsterExecutionInterruptedError,
    DagsterRun,
    DagsterRunStatus,
    ExecutorDefinition,
    multi_or_in_process_executor,
)
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.base import Executor
from dagster._core.executor.init import InitExecutorContext

from dagma.tracking import dagster_records
from dagma.tracking.dagster_records import PARENT, RecordedParent
from dagma.tracking.errors import MlflowServerError
from dagma.tracking.recorder import HOST_TAG, NOTE_TAG, MlflowRunRecorder, failure_tags

if TYPE_CHECKING:
    from dagma.tracking.resource import MlflowTrackingResource

# Dagster's tags of a retry or re-execution, and MLflow's of a run's name.
DAGSTER_PARENT_RUN = "dagster/parent_run_id"
DAGSTER_ROOT_RUN = "dagster/root_run_id"
RUN_NAME_TAG = "mlflow.runName"
RETRY_OF_TAG, RETRY_OF_URL_TAG = "dagma.retry_of_mlflow_run_id", "dagma.retry_of_mlflow_run_url"
RETRIED_BY_TAG, RETRIED_BY_URL_TAG = "dagma.retried_by_mlflow_run_id", "dagma.retried_by_url"
CANCELING = (DagsterRunStatus.CANCELING, DagsterRunStatus.CANCELED)
MAX_COPIED_TAGS = 50  # a Dagster run's own tags copied onto its parent, at most
MAX_TAG_VALUE = 5000


def mlflow_parent_runs(
    tracking: MlflowRunRecorder, base: ExecutorDefinition = multi_or_in_process_executor
) -> ExecutorDefinition:
    """``base`` (same name and config), creating one MLflow parent run per Dagster run.

    With the stub resource, or ``parent_runs=False`` (``MLFLOW_PARENT_RUNS=false``), it is
    ``base`` unchanged: each materialization is then a run of its own, as before.
    """
    from dagma.tracking.resource import MlflowTrackingResource

    if not isinstance(tracking, MlflowTrackingResource) or not tracking.parent_runs:
        return base
    creation_fn = base.executor_creation_fn
    if creation_fn is None:
        raise ValueError(f"Executor {base.name!r} has no creation function to wrap.")

    def create(init_context: InitExecutorContext) -> Executor:
        return ParentRunExecutor(creation_fn(init_context), tracking)

    return ExecutorDefinition(
        name=base.name,
        config_schema=base.config_schema,
        requirements=base.get_requirements,
        executor_creation_fn=create,
        description=f"{base.description or base.name}, with one MLflow parent run per run",
    )


class ParentRunExecutor(Executor):
    """Runs ``inner``'s steps inside the Dagster run's MLflow parent run."""

    def __init__(self, inner: Executor, tracking: MlflowTrackingResource) -> None:
        self.inner = inner
        self.tracking = tracking

    @property
    def retries(self) -> RetryMode:
        return self.inner.retries

    @property
    def step_dependency_config(self):  # noqa: ANN201 (Dagster's own type)
        return self.inner.step_dependency_config

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        instance, dagster_run = plan_context.instance, plan_context.dagster_run
        try:
            parent = self._parent_of_this_run(plan_context, execution_plan)
        except MlflowServerError as error:
            # The steps still run, each materialization a run of its own: a step that
            # tracks fails with this same message, one that does not is not held back.
            plan_context.log.warning(f"No MLflow parent run for this Dagster run. {error}")
            yield from self.inner.execute(plan_context, execution_plan)
            return
        failed: list[str] = []
        try:
            for event in self.inner.execute(plan_context, execution_plan):
                if event.event_type == DagsterEventType.STEP_FAILURE and event.step_key:
                    failed.append(event.step_key)
                yield event
        except (DagsterExecutionInterruptedError, KeyboardInterrupt) as error:
            # KILLED for a cancel, FAILED for anything else that stops it (its pod deleted).
            status = dagster_records.interrupted_status(instance, dagster_run.run_id)
            why = f"the run worker was interrupted ({type(error).__name__})"
            self._end(plan_context, execution_plan, parent, status, why)
            raise
        # A crash of the run worker never gets here: the daemon's sensor ends the parent then.
        canceled = instance.get_run_by_id(dagster_run.run_id)
        if canceled is not None and canceled.status in CANCELING:
            self._end(plan_context, execution_plan, parent, "KILLED", "the run was canceled")
        elif failed:
            why = f"step(s) {', '.join(failed)} failed"
            self._end(plan_context, execution_plan, parent, "FAILED", why)
        else:
            self._end(plan_context, execution_plan, parent, "FINISHED")

    def _end(
        self,
        plan_context: PlanOrchestrationContext,
        execution_plan: ExecutionPlan,
        parent: RecordedParent,
        status: str,
        why: str | None = None,
    ) -> None:
        """End the parent, saying ``why`` unless FINISHED; if MLflow cannot be reached, the
        sensor ends it when it can."""
        from mlflow.entities import RunTag

        dagster_run = plan_context.dagster_run
        try:
            with self.tracking.bounded_client() as client:
                if why is not None:
                    note = _note(dagster_run, execution_plan.step_keys_to_execute)
                    tags = failure_tags(f"Dagster run {dagster_run.run_id}: {why}", note)
                    client.log_batch(parent.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
                client.set_terminated(parent.run_id, status)
        except Exception as error:
            plan_context.log.warning(
                f"Could not end MLflow parent run {parent.run_id} {status} ({error}); dagma's "
                "run-endings sensor ends it once the server answers."
            )
            return
        dagster_records.record_ended(
            plan_context.instance, plan_context.dagster_run, None, parent.run_id, PARENT, status,
            "by the run worker",
        )  # fmt: skip

    def _parent_of_this_run(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> RecordedParent:
        """The parent this run created already (a resumed run worker), else a new one."""
        instance, dagster_run = plan_context.instance, plan_context.dagster_run
        # Tags may be inherited from the run this one re-executes: the run's own log decides.
        mine = [
            run for run in dagster_records.recorded_runs(instance, dagster_run.run_id)
            if run.role == PARENT
        ]  # fmt: skip
        if mine:
            found = dagster_records.recorded_parent(instance, dagster_run.run_id)
            if found is not None and found.run_id == mine[0].run_id:
                return found
        experiment_id = self.tracking.experiment_id(plan_context.log)
        tags = self._tags(plan_context, execution_plan)
        retried = self._retried_parent(plan_context)
        if retried is not None:
            tags[RETRY_OF_TAG] = retried.run_id
            retried_url = self.tracking.run_url(retried.experiment_id, retried.run_id)
            if retried_url:
                tags[RETRY_OF_URL_TAG] = retried_url
        with self.tracking.bounded_client() as client:
            created = client.create_run(experiment_id, tags=tags, run_name=tags[RUN_NAME_TAG])
        parent = RecordedParent(created.info.run_id, experiment_id)
        url = self.tracking.run_url(experiment_id, parent.run_id)
        dagster_records.record_parent(instance, dagster_run, parent, url)
        plan_context.log.info(f"MLflow parent run {parent.run_id}" + (f": {url}" if url else ""))
        if retried is not None:  # the old parent points at this one
            from mlflow.entities import RunTag

            links = {RETRIED_BY_TAG: parent.run_id, **({RETRIED_BY_URL_TAG: url} if url else {})}
            with self.tracking.bounded_client() as client:
                client.log_batch(retried.run_id, tags=[RunTag(k, v) for k, v in links.items()])
        return parent

    def _retried_parent(self, plan_context: PlanOrchestrationContext) -> RecordedParent | None:
        """The MLflow parent of the Dagster run this one retries or re-executes, if any."""
        previous = plan_context.dagster_run.tags.get(DAGSTER_PARENT_RUN)
        if previous is None:
            return None
        return dagster_records.recorded_parent(plan_context.instance, previous)

    def _tags(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> dict[str, str]:
        dagster_run = plan_context.dagster_run
        tags = _copied_tags(dagster_run)
        tags.update({
            "dagster.run_id": dagster_run.run_id,
            "dagster.job_name": dagster_run.job_name,
            HOST_TAG: socket.gethostname(),  # the run worker's machine, on Kubernetes its pod
            RUN_NAME_TAG: _run_name(dagster_run),
            NOTE_TAG: _note(dagster_run, execution_plan.step_keys_to_execute),
        })  # fmt: skip
        for dagster_tag, mlflow_tag in (
            (DAGSTER_PARENT_RUN, "dagster.parent_run_id"),
            (DAGSTER_ROOT_RUN, "dagster.root_run_id"),
        ):
            if dagster_tag in dagster_run.tags:
                tags[mlflow_tag] = dagster_run.tags[dagster_tag]
        origin = dagster_run.remote_job_origin
        if origin is not None:
            tags["dagster.code_location"] = origin.location_name
        if self.tracking.dagster_ui_url:
            tags["dagster.run_url"] = f"{self.tracking.dagster_ui_url}/runs/{dagster_run.run_id}"
        return tags


def _copied_tags(dagster_run: DagsterRun) -> dict[str, str]:
    """The Dagster run's own tags (hidden ones and dagma's own left out), bounded."""
    copied = {
        key: value for key, value in sorted(dagster_run.tags.items())
        if not key.startswith((".", "dagma/")) and len(value) <= MAX_TAG_VALUE
    }  # fmt: skip
    return dict(list(copied.items())[:MAX_COPIED_TAGS])


def _run_name(dagster_run: DagsterRun) -> str:
    """The job's name, or the assets selected when the job is Dagster's implicit asset job."""
    selection = dagster_run.asset_selection
    if dagster_run.job_name.startswith("__ASSET_JOB") and selection:
        return ", ".join(sorted(key.to_user_string() for key in selection))
    return dagster_run.job_name


def _note(dagster_run: DagsterRun, step_keys: list[str]) -> str:
    """The parent's description in the MLflow UI: the Dagster run and its steps."""
    steps = "\n".join(f"- `{key}`" for key in step_keys)
    return (
        f"Dagster run `{dagster_run.run_id}` of job `{dagster_run.job_name}`. Each step below "
        f"records its materializations as runs nested under this one (tag "
        f"`dagster.step_key`):\n\n{steps}"
    )
