"""``dagma doctor --write-test``: a throw-away run with a param, a metric and an artifact.

(Named ``write_check`` so that pytest, which collects ``*_test.py`` files, leaves it alone.)

It goes through the official ``MlflowClient``, as runs do, into the configured
experiment; everything is read back, then the run is deleted.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from contextlib import AbstractContextManager
from pathlib import Path

from dagma import local_store
from dagma.cli.deadline import Deadline
from dagma.cli.report import Check, Status
from dagma.settings import mlflow_client_variables

PARAM = ("dagma_doctor_param", "42")
METRIC = ("dagma_doctor_metric", 0.5)
ARTIFACT = "dagma-doctor/write-test.txt"


def bounded_requests(timeout: float) -> AbstractContextManager[None]:
    """Run the block with MLflow's HTTP timeout set to ``timeout`` s, no retries, no progress bar.

    These are MLflow's own knobs, which it reads at each call: the client has no per-call
    timeout, and its default retries take minutes against a server that stops answering.
    """
    limits = {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, round(timeout))),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    return mlflow_client_variables(limits, replace=True)


def _experiment_id(client: object, uri: str, name: str) -> str:
    if local_store.is_sqlite(uri):
        # Open the database the way runs do, artifacts beside it: MLflow's client would
        # create it with the Default experiment's artifacts under ./mlruns of this directory.
        store = local_store.open_sqlite_store(uri)
        experiment = store.get_experiment_by_name(name)
        return experiment.experiment_id if experiment else store.create_experiment(name)
    experiment = client.get_experiment_by_name(name)  # type: ignore[attr-defined]
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name)  # type: ignore[attr-defined]


def write_check(uri: str, experiment: str, deadline: Deadline) -> Check:
    """Create a run, log to it, read it back, delete it; one check with what happened."""
    from mlflow import MlflowClient

    if local_store.is_sqlite(uri):
        # Before MlflowClient, which would create the database itself.
        local_store.open_sqlite_store(uri)
    client = MlflowClient(tracking_uri=uri)
    marker = uuid.uuid4().hex
    run_id = None
    step = "finding the experiment"
    try:
        with bounded_requests(deadline.timeout(5.0)), tempfile.TemporaryDirectory() as tmp:
            experiment_id = _experiment_id(client, uri, experiment)
            step = "creating a run"
            run = client.create_run(
                experiment_id, run_name="dagma-doctor-write-test", tags={"dagma.doctor": marker}
            )
            run_id = run.info.run_id
            step = "logging a param and a metric"
            client.log_param(run_id, *PARAM)
            client.log_metric(run_id, *METRIC)
            step = f"uploading an artifact to {run.info.artifact_uri}"
            client.log_text(run_id, marker, ARTIFACT)
            step = "reading the run back"
            stored = client.get_run(run_id).data
            downloaded = Path(client.download_artifacts(run_id, ARTIFACT, tmp)).read_text()
            differences = _differences(stored.params, stored.metrics, downloaded, marker)
            step = "deleting the run"
            client.delete_run(run_id)
            run_id = None
    except Exception as exc:
        text = " ".join(str(exc).split())[:240]
        if run_id is not None:
            with contextlib.suppress(Exception), bounded_requests(deadline.timeout(2.0)):
                client.delete_run(run_id)
        return Check(
            "write-test",
            Status.FAIL,
            f"failed while {step}: {text}",
            "the checks above name the usual causes; the server's log has the rest",
        )
    if differences:
        return Check(
            "write-test",
            Status.FAIL,
            "the run read back differs from what was written: " + "; ".join(differences),
            "check the server's logs and its artifact storage",
        )
    return Check(
        "write-test",
        Status.OK,
        f"a run with a param, a metric and an artifact was written to {experiment!r}, "
        "read back and deleted",
    )


def _differences(
    params: dict[str, str], metrics: dict[str, float], artifact: str, marker: str
) -> list[str]:
    found = []
    if params.get(PARAM[0]) != PARAM[1]:
        found.append(f"param {PARAM[0]}={params.get(PARAM[0])!r}, expected {PARAM[1]!r}")
    if metrics.get(METRIC[0]) != METRIC[1]:
        found.append(f"metric {METRIC[0]}={metrics.get(METRIC[0])!r}, expected {METRIC[1]!r}")
    if artifact != marker:
        found.append(f"artifact {ARTIFACT} holds {artifact[:40]!r}, expected {marker!r}")
    return found
