"""``MlflowStubResource``: the same API as the tracking resource, kept in memory, no server.

It refuses exactly what the tracking resource refuses (the checks live in
:mod:`.checks`, shared by both), so an asset that passes with tracking off does
not fail when tracking is turned on.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext
from pydantic import PrivateAttr

from dagma.tracking.recorder import MlflowRunRecorder, RunStatus


@dataclass
class StubRun:
    """What an asset logged to :class:`MlflowStubResource`, for assertions in users' tests."""

    run_id: str
    run_name: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # the latest value of each
    # every value of each metric, as (step, value), in the order logged
    metric_history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    skipped_artifacts: list[str] = field(default_factory=list)
    status: str = "RUNNING"


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

    def _start(self, context: AssetExecutionContext) -> str:
        run_id = f"stub-{uuid.uuid4()}"
        self._runs[run_id] = StubRun(run_id=run_id, run_name=context.asset_key.to_user_string())
        context.add_asset_metadata(
            {"mlflow_run_id": run_id, "mlflow_tracking": "off (stub)"},
            asset_key=context.asset_key,
        )
        context.log.info(
            "MLflow tracking is off: params and metrics are kept in memory only. "
            "Set MLFLOW_USE_TRACKING=true (and MLFLOW_TRACKING_URI) to record runs in MLflow."
        )
        return run_id

    def _record_params(self, run_id: str, params: dict[str, str]) -> None:
        self._runs[run_id].params.update(params)

    def _record_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        run = self._runs[run_id]
        for key, value in metrics.items():
            run.metrics[key] = value
            run.metric_history.setdefault(key, []).append((step, value))

    def _record_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self._runs[run_id].tags.update(tags)

    def _record_artifact(self, run_id: str, path: Path, artifact_path: str | None) -> None:
        self._runs[run_id].skipped_artifacts.append(str(path))

    def _end(self, run_id: str, status: RunStatus) -> None:
        self._runs[run_id].status = status
