"""``MlflowTrackingResource``: runs recorded in MLflow by the official client, at the request floor.

A materialization costs four requests to a Tracking server: create the run (with
its tags), one ``log_batch`` of the params, metrics and tags (buffered; see
:mod:`.batching`), the artifact upload, and ending the run. Inside a Dagster run with a
parent run (:mod:`.parent_runs`), the run is created nested under it, in the experiment the
parent's tags name: nothing else is asked. Without one, the first run in a process adds one
request: looking the experiment up, which doubles as the reachability check (no retries, a
short timeout; a server not up yet is waited for up to ``MLFLOW_SERVER_WAIT_SECONDS``) and
is then cached for the process. The lookup is :mod:`dagma.mlflow_server`'s probe; each
refusal raises its own error (:mod:`.errors`).

The run is created with ``mlflow.start_run``, so it is also MLflow's active run and
direct ``mlflow.*`` calls in the asset (autolog, ``log_model``) land in it, at no
extra request. Unlike dagster-mlflow, the resource never searches for runs: it holds
their ids, and writes each one in the Dagster run's log when it is created and when it
ends (:mod:`.dagster_records`), for the daemon's sensor (:mod:`.run_endings`).

Local stores (``file://``, ``sqlite://``) are written by the client itself: no
server, no reachability check; the UI is opened with ``mlflow ui --backend-store-uri``.
"""

from __future__ import annotations

import posixpath
import socket
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from dagster import AssetExecutionContext, InitResourceContext, MetadataValue
from pydantic import PrivateAttr

from dagma import local_store, mlflow_server
from dagma.mlflow_server import Answer, Outcome
from dagma.settings import SERVER_WAIT_VARIABLE, HttpRequestSettings, mlflow_client_variables
from dagma.tracking import dagster_records
from dagma.tracking.batching import LogBuffer
from dagma.tracking.dagster_records import CHILD
from dagma.tracking.errors import (
    MlflowHostRefusedError,
    MlflowLoginRefusedError,
    MlflowServerError,
    MlflowServerUnreachableError,
    NotAnMlflowServerError,
)
from dagma.tracking.recorder import HOST_TAG, MlflowRunRecorder, RunStatus, failure_tags

if TYPE_CHECKING:
    from dagster import DagsterInstance, DagsterRun
    from dagster._core.log_manager import DagsterLogManager
    from mlflow import MlflowClient

SUPPRESS_RUN_LINK = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"  # MLflow's own switch
PARENT_RUN_ID_TAG = "mlflow.parentRunId"  # set directly: start_run(parent_run_id=) costs a runs/get
# Experiment ids by (tracking URI, experiment name), found once per process.
_experiment_ids: dict[tuple[str, str], str] = {}
# (experiment id, lifecycle stage) of an experiment looked up by name
FoundExperiment = tuple[str, str]


def import_mlflow() -> Any:
    """Import mlflow on first use, so a stub-only code location never loads it."""
    try:
        import mlflow
    except ImportError:
        raise ImportError(
            "MlflowTrackingResource needs the MLflow client, which is not installed: "
            "`pip install mlflow-skinny` (or `uv add mlflow-skinny`), "
            "or set MLFLOW_USE_TRACKING=false to use the stub."
        ) from None
    return mlflow


def run_tags(context: AssetExecutionContext, dagster_ui_url: str | None) -> dict[str, str]:
    """Tags that tie an MLflow run to the Dagster materialization that produced it."""
    tags = {
        "dagster.run_id": context.run.run_id,
        "dagster.asset_key": context.asset_key.to_user_string(),
        "dagster.step_key": context.get_step_execution_context().step.key,
        HOST_TAG: socket.gethostname(),
    }
    if context.has_partition_key:
        tags["dagster.partition_key"] = context.partition_key
    origin = context.run.remote_job_origin
    if origin is not None:
        tags["dagster.code_location"] = origin.location_name
    if dagster_ui_url:
        tags["dagster.run_url"] = f"{dagster_ui_url}/runs/{context.run.run_id}"
    return tags


class MlflowTrackingResource(MlflowRunRecorder):
    """Records runs in MLflow (a Tracking server or a local store) through the official client."""

    tracking_uri: str
    tracking_uri_source: str = "MLFLOW_TRACKING_URI"
    mlflow_ui_url: str | None = None
    dagster_ui_url: str | None = None
    # How long the first request waits; MLflow's own retries take minutes on a closed port.
    connect_timeout_seconds: float = 5.0
    # How long that first request keeps trying a server that does not answer (connection refused
    # or no answer; never an HTTP error): 0 fails at once. See MLFLOW_SERVER_WAIT_SECONDS.
    server_wait_seconds: int = 0
    # One MLflow parent run per Dagster run, the steps' runs nested under it (MLFLOW_PARENT_RUNS);
    # takes effect where the Definitions use mlflow_parent_runs(...) as their executor.
    parent_runs: bool = True
    # MLflow's client retries for every later request (see dagma.settings): applied while the
    # resource runs where the environment leaves MLFLOW_HTTP_REQUEST_* unset.
    http_max_retries: int = HttpRequestSettings().max_retries
    http_backoff_factor: int = HttpRequestSettings().backoff_factor
    http_timeout_seconds: int = HttpRequestSettings().timeout_seconds

    _client: MlflowClient | None = PrivateAttr(default=None)
    _buffers: dict[str, LogBuffer] = PrivateAttr(default_factory=dict)
    _artifact_uris: dict[str, str] = PrivateAttr(default_factory=dict)
    # Where each open run is written down on the Dagster side (instance, run, step key).
    _dagster_sides: dict[str, tuple[DagsterInstance, DagsterRun, str | None]] = PrivateAttr(
        default_factory=dict
    )

    @contextmanager
    def yield_for_execution(self, context: InitResourceContext) -> Iterator[Self]:
        """The resource for one execution, with MLflow's client retries bounded meanwhile.

        MLflow reads ``MLFLOW_HTTP_REQUEST_*`` from the environment at every request and
        has no per-client setting: the unset ones are filled in, and removed afterwards.
        """
        with self._bounds(), super().yield_for_execution(context) as resource:
            yield resource

    @contextmanager
    def bounded_client(self, bounds: HttpRequestSettings | None = None) -> Iterator[MlflowClient]:
        """MLflow's client for this server, outside any asset (the run worker's parent run,
        the daemon's sensor), with the resource's retry bounds for the block, or ``bounds``."""
        with self._bounds(bounds), _no_run_link_print():  # set_terminated's runs/get
            yield self._mlflow_client()

    def _bounds(self, bounds: HttpRequestSettings | None = None) -> AbstractContextManager[None]:
        if bounds is not None:  # the caller's own, over the user's: it has a deadline to keep
            return mlflow_client_variables(bounds.as_env(), replace=True)
        return mlflow_client_variables(HttpRequestSettings(
            max_retries=self.http_max_retries,
            backoff_factor=self.http_backoff_factor,
            timeout_seconds=self.http_timeout_seconds,
        ).as_env())  # fmt: skip

    def experiment_id(self, log: DagsterLogManager) -> str:
        """The experiment's id (created if missing), looked up once per process."""
        key = (self.tracking_uri, self.experiment)
        if key not in _experiment_ids:
            _experiment_ids[key] = self._find_or_create_experiment(log)
        return _experiment_ids[key]

    def run_url(self, experiment_id: str, run_id: str) -> str | None:
        """The run's page in the MLflow UI, None for a local store without MLFLOW_UI_URL."""
        ui_base = self.mlflow_ui_url or (None if self.local_store else self.tracking_uri)
        return f"{ui_base}/#/experiments/{experiment_id}/runs/{run_id}" if ui_base else None

    def _start(self, context: AssetExecutionContext) -> str:
        mlflow = import_mlflow()
        tags = run_tags(context, self.dagster_ui_url)
        # The run worker wrote the parent on the Dagster run before this step started.
        parent = dagster_records.recorded_parent(context.instance, context.run.run_id)
        if parent is not None and mlflow.active_run() is None:
            experiment_id = parent.experiment_id
            tags[PARENT_RUN_ID_TAG] = parent.run_id
        else:
            experiment_id = self.experiment_id(context.log)
        mlflow.set_tracking_uri(self.tracking_uri)
        # Created through the fluent API so it is MLflow's active run too (no extra request).
        active = mlflow.start_run(
            experiment_id=experiment_id,
            run_name=context.asset_key.to_user_string(),
            tags=tags,
            nested=mlflow.active_run() is not None,
        )
        run_id = active.info.run_id
        try:
            self._announce(context, run_id, experiment_id)
        except BaseException as error:
            # Interrupted before the asset has its run (a SIGTERM while Dagster stores the log
            # line): end it FAILED now, or MLflow's exit hook would end its active run FINISHED.
            with suppress(Exception):
                from mlflow.entities import RunTag

                tags = failure_tags(f"{type(error).__name__}: {error}")
                self._mlflow_client().log_batch(
                    run_id, tags=[RunTag(key, value) for key, value in tags.items()]
                )
            mlflow.end_run("FAILED")
            raise
        self._buffers[run_id] = LogBuffer()
        self._artifact_uris[run_id] = active.info.artifact_uri  # no runs/get at upload time
        return run_id

    def _record_params(self, run_id: str, params: dict[str, str]) -> None:
        self._buffers[run_id].add_params(params)
        self._flush_if_full(run_id)

    def _record_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        self._buffers[run_id].add_metrics(metrics, step)
        self._flush_if_full(run_id)

    def _record_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self._buffers[run_id].add_tags(tags)
        self._flush_if_full(run_id)

    def _record_artifact(self, run_id: str, path: Path, artifact_path: str | None) -> None:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        self.flush(run_id)  # what was logged before the upload is on the run before the file
        repository = get_artifact_repository(
            self._artifact_uris[run_id], tracking_uri=self.tracking_uri
        )
        if path.is_dir():  # as MlflowClient.log_artifact does: keep the directory's name
            repository.log_artifacts(str(path), posixpath.join(artifact_path or "", path.name))
        else:
            repository.log_artifact(str(path), artifact_path)

    def flush(self, run_id: str | None = None) -> None:
        """Send what is buffered for the run now (also done when full, and at close)."""
        from mlflow.entities import Metric, Param, RunTag

        run_id = self._open_run(run_id).run_id
        batch = self._buffers[run_id].take()
        if batch.empty:
            return
        self._mlflow_client().log_batch(
            run_id,
            metrics=[Metric(key, value, ts, step) for key, value, ts, step in batch.metrics],
            params=[Param(key, value) for key, value in batch.params.items()],
            tags=[RunTag(key, value) for key, value in batch.tags.items()],
        )

    def _end(self, run_id: str, status: RunStatus) -> None:
        try:
            self.flush(run_id)
        except BaseException:
            self._terminate(run_id, "FAILED")  # never leave it RUNNING; the error still raises
            raise
        self._terminate(run_id, status)

    def _terminate(self, run_id: str, status: RunStatus) -> None:
        mlflow = import_mlflow()
        self._buffers.pop(run_id, None)
        self._artifact_uris.pop(run_id, None)
        active = mlflow.active_run()
        with _no_run_link_print():
            if active is not None and active.info.run_id == run_id:
                mlflow.end_run(status)
            else:  # someone ended or nested MLflow's active run: end ours by id
                self._mlflow_client().set_terminated(run_id, status)
        dagster_side = self._dagster_sides.pop(run_id, None)
        if dagster_side is not None:
            instance, dagster_run, step_key = dagster_side
            dagster_records.record_ended(
                instance, dagster_run, step_key, run_id, CHILD, status, "by its step"
            )

    def _flush_if_full(self, run_id: str) -> None:
        if self._buffers[run_id].full:
            self.flush(run_id)

    def _announce(self, context: AssetExecutionContext, run_id: str, experiment_id: str) -> None:
        """Materialization metadata and a log line that say where the run is and how to see it."""
        metadata: dict[str, Any] = {"mlflow_run_id": run_id, "mlflow_experiment": self.experiment}
        url = self.run_url(experiment_id, run_id)
        where = f"MLflow run {run_id} in experiment {self.experiment!r}"
        if url:
            metadata["mlflow_run_url"] = MetadataValue.url(url)
            message = f"{where}: {url}"
        else:
            from dagma.dev.local_mlflow import ui_command  # runs as printed, on a free port

            command = ui_command(self.tracking_uri)
            metadata["mlflow_ui_command"] = command
            message = f"{where} (local store {self.tracking_uri}); open the UI with `{command}`"
        context.add_asset_metadata(metadata, asset_key=context.asset_key)
        context.log.info(message)
        # Written down in the Dagster run, for the sensor that ends it if this process cannot.
        step_key = context.get_step_execution_context().step.key
        dagster_records.record_started(context.instance, context.run, step_key, run_id, url)
        self._dagster_sides[run_id] = (context.instance, context.run, step_key)

    @property
    def local_store(self) -> bool:
        """Whether runs go to a store on this machine's disk (no server)."""
        return local_store.is_local_store(self.tracking_uri)

    def _mlflow_client(self) -> MlflowClient:
        if self._client is None:
            self._client = import_mlflow().MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    # -- the experiment ----------------------------------------------------------

    def _find_or_create_experiment(self, log: DagsterLogManager) -> str:
        """The experiment's id, created when it does not exist; refused when it is deleted."""
        from mlflow.exceptions import MlflowException

        found = self._look_up_experiment(log)
        if found is not None:
            experiment_id, lifecycle_stage = found
            if lifecycle_stage == "deleted":
                raise RuntimeError(
                    f"MLflow experiment {self.experiment!r} at {self.tracking_uri} is deleted: "
                    f"restore it (`mlflow experiments restore --experiment-id "
                    f"{experiment_id}`) or set MLFLOW_EXPERIMENT to another name."
                )
            return experiment_id
        try:
            return self._create_experiment()
        except MlflowException:
            # Another process created it between our lookup and create.
            experiment = self._mlflow_client().get_experiment_by_name(self.experiment)
            if experiment is None:
                raise
            return experiment.experiment_id

    def _look_up_experiment(self, log: DagsterLogManager) -> FoundExperiment | None:
        if local_store.is_sqlite(self.tracking_uri):
            # Creates the database (and its Default experiment) on first use, artifacts beside it.
            store = local_store.open_sqlite_store(self.tracking_uri)
            experiment = store.get_experiment_by_name(self.experiment)
        elif self.local_store:
            experiment = self._mlflow_client().get_experiment_by_name(self.experiment)
        else:
            return self._server_experiment(log)
        if experiment is None:
            return None
        return experiment.experiment_id, experiment.lifecycle_stage

    def _create_experiment(self) -> str:
        if local_store.is_sqlite(self.tracking_uri):
            return local_store.open_sqlite_store(self.tracking_uri).create_experiment(
                self.experiment
            )
        return self._mlflow_client().create_experiment(self.experiment)

    def _server_experiment(self, log: DagsterLogManager) -> FoundExperiment | None:
        """Look the experiment up at the server, failing in seconds with the fix when it
        cannot be used.

        The lookup is :func:`dagma.mlflow_server.probe_waiting`: no retries and a short
        timeout, so it doubles as the reachability check. A server that does not answer yet
        (restarting) is tried again every couple of seconds for ``server_wait_seconds``; an
        HTTP answer is never tried again.
        """
        import_mlflow()  # the probe goes through MLflow's http_request: say how to install it

        def waiting(first: Answer) -> None:
            log.warning(
                f"{self._where} not answering yet ({first.reason}); waiting up to "
                f"{self.server_wait_seconds} s ({SERVER_WAIT_VARIABLE})"
            )

        answer = mlflow_server.probe_waiting(
            self.tracking_uri,
            self.experiment,
            self.connect_timeout_seconds,
            self.server_wait_seconds,
            on_wait=waiting,
        )
        if answer.waited_seconds is not None and answer.outcome is not Outcome.NO_ANSWER:
            log.info(f"{self._where} answered after {answer.waited_seconds:.0f} s")
        if answer.outcome is Outcome.FOUND:
            assert answer.experiment is not None
            return answer.experiment["experiment_id"], answer.experiment.get(
                "lifecycle_stage", "active"
            )
        if answer.outcome is Outcome.MISSING:
            return None
        raise self._server_error(answer)

    @property
    def _where(self) -> str:
        return f"MLflow Tracking server at {self.tracking_uri} (from {self.tracking_uri_source})"

    def _server_error(self, answer: Answer) -> MlflowServerError:
        """The error for an answer that leaves the server unusable: what happened, and the fix."""
        where = self._where
        fix = (
            f"Start the server or correct {self.tracking_uri_source}; to run without MLflow, "
            "set MLFLOW_USE_TRACKING=false."
        )
        if answer.outcome is Outcome.NO_ANSWER:
            waited = ""
            if answer.waited_seconds is not None:
                waited = (
                    f" after waiting {self.server_wait_seconds} s ({SERVER_WAIT_VARIABLE}; "
                    "raise it if the server takes longer to start)"
                )
            return MlflowServerUnreachableError(
                f"{where} is not reachable ({answer.reason}){waited}. {fix}"
            )
        if answer.outcome is Outcome.HOST_REFUSED:
            return MlflowHostRefusedError(
                f"{where} refused the request (403): the server's --allowed-hosts does not list "
                f"this host name. Add it to the server's allowed hosts. {fix}"
            )
        if answer.outcome is Outcome.LOGIN_REFUSED:
            return MlflowLoginRefusedError(
                f"{where} refused the credentials (HTTP {answer.status_code}): set "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) "
                f"to an account that may read and create experiments. {answer.text!r}"
            )
        return NotAnMlflowServerError(
            f"{where} answered HTTP {answer.status_code} to {mlflow_server.EXPERIMENT_BY_NAME}: "
            f"{answer.text!r}. Is it an MLflow Tracking server? {fix}"
        )


def _no_run_link_print() -> AbstractContextManager[None]:
    """Ending a run without MLflow's "View run" line, which costs a runs/get to print.

    The resource has logged the run's link already. Only for this call, so other
    code in the process keeps MLflow's default; a user's explicit setting wins.
    """
    return mlflow_client_variables({SUPPRESS_RUN_LINK: "true"})
