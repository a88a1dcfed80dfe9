"""``make demo-training``: the training pipeline against ``make demo``'s local MLflow server.

Starts the local server (or reuses the one answering on ``--port``, as ``make demo``
does), runs the job ``training_pipeline`` for one day with ``dagster job execute``, then
reads back what happened, from Dagster's event log and from MLflow: the version
registered, the check's verdict, where the alias ``champion`` points, the training and
scoring runs' metrics. ``--bad`` trains with a config the check refuses and shows the
alias staying where it was (the run fails at the check, as it should: exit code 0 when it
did exactly that).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagma.dev.demo import dagster_home, ensure_server, fail, step
from dagma.examples.training import contract

MODULE = "dagma.examples.training.definitions"
DEFAULT_EXPERIMENT = "dagma-training"


def pipeline_env(tracking_uri: str, dagster_home: Path) -> dict[str, str]:
    """The environment of the job: tracking on, this server, the demo's Dagster instance."""
    env = {**os.environ, "MLFLOW_USE_TRACKING": "true", "MLFLOW_TRACKING_URI": tracking_uri,
           "DAGSTER_HOME": str(dagster_home)}  # fmt: skip
    if not (env.get("MLFLOW_EXPERIMENT") or env.get("MLFLOW_EXPERIMENT_NAME")):
        env["MLFLOW_EXPERIMENT"] = DEFAULT_EXPERIMENT  # beside make demo's runs, not among them
    return env


def run_pipeline(day: str, env: dict[str, str], model_config: dict[str, Any] | None) -> bool:
    """``dagster job execute`` of the pipeline for ``day``; whether the run succeeded."""
    with tempfile.TemporaryDirectory(prefix="dagma-") as tmp:
        config = Path(tmp) / "run_config.json"  # JSON is YAML: `-c` reads it
        config.write_text(json.dumps(contract.run_config(model_config)))
        command = [sys.executable, "-m", "dagster", "job", "execute", "-m", MODULE,
                   "-j", contract.JOB, "--tags", json.dumps({"dagster/partition": day}),
                   "-c", str(config)]  # fmt: skip
        result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0 and "test_rmse_below_limit" not in result.stderr:
        fail(f"the pipeline failed before its check:\n{result.stderr[-4000:]}")
    return result.returncode == 0


@dataclass(frozen=True)
class Outcome:
    """What one run of the pipeline did, as Dagster recorded it."""

    dagster_run_id: str
    materializations: dict[str, dict[str, Any]]  # asset -> metadata values
    check_passed: bool | None  # None: the check did not run
    check_metadata: dict[str, Any]


def latest_outcome(dagster_home: Path) -> Outcome:
    """The newest run of the pipeline in the instance at ``dagster_home``."""
    from dagster import DagsterEventType, DagsterInstance, RunsFilter
    from dagster._core.instance.ref import InstanceRef

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance:
        [run] = instance.get_runs(filters=RunsFilter(job_name=contract.JOB), limit=1)
        materialized = instance.get_records_for_run(
            run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
        ).records
        checks = instance.get_records_for_run(
            run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
    materializations = {}
    for record in materialized:
        event = record.event_log_entry.asset_materialization
        if event is not None:
            metadata = {key: value.value for key, value in event.metadata.items()}
            materializations[event.asset_key.to_user_string()] = metadata
    passed, check_metadata = None, {}
    for record in checks:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        passed = evaluation.passed
        check_metadata = {key: value.value for key, value in evaluation.metadata.items()}
    return Outcome(run.run_id, materializations, passed, check_metadata)


def champion(client: Any) -> str | None:
    """Where the alias points now (None: nowhere yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(contract.MODEL_NAME).aliases.get(contract.ALIAS)
    except MlflowException:
        return None


def show(url: str, outcome: Outcome, before: str | None, after: str | None) -> None:
    """Print the registered version, the check, the alias, and the metrics MLflow holds."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    trained = outcome.materializations[contract.TRAINED_MODEL]
    version = client.get_model_version(contract.MODEL_NAME, str(trained["model_version"]))
    run = client.get_run(version.run_id)
    metrics = {k: round(v, 3) for k, v in sorted(run.data.metrics.items())}
    print(f"\nDagster run  {outcome.dagster_run_id}")
    print(f"registered   {contract.MODEL_NAME} version {version.version}, from MLflow run "
          f"{version.run_id}")  # fmt: skip
    print(f"  tags       {dict(sorted(version.tags.items()))}")
    print(f"  metrics    {metrics}")
    verdict = {True: "passed", False: "FAILED", None: "did not run"}[outcome.check_passed]
    rmse = run.data.metrics["test_rmse"]
    limit = contract.MAX_TEST_RMSE
    print(f"check        {contract.CHECK}: {verdict} (test RMSE {rmse:.2f}, limit {limit})")
    moved = "unchanged" if after == before else f"moved from {before or 'nowhere'}"
    print(f"alias        {contract.ALIAS} -> version {after or 'none'} ({moved})")
    scored = outcome.materializations.get(contract.SCORED)
    if scored is not None:
        scoring = client.get_run(str(scored["mlflow_run_id"]))
        print(f"scoring run  {scoring.info.run_id}: model version "
              f"{scoring.data.tags.get('model_version')}, "
              f"{ {k: round(v, 3) for k, v in sorted(scoring.data.metrics.items())} }")  # fmt: skip
    print(f"UI           {url}/#/models/{contract.MODEL_NAME}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000, help="the MLflow server's port")
    parser.add_argument("--day", default=contract.LAST_DAY, help="the partition to run")
    parser.add_argument(
        "--bad", action="store_true", help="train a model the check refuses; the alias stays"
    )
    args = parser.parse_args(argv)
    from mlflow import MlflowClient

    target = "demo-training-bad" if args.bad else "demo-training"
    url = ensure_server(args.port, target, {"MLFLOW_PORT": args.port}).url
    home = dagster_home("training", str(args.port))
    before = champion(MlflowClient(tracking_uri=url))
    config = contract.BAD_MODEL_CONFIG if args.bad else None
    what = f"a deliberately bad model ({config})" if args.bad else "the model"
    step(f"running {contract.JOB} for {args.day}: {what}, through Dagster (~1 min)")
    succeeded = run_pipeline(args.day, pipeline_env(url, home), config)
    step("reading back from Dagster and MLflow")
    outcome = latest_outcome(home)
    after = champion(MlflowClient(tracking_uri=url))
    show(url, outcome, before, after)
    if args.bad and (succeeded or outcome.check_passed is not False or after != before):
        fail("the bad model was not stopped by the check: see the output above")
    trained = str(outcome.materializations[contract.TRAINED_MODEL]["model_version"])
    if not args.bad and not (succeeded and outcome.check_passed and after == trained):
        fail("the pipeline did not promote its model: see the output above")
    if args.bad:
        step(f"as intended: the check failed and {contract.ALIAS} stayed on version {after}")


if __name__ == "__main__":
    main()
