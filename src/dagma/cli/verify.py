"""``dagma verify``: the design's acceptance check as one command against a running deployment.

Checks MLflow answers, finds the code location that defines ``train_model_stub``, launches
it through Dagster's GraphQL API, follows the run, then finds its MLflow run by the
``dagster.run_id`` tag and compares params, metric and artifact. Exit 0 only on full success.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from dagma.cli.endpoints import DEFAULT_DAGSTER_URL, DEFAULT_MLFLOW_URL
from dagma.cli.report import Check, Report, Status

DEFAULT_TIMEOUT = 600.0  # a cold cluster pulls the run pod's image
LOCATION_WAIT = 120.0
UI_NAMES = {"dagster": "Dagster", "mlflow": "MLflow"}


def verify(
    dagster_url: str = DEFAULT_DAGSTER_URL,
    mlflow_url: str = DEFAULT_MLFLOW_URL,
    location: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    progress: TextIO = sys.stderr,
) -> int:
    """Run the acceptance check; print the report and both UI links; return the exit code."""
    from dagma.cli import dagster_run, mlflow_run
    from dagma.cli.dagster_run import VerifyError

    dagster_url, mlflow_url = dagster_url.rstrip("/"), mlflow_url.rstrip("/")
    started = time.monotonic()
    report = Report("dagma verify", [])
    links: dict[str, str] = {}
    try:
        mlflow_run.check_reachable(mlflow_url)
        report.add(Check("mlflow", Status.OK, f"MLflow answers at {mlflow_url}"))
        client = dagster_run.graphql_client(dagster_url)
        found = dagster_run.find_location(client, dagster_url, location, LOCATION_WAIT, progress)
        report.add(Check("webserver", Status.OK, f"Dagster answers at {dagster_url}"))
        report.add(
            Check("code-location", Status.OK, f"{found.name} is loaded and defines the asset")
        )
        run_id = dagster_run.launch(client, dagster_url, found)
        links["dagster"] = f"{dagster_url}/runs/{run_id}"
        progress.write(f"launched {dagster_run.ASSET} as run {run_id}\n")
        outcome = dagster_run.follow(client, dagster_url, run_id, timeout, progress)
        if outcome.status != "SUCCESS":
            errors = " | ".join(outcome.errors) or "no error event recorded"
            raise VerifyError(
                "run",
                f"run {run_id} ended {outcome.status}: {errors[:1500]}",
                f"the run's page has the full log: {links['dagster']}",
            )
        report.add(Check("run", Status.OK, f"run {run_id} succeeded"))
        run = mlflow_run.find_run(mlflow_url, run_id, outcome.materialization)
        links["mlflow"] = run.url
        report.add(Check("mlflow-run", Status.OK, f"MLflow run {run.run_id}"))
        for check in mlflow_run.compare(mlflow_url, run):
            report.add(check)
    except VerifyError as exc:
        report.add(Check(exc.check, Status.FAIL, exc.found, exc.fix))
    duration = round(time.monotonic() - started, 1)
    report.write(out, as_json=as_json, duration_seconds=duration, links=links)
    if not as_json:
        for name, url in links.items():
            out.write(f"{UI_NAMES[name]} UI: {url}\n")
        out.write(f"took {duration} s\n")
    return 0 if report.passed else 1
