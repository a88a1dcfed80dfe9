"""The commands a user types: dg, dagster asset materialize, and the demo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.pasted_commands import printed_lines, run_as_printed

from dagma.dev.demo import PASTE
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
def test_a_settings_error_ends_the_command_with_its_message_and_no_frames(
    command: str, tmp_path: Path
) -> None:
    executable, *args = LOADING_COMMANDS[command]
    result = subprocess.run(
        [str(BIN / executable), *args],
        cwd=ROOT, env=_env(DAGSTER_HOME=str(tmp_path), MLFLOW_USE_TRACKING="ture"),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    # The message is the last thing printed, and no frame is printed anywhere.
    assert lines[-1].startswith("dagma: the MLflow settings cannot be used: "), result.stderr
    assert SETTINGS_ERROR in lines[-1]
    assert not any(line.lstrip().startswith(("File ", "Traceback")) for line in lines), lines


def test_dagster_dev_logs_a_settings_error_ending_with_its_message(tmp_path: Path) -> None:
    """``dagster dev`` keeps running and logs the load error: after its last frame comes the
    message, then only Dagster's one-line "Error loading repository location" summary."""
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        dev = subprocess.Popen(
            [str(BIN / "dagster"), "dev", "-m", "dagma.definitions", "-p", str(free_port())],
            cwd=ROOT, env=_env(DAGSTER_HOME=str(tmp_path), MLFLOW_USE_TRACKING="ture"),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while "Error loading repository location" not in log.read_text():
            assert dev.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        try:
            dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            # Only the log is this test's subject (Ctrl-C ending `make dev` is test_make_dev's):
            # on a loaded machine dagster dev has taken longer than 60 s to wind down.
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait(timeout=60)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    # Up to the summary: what follows is the shutdown the test asked for.
    summary = next(i for i, line in enumerate(lines) if "Error loading repository location" in line)
    last_frame = max(
        i for i, line in enumerate(lines[:summary]) if line.lstrip().startswith("File ")
    )
    after = lines[last_frame + 1 : summary]
    # After the frames, the message; then no frame, only the summary (and dagster dev's
    # own welcome banner, from another process, where the two interleave).
    assert any(SETTINGS_ERROR in line for line in after), after


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
        # SQLite store and proxied artifacts under the project's git-ignored folder, per port.
        data = tmp_path / ".mlflow-local" / f"port-{port}"
        assert (data / "mlflow.db").exists()
        assert len(list((data / "artifacts").rglob("train_summary.txt"))) == 2
        # The dagma doctor line it printed checks this very server, pasted as printed.
        [doctor] = printed_lines(second.stdout, PASTE)
        assert f"MLFLOW_TRACKING_URI=http://127.0.0.1:{port} " in doctor
        checked = run_as_printed(doctor, tmp_path)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "dagma doctor: all checks passed" in checked.stdout
    finally:
        stopped = _demo(tmp_path, "--stop")
    assert f"stopped the MLflow server at http://127.0.0.1:{port}" in stopped.stdout
    assert not is_healthy(f"http://127.0.0.1:{port}", timeout=2)


def test_make_says_installing_only_when_it_installs(tmp_path: Path) -> None:
    """With the environment matching uv.lock (as the suite runs), a make target installs
    nothing and says nothing about installing."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "demo-stop"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "installing dagma" not in result.stdout + result.stderr, result.stdout
    assert "no MLflow server recorded" in result.stdout
