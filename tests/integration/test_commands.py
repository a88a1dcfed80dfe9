"""The commands a user types: dg, dagster asset materialize, and the demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dagma.dev.local_mlflow import free_port, is_healthy

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**clean, **extra}


def test_dg_recognises_the_project_and_lists_the_asset() -> None:
    result = subprocess.run(
        [str(BIN / "dg"), "list", "defs", "--json"],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    listed = json.loads(result.stdout)
    [asset] = listed["assets"]
    assert (asset["asset_key"], asset["group_name"]) == ("train_model_stub", "models")
    assert [r["name"] for r in listed["resources"]] == ["tracking"]


def test_dagster_cli_materializes_with_the_stub_by_default(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize",
         "-m", "dagma.definitions", "--select", "train_model_stub"],
        cwd=tmp_path, env=_env(DAGSTER_HOME=str(tmp_path)), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "MLflow tracking is off" in result.stderr
    assert "RUN_SUCCESS" in result.stderr
    assert not (tmp_path / "train_summary.txt").exists()


def test_dg_launch_materializes_with_the_stub_by_default(tmp_path: Path) -> None:
    # dg's equivalent of `dagster asset materialize`; dg finds the project from the cwd.
    result = subprocess.run(
        [str(BIN / "dg"), "launch", "--assets", "train_model_stub"],
        cwd=ROOT, env=_env(DAGSTER_HOME=str(tmp_path)), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "MLflow tracking is off" in result.stderr
    assert "RUN_SUCCESS" in result.stderr


SETTINGS_ERROR = "MLFLOW_USE_TRACKING='ture' is not a recognised value. Use one of 1/true/yes/on"
LOADING_COMMANDS = {
    "dagster asset materialize": ["dagster", "asset", "materialize",
                                  "-m", "dagma.definitions", "--select", "train_model_stub"],
    "dg launch": ["dg", "launch", "--assets", "train_model_stub"],
}  # fmt: skip


@pytest.mark.parametrize("command", list(LOADING_COMMANDS))
def test_settings_error_is_the_first_thing_printed_not_the_end_of_a_traceback(
    command: str, tmp_path: Path
) -> None:
    executable, *args = LOADING_COMMANDS[command]
    result = subprocess.run(
        [str(BIN / executable), *args],
        cwd=ROOT, env=_env(DAGSTER_HOME=str(tmp_path), MLFLOW_USE_TRACKING="ture"),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    first = next(i for i, line in enumerate(lines) if SETTINGS_ERROR in line)
    traceback = next(i for i, line in enumerate(lines) if line.startswith("Traceback"))
    assert first < traceback, result.stderr
    # Before it only the CLI's own notices (e.g. dg's venv warning), no frames.
    assert lines[first].startswith("dagma: the MLflow settings cannot be used: "), lines[first]
    assert not any(line.lstrip().startswith("File ") for line in lines[:first])


def _demo(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dagma.dev.demo", *args],
        cwd=cwd, env=_env(), capture_output=True, text=True, timeout=400,
    )  # fmt: skip


def test_demo_starts_a_server_runs_twice_and_prints_the_run(tmp_path: Path) -> None:
    port = free_port()
    try:
        first = _demo(tmp_path, "--port", str(port))
        assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
        assert "starting a local MLflow server" in first.stdout
        second = _demo(tmp_path, "--port", str(port))
        assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
        assert "reusing the MLflow server" in second.stdout
        for output in (first.stdout, second.stdout):
            assert "(FINISHED)" in output
            assert "{'n_estimators': '10'}" in output
            assert "{'rmse': 0.123}" in output
            assert "n_estimators=10" in output and "rmse=0.123" in output
            assert f"http://127.0.0.1:{port}/#/experiments/0/runs/" in output
        run_ids = {line.split()[2] for o in (first.stdout, second.stdout)
                   for line in o.splitlines() if line.startswith("MLflow run")}  # fmt: skip
        assert len(run_ids) == 2
        # SQLite store and proxied artifacts under the project's git-ignored folder.
        assert (tmp_path / ".mlflow-local" / "mlflow.db").exists()
        assert len(list((tmp_path / ".mlflow-local" / "artifacts").rglob("train_summary.txt"))) == 2
    finally:
        stopped = _demo(tmp_path, "--stop")
    assert "stopped the demo MLflow server" in stopped.stdout
    assert not is_healthy(f"http://127.0.0.1:{port}", timeout=2)
