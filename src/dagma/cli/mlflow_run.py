"""Find the MLflow run a Dagster run recorded (tag ``dagster.run_id``) and compare its contents."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagma import example
from dagma.cli.dagster_run import VerifyError
from dagma.cli.deadline import Deadline
from dagma.cli.endpoints import mlflow_hint
from dagma.cli.report import Check, Status
from dagma.cli.server_checks import TrackingServer, health
from dagma.cli.write_check import bounded_requests
from dagma.mlflow_server import describe_failure

REQUEST_TIMEOUT = 10.0


@dataclass(frozen=True)
class FoundRun:
    """The MLflow run of a Dagster run."""

    run_id: str
    experiment_id: str
    url: str


def check_reachable(mlflow_url: str) -> None:
    """Fail in seconds, before launching anything, when the MLflow URL does not answer."""
    check = health(TrackingServer(mlflow_url, "--mlflow-url"), Deadline(REQUEST_TIMEOUT))
    if check.status is Status.FAIL:
        raise VerifyError(
            "mlflow",
            check.found,
            mlflow_hint(mlflow_url),
        )


def _client(mlflow_url: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_url)


def find_run(mlflow_url: str, dagster_run_id: str, materialization: dict[str, str]) -> FoundRun:
    """The example asset's MLflow run tagged with ``dagster_run_id`` (not the Dagster run's
    parent run), searched in every active experiment."""
    client = _client(mlflow_url)
    try:
        with bounded_requests(REQUEST_TIMEOUT):
            experiment_ids = [e.experiment_id for e in client.search_experiments()]
            runs = client.search_runs(
                experiment_ids,
                filter_string=f"tags.`dagster.run_id` = '{dagster_run_id}' "
                f"AND tags.`dagster.asset_key` = '{example.ASSET}'",
            )
    except Exception as exc:
        raise VerifyError(
            "mlflow-run",
            f"searching MLflow at {mlflow_url} failed: {describe_failure(exc)}",
            "run `dagma doctor` with MLFLOW_TRACKING_URI set to --mlflow-url (and the login "
            "in MLFLOW_TRACKING_USERNAME/PASSWORD if the server asks for one)",
        ) from None
    if not runs:
        raise VerifyError("mlflow-run", *_missing_run(mlflow_url, dagster_run_id, materialization))
    run = runs[0]
    experiment_id = run.info.experiment_id
    url = f"{mlflow_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run.info.run_id}"
    return FoundRun(run.info.run_id, experiment_id, url)


def _missing_run(
    mlflow_url: str, dagster_run_id: str, materialization: dict[str, str]
) -> tuple[str, str]:
    found = f"no MLflow run at {mlflow_url} has tag dagster.run_id={dagster_run_id}"
    if materialization.get("mlflow_tracking", "").startswith("off"):
        return (
            f"{found}: the materialization used the in-memory stub (tracking is off)",
            "set MLFLOW_USE_TRACKING=true in the code location's environment (charts/dagma: "
            "tracking.enabled=true), then run `dagma doctor` there",
        )
    if "mlflow_run_url" in materialization:
        return (
            f"{found}; the materialization recorded {materialization['mlflow_run_url']}",
            "the code location's MLFLOW_TRACKING_URI points at another server than "
            "--mlflow-url: pass the right --mlflow-url or correct the URI",
        )
    return found, "run `dagma doctor` where the code location runs"


def compare(mlflow_url: str, run: FoundRun) -> list[Check]:
    """The params, metric and artifact of ``run`` against the example's contract."""
    client = _client(mlflow_url)
    artifact, artifact_error = None, ""
    with bounded_requests(REQUEST_TIMEOUT), tempfile.TemporaryDirectory() as tmp:
        try:
            data = client.get_run(run.run_id).data
        except Exception as exc:
            raise VerifyError(
                "mlflow-run", f"reading run {run.run_id} failed: {describe_failure(exc)}"
            ) from None
        try:
            summary = client.download_artifacts(run.run_id, example.SUMMARY_FILE, tmp)
            artifact = Path(summary).read_text()
        except Exception as exc:
            artifact_error = describe_failure(exc)
    checks = [
        _values("params", data.params, example.PARAMS),
        _values("metrics", data.metrics, example.METRICS),
    ]
    if artifact is None:
        checks.append(
            Check(
                "artifact", Status.FAIL, f"{example.SUMMARY_FILE} cannot be read: {artifact_error}"
            )
        )
    else:
        missing = [line for line in example.SUMMARY_LINES if line not in artifact.splitlines()]
        checks.append(
            Check(
                "artifact",
                Status.FAIL if missing else Status.OK,
                f"{example.SUMMARY_FILE} holds {artifact.strip()!r}"
                + (f", expected lines {', '.join(missing)}" if missing else ""),
            )
        )
    return checks


def _values(name: str, stored: dict[str, Any], expected: dict[str, Any]) -> Check:
    differences = [
        f"{key}={stored.get(key)!r} (expected {value!r})"
        for key, value in expected.items()
        if stored.get(key) != value
    ]
    shown = ", ".join(f"{key}={stored.get(key)!r}" for key in expected)
    if differences:
        return Check(name, Status.FAIL, "differs: " + ", ".join(differences))
    return Check(name, Status.OK, shown)
