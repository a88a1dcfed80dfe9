"""``dagma verify`` against a real ``dagster dev`` and a real MLflow server.

One ``dagster dev`` for the module, with five code locations: dagma's own (tracking
on, to the session's MLflow server) and four that make each failure real — the stub
(nothing reaches MLflow), a server that is not there (the step fails), other values
(the comparison fails), and a location that does not load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from support.dagster_local import command_env, dagster_dev, init_instance, write_workspace
from support.example_runs import example_run_filter

from dagma.dev.local_mlflow import free_port

DAGMA = Path(sys.executable).parent / "dagma"
LOCATIONS = Path(__file__).resolve().parents[1] / "support" / "verify_locations"
FILES = {
    "stub": LOCATIONS / "stub_training.py",
    "unreachable": LOCATIONS / "unreachable_training.py",
    "drifted": LOCATIONS / "drifted_training.py",
    "broken": LOCATIONS / "broken_location.py",
}


@pytest.fixture(scope="module")
def dagster_url(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = init_instance(tmp_path_factory.mktemp("verify-dagster-home"))
    workspace = write_workspace(home / "workspace.yaml", {"dagma": "dagma.definitions"}, FILES)
    env = command_env(
        home,
        MLFLOW_USE_TRACKING="true",
        MLFLOW_TRACKING_URI=mlflow_server,
        MLFLOW_EXPERIMENT="verify",
    )
    with dagster_dev(workspace, env, expected=1 + len(FILES)) as url:
        yield url


def verify(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``dagma verify`` as a user would; print its output and duration (shown with -s)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DAGSTER_"))}
    started = time.monotonic()
    result = subprocess.run(
        [str(DAGMA), "verify", *args], env={**env, "DO_NOT_TRACK": "true"},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    print(f"dagma verify {' '.join(args)}: {time.monotonic() - started:.1f} s\n{result.stdout}")
    return result


def line(result: subprocess.CompletedProcess[str], check: str) -> str:
    [found] = [row for row in result.stdout.splitlines() if row[2:].split(" ")[0] == check]
    return found


def test_happy_path_finds_the_run_and_prints_both_links(dagster_url: str, mlflow_server: str):
    result = verify(
        "--dagster-url", dagster_url, "--mlflow-url", mlflow_server, "--location", "dagma"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "QUEUED" in result.stderr and "SUCCESS" in result.stderr  # the progress display
    assert line(result, "params") == "✔ params         n_estimators='10'"
    assert line(result, "metrics") == "✔ metrics        rmse=0.123"
    assert "'n_estimators=10\\nrmse=0.123'" in line(result, "artifact")
    [dagster_link] = [r for r in result.stdout.splitlines() if r.startswith("Dagster UI: ")]
    [mlflow_link] = [r for r in result.stdout.splitlines() if r.startswith("MLflow UI: ")]
    dagster_run_id = dagster_link.rsplit("/", 1)[1]
    assert dagster_link == f"Dagster UI: {dagster_url}/runs/{dagster_run_id}"
    # The run verify reported is the one MLflow holds for that Dagster run.
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("verify")
    [run] = client.search_runs([experiment.experiment_id], example_run_filter(dagster_run_id))
    assert mlflow_link.endswith(f"/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}")
    assert run.data.params["n_estimators"] == "10"


def test_webserver_unreachable(mlflow_server: str):
    port = free_port()
    result = verify("--dagster-url", f"http://127.0.0.1:{port}", "--mlflow-url", mlflow_server)
    assert result.returncode == 1
    assert line(result, "webserver") == (
        f"✘ webserver  the Dagster webserver at http://127.0.0.1:{port} does not answer: "
        "connection refused"
    )


def test_json_report_names_the_failed_check(mlflow_server: str):
    result = verify(
        "--dagster-url", f"http://127.0.0.1:{free_port()}", "--mlflow-url", mlflow_server, "--json"
    )
    report = json.loads(result.stdout)
    assert result.returncode == 1 and report["ok"] is False
    assert [(c["name"], c["status"]) for c in report["checks"]] == [
        ("mlflow", "ok"),
        ("webserver", "fail"),
    ]


def test_mlflow_unreachable_stops_before_launching(dagster_url: str):
    port = free_port()
    result = verify("--dagster-url", dagster_url, "--mlflow-url", f"http://127.0.0.1:{port}")
    assert result.returncode == 1
    assert line(result, "mlflow").startswith(f"✘ mlflow  http://127.0.0.1:{port}/health:")
    assert "launched" not in result.stderr


def test_several_locations_with_the_asset_need_a_choice(dagster_url: str, mlflow_server: str):
    result = verify("--dagster-url", dagster_url, "--mlflow-url", mlflow_server)
    assert result.returncode == 1
    assert "4 code locations define train_model_stub" in line(result, "code-location")
    assert "choose one with --location" in result.stdout


def test_unknown_location_lists_the_loaded_ones(dagster_url: str, mlflow_server: str):
    result = verify("--dagster-url", dagster_url, "--mlflow-url", mlflow_server, "--location", "x")
    assert result.returncode == 1
    assert "has no code location 'x' (it has: dagma, stub, unreachable, drifted, broken)" in (
        result.stdout
    )


def test_location_that_fails_to_load_shows_its_error(dagster_url: str, mlflow_server: str):
    result = verify(
        "--dagster-url", dagster_url, "--mlflow-url", mlflow_server, "--location", "broken"
    )
    assert result.returncode == 1
    found = line(result, "code-location")
    assert found.startswith("✘ code-location  code location failed to load — broken:")
    assert "MLFLOW_USE_TRACKING='maybe' is not a recognised value" in found


def test_failed_run_shows_the_steps_error(dagster_url: str, mlflow_server: str):
    result = verify(
        "--dagster-url", dagster_url, "--mlflow-url", mlflow_server, "--location", "unreachable"
    )
    assert result.returncode == 1
    found = line(result, "run")
    assert "ended FAILURE: step train_model_stub:" in found
    assert "MLflow Tracking server at http://127.0.0.1:9" in found and "not reachable" in found


def test_stub_run_is_missing_in_mlflow_and_says_why(dagster_url: str, mlflow_server: str):
    result = verify(
        "--dagster-url", dagster_url, "--mlflow-url", mlflow_server, "--location", "stub"
    )
    assert result.returncode == 1
    assert line(result, "run").startswith("✔ run")
    found = line(result, "mlflow-run")
    assert "has tag dagster.run_id=" in found
    assert "the materialization used the in-memory stub (tracking is off)" in found
    assert "MLFLOW_USE_TRACKING=true" in result.stdout


def test_values_that_differ_are_named(dagster_url: str, mlflow_server: str):
    result = verify(
        "--dagster-url", dagster_url, "--mlflow-url", mlflow_server, "--location", "drifted"
    )
    assert result.returncode == 1
    assert line(result, "params") == "✘ params         differs: n_estimators='11' (expected '10')"
    assert line(result, "metrics") == "✘ metrics        differs: rmse=0.5 (expected 0.123)"
    assert "expected lines n_estimators=10, rmse=0.123" in line(result, "artifact")
