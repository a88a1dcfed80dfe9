"""Two resources with one small API: record a materialization's params, metrics and artifacts.

``MlflowTrackingResource`` writes to an MLflow Tracking server through the
official client; ``MlflowStubResource`` keeps everything in memory and needs no
server. Assets are written once against the shared API::

    with tracking.run(context):
        tracking.log_param("n_estimators", 10)

Unlike dagster-mlflow, the tracking resource never searches for runs and never
relies on MLflow's global "active run" for its own calls: every call names its
run id. While a run is open it is *also* made MLflow's active run, so code that
calls ``mlflow.*`` directly (autolog, ``log_model``) lands in the same run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dagster import (
    AssetExecutionContext,
    ConfigurableResource,
    DagsterEventType,
    InitResourceContext,
    MetadataValue,
)
from pydantic import PrivateAttr

if TYPE_CHECKING:
    from mlflow import MlflowClient

RunStatus = Literal["FINISHED", "FAILED", "KILLED"]


class MlflowUnreachableError(RuntimeError):
    """The MLflow Tracking server did not answer; tracking never falls back to the stub."""


@dataclass
class _OpenRun:
    """A run this resource started and has not closed yet."""

    run_id: str
    dagster_run_id: str
    step_key: str | None


@dataclass
class StubRun:
    """What an asset logged to :class:`MlflowStubResource`, for assertions in users' tests."""

    run_id: str
    run_name: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    skipped_artifacts: list[str] = field(default_factory=list)
    status: str = "RUNNING"


class MlflowRunRecorder(ConfigurableResource):
    """The API both resources share (annotate assets with it); subclasses say where data goes."""

    experiment: str = "Default"
    _open_runs: dict[str, _OpenRun] = PrivateAttr(default_factory=dict)

    def start_run(self, context: AssetExecutionContext) -> str:
        """Open a new run for this materialization and return its id."""
        raise NotImplementedError

    def log_param(self, key: str, value: Any, run_id: str | None = None) -> None:
        """Record a parameter on ``run_id`` (default: the run this resource opened last)."""
        raise NotImplementedError

    def log_metric(
        self, key: str, value: float, step: int | None = None, run_id: str | None = None
    ) -> None:
        """Record a metric value on ``run_id`` (default: the run this resource opened last)."""
        raise NotImplementedError

    def log_artifact(
        self, local_path: str | Path, artifact_path: str | None = None, run_id: str | None = None
    ) -> None:
        """Upload a local file to ``run_id``'s artifacts (default: the run opened last)."""
        raise NotImplementedError

    def close_run(self, status: RunStatus = "FINISHED", run_id: str | None = None) -> str:
        """End ``run_id`` (default: the run opened last) with ``status``; return its id."""
        run_id = self._current_run(run_id)
        self._end(run_id, status)
        del self._open_runs[run_id]
        return run_id

    @contextmanager
    def run(self, context: AssetExecutionContext) -> Iterator[str]:
        """Open a run, yield its id, and end it FINISHED, or FAILED if the block raises."""
        run_id = self.start_run(context)
        try:
            yield run_id
        except BaseException:
            if run_id in self._open_runs:
                self.close_run("FAILED", run_id)
            raise
        if run_id in self._open_runs:
            self.close_run("FINISHED", run_id)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        """Close runs the asset left open: FAILED if its step failed, else FINISHED."""
        for open_run in list(self._open_runs.values()):
            failed = _step_failed(context, open_run)
            self.close_run("FAILED" if failed else "FINISHED", open_run.run_id)

    # -- shared bookkeeping -------------------------------------------------

    def _remember(self, run_id: str, context: AssetExecutionContext) -> None:
        step_key = context.get_step_execution_context().step.key
        self._open_runs[run_id] = _OpenRun(run_id, context.run.run_id, step_key)

    def _current_run(self, run_id: str | None) -> str:
        if run_id is not None:
            return run_id
        if not self._open_runs:
            raise RuntimeError(
                f"{type(self).__name__} has no open run: call start_run(context) "
                "(or use `with resource.run(context):`) before logging."
            )
        return next(reversed(self._open_runs))

    def _end(self, run_id: str, status: RunStatus) -> None:
        raise NotImplementedError


def _step_failed(context: InitResourceContext, open_run: _OpenRun) -> bool:
    """Whether Dagster recorded a failure for the step that opened ``open_run``."""
    instance = context.instance
    if instance is None:
        return True  # no event log to ask: an unclosed run is safest marked FAILED
    records = instance.get_records_for_run(
        open_run.dagster_run_id, of_type=DagsterEventType.STEP_FAILURE
    ).records
    return any(r.event_log_entry.step_key == open_run.step_key for r in records)


def _import_mlflow() -> Any:
    """Import mlflow on first use, so a stub-only code location never loads it."""
    try:
        import mlflow
    except ImportError as exc:
        raise ImportError(
            "MlflowTrackingResource needs the MLflow client, which is not installed: "
            "`pip install mlflow-skinny` (or `uv add mlflow-skinny`), "
            "or set MLFLOW_USE_TRACKING=false to use the stub."
        ) from exc
    return mlflow


def run_tags(context: AssetExecutionContext, dagster_ui_url: str | None) -> dict[str, str]:
    """Tags that tie an MLflow run to the Dagster materialization that produced it."""
    tags = {
        "dagster.run_id": context.run.run_id,
        "dagster.asset_key": context.asset_key.to_user_string(),
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
    """Records runs on an MLflow Tracking server through the official MLflow client."""

    tracking_uri: str
    tracking_uri_source: str = "MLFLOW_TRACKING_URI"
    mlflow_ui_url: str | None = None
    dagster_ui_url: str | None = None
    # How long the reachability check waits; MLflow's own retries take minutes.
    connect_timeout_seconds: float = 5.0

    _client: MlflowClient | None = PrivateAttr(default=None)

    def start_run(self, context: AssetExecutionContext) -> str:
        mlflow = _import_mlflow()
        self._check_reachable()
        client = self._mlflow_client()
        experiment_id = self._experiment_id(client)
        run = client.create_run(
            experiment_id,
            run_name=context.asset_key.to_user_string(),
            tags=run_tags(context, self.dagster_ui_url),
        )
        run_id = run.info.run_id
        self._remember(run_id, context)
        # Make it MLflow's active run too, so direct mlflow.* calls land here.
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None)
        ui_base = self.mlflow_ui_url or self.tracking_uri
        url = f"{ui_base}/#/experiments/{experiment_id}/runs/{run_id}"
        context.add_asset_metadata(
            {
                "mlflow_run_id": run_id,
                "mlflow_experiment": self.experiment,
                "mlflow_run_url": MetadataValue.url(url),
            },
            asset_key=context.asset_key,
        )
        context.log.info(f"MLflow run {run_id} in experiment {self.experiment!r}: {url}")
        return run_id

    def log_param(self, key: str, value: Any, run_id: str | None = None) -> None:
        self._mlflow_client().log_param(self._current_run(run_id), key, value)

    def log_metric(
        self, key: str, value: float, step: int | None = None, run_id: str | None = None
    ) -> None:
        self._mlflow_client().log_metric(self._current_run(run_id), key, value, step=step)

    def log_artifact(
        self, local_path: str | Path, artifact_path: str | None = None, run_id: str | None = None
    ) -> None:
        self._mlflow_client().log_artifact(
            self._current_run(run_id), str(local_path), artifact_path=artifact_path
        )

    def _end(self, run_id: str, status: RunStatus) -> None:
        mlflow = _import_mlflow()
        active = mlflow.active_run()
        if active is not None and active.info.run_id == run_id:
            mlflow.end_run(status)
        else:
            self._mlflow_client().set_terminated(run_id, status)

    def _mlflow_client(self) -> MlflowClient:
        if self._client is None:
            self._client = _import_mlflow().MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def _experiment_id(self, client: MlflowClient) -> str:
        from mlflow.exceptions import MlflowException

        experiment = client.get_experiment_by_name(self.experiment)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return client.create_experiment(self.experiment)
        except MlflowException:
            # Another process created it between our lookup and create.
            experiment = client.get_experiment_by_name(self.experiment)
            if experiment is None:
                raise
            return experiment.experiment_id

    def _check_reachable(self) -> None:
        """Fail in seconds, naming the URI and the fix, when no server answers."""
        _import_mlflow()
        from mlflow.utils.credentials import get_default_host_creds
        from mlflow.utils.rest_utils import http_request

        fix = (
            f"Start the server or correct {self.tracking_uri_source}; to run without MLflow, "
            "set MLFLOW_USE_TRACKING=false."
        )
        where = f"MLflow Tracking server at {self.tracking_uri} (from {self.tracking_uri_source})"
        try:
            response = http_request(
                get_default_host_creds(self.tracking_uri),
                "/health",
                "GET",
                max_retries=0,
                backoff_factor=0,
                timeout=self.connect_timeout_seconds,
                raise_on_status=False,
            )
        except Exception as exc:
            raise MlflowUnreachableError(f"{where} is not reachable: {exc}. {fix}") from exc
        if response.status_code == 403:
            raise MlflowUnreachableError(
                f"{where} refused the request (403): the server's --allowed-hosts does not list "
                f"this host name. Add it to the server's allowed hosts. {fix}"
            )
        if response.status_code != 200:
            raise MlflowUnreachableError(
                f"{where} answered /health with HTTP {response.status_code}: "
                f"{response.text[:200]!r}. {fix}"
            )


class MlflowStubResource(MlflowRunRecorder):
    """Stands in for MLflow when tracking is off: no network, everything kept in memory."""

    _runs: dict[str, StubRun] = PrivateAttr(default_factory=dict)

    @property
    def runs(self) -> dict[str, StubRun]:
        """Every run this resource recorded, by run id."""
        return self._runs

    def _with_updated_values(self, values: Any) -> MlflowStubResource:
        # Dagster executes with a fresh copy of each resource; share the record with it so
        # the object a test passed to `materialize` shows what the asset logged.
        copy = super()._with_updated_values(values)
        copy._runs = self._runs
        return copy

    def start_run(self, context: AssetExecutionContext) -> str:
        run_id = f"stub-{uuid.uuid4()}"
        self._runs[run_id] = StubRun(run_id=run_id, run_name=context.asset_key.to_user_string())
        self._remember(run_id, context)
        context.add_asset_metadata(
            {"mlflow_run_id": run_id, "mlflow_tracking": "off (stub)"},
            asset_key=context.asset_key,
        )
        context.log.info(
            "MLflow tracking is off: params and metrics are kept in memory only. "
            "Set MLFLOW_USE_TRACKING=true (and MLFLOW_TRACKING_URI) to record runs in MLflow."
        )
        return run_id

    def log_param(self, key: str, value: Any, run_id: str | None = None) -> None:
        self._runs[self._current_run(run_id)].params[key] = str(value)

    def log_metric(
        self, key: str, value: float, step: int | None = None, run_id: str | None = None
    ) -> None:
        self._runs[self._current_run(run_id)].metrics[key] = float(value)

    def log_artifact(
        self, local_path: str | Path, artifact_path: str | None = None, run_id: str | None = None
    ) -> None:
        self._runs[self._current_run(run_id)].skipped_artifacts.append(str(local_path))

    def _end(self, run_id: str, status: RunStatus) -> None:
        self._runs[run_id].status = status
