"""`make dev`: one Ctrl-C stops everything it started, as a terminal delivers it.

A terminal sends SIGINT to its foreground process group: make, ``uv run`` and
``python -m dagma.dev.demo --dev``. The test does the same to a real ``make dev``
and then checks, by pid, that dagster dev, its webserver, daemon and code
server, and the MLflow server it started are all gone.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.tools import missing, require_executable

from dagma.dev import local_mlflow

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 300
STOP_TIMEOUT = 150
# What `make dev` must have started, by a part of each command line.
EXPECTED = {
    "dagster dev": "dagster dev",
    "webserver": "dagster_webserver",
    "daemon": "dagster._daemon",
    "code server": "dagster code-server",
    "MLflow server": "mlflow server",
}


def _process_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, start time, command line) of every visible process."""
    table = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        table[int(proc.name)] = (int(fields[1]), fields[19], command)
    return table


def _descendants(root: int) -> dict[int, tuple[str, str]]:
    """pid -> (start time, command line) of every process below ``root``."""
    table = _process_table()
    found: dict[int, tuple[str, str]] = {}
    parents = {root}
    while parents:
        children = {pid for pid, (ppid, _, _) in table.items() if ppid in parents}
        children -= found.keys()
        found.update({pid: table[pid][1:] for pid in children})
        parents = children
    return found


def _alive(processes: dict[int, tuple[str, str]]) -> list[str]:
    table = _process_table()
    return [
        f"{pid} {command}"
        for pid, (started, command) in processes.items()
        if pid in table and table[pid][1] == started  # the same process, not a reused pid
    ]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def make_dev_command() -> list[str]:
    """``make dev`` from this checkout, without the uv sync step (the venv is in use)."""
    make = require_executable("make", "install GNU make (Debian: apt-get install make)")
    # Under `make test` python3 on PATH is the project's venv, which has no uv: use the
    # interpreter the Makefile installed uv into (it exports it as UV_PYTHON).
    candidates = [os.environ.get("UV_PYTHON"), shutil.which("python3")]
    for python in filter(None, candidates):
        if subprocess.run([python, "-m", "uv", "--version"], capture_output=True).returncode == 0:
            return [make, "-f", str(ROOT / "Makefile"), "-o", "sync", f"PYTHON={python}", "dev"]
    missing(f"uv for any of {candidates} (what the Makefile runs)", "run `make sync` once")
    raise AssertionError("unreachable")


@pytest.fixture
def running_server(tmp_path: Path) -> Iterator[local_mlflow.LocalMlflowServer]:
    server = local_mlflow.start(tmp_path / "already-running")
    yield server
    server.stop()


def _make_dev(command: list[str], cwd: Path, mlflow_port: int) -> tuple[subprocess.Popen, Path]:
    dagster_port = local_mlflow.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DAGSTER_"))}
    env["UV_NO_SYNC"] = "1"  # the tests' own environment, as it is
    log = cwd / "make-dev.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, f"MLFLOW_PORT={mlflow_port}", f"DAGSTER_PORT={dagster_port}"],
            cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own foreground-like process group
        )  # fmt: skip
    deadline = time.monotonic() + READY_TIMEOUT
    dagster_ui = f"http://127.0.0.1:{dagster_port}/server_info"
    while not (_answers(dagster_ui) and local_mlflow.is_healthy(f"http://127.0.0.1:{mlflow_port}")):
        if process.poll() is not None or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"make dev did not come up:\n{log.read_text()[-4000:]}")
        time.sleep(1)
    return process, log


def _ctrl_c(process: subprocess.Popen, log: Path) -> str:
    os.killpg(process.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"make dev still running after Ctrl-C:\n{log.read_text()[-4000:]}")
    return log.read_text()


def _started(processes: dict[int, tuple[str, str]]) -> set[str]:
    commands = [command for _, command in processes.values()]
    return {name for name, part in EXPECTED.items() if any(part in c for c in commands)}


def test_ctrl_c_stops_dagster_dev_and_the_mlflow_server_it_started(
    make_dev_command: list[str], tmp_path: Path
) -> None:
    mlflow_port = local_mlflow.free_port()
    process, log = _make_dev(make_dev_command, tmp_path, mlflow_port)
    started = _descendants(process.pid)
    assert _started(started) == set(EXPECTED), started

    output = _ctrl_c(process, log)
    assert _alive(started) == [], output[-3000:]
    assert not local_mlflow.port_in_use(mlflow_port)
    assert "dagster dev stopped" in output
    assert f"stopped the MLflow server at http://127.0.0.1:{mlflow_port}" in output
    assert not (tmp_path / ".mlflow-local" / "server.pid").exists()


def test_ctrl_c_leaves_an_mlflow_server_it_did_not_start_and_says_so(
    make_dev_command: list[str], tmp_path: Path, running_server: local_mlflow.LocalMlflowServer
) -> None:
    mlflow_port = int(running_server.url.rsplit(":", 1)[1])
    process, log = _make_dev(make_dev_command, tmp_path, mlflow_port)
    started = _descendants(process.pid)
    assert _started(started) == set(EXPECTED) - {"MLflow server"}, started

    output = _ctrl_c(process, log)
    assert _alive(started) == [], output[-3000:]
    assert "already running: it stays up (make demo-stop stops it)" in output
    assert local_mlflow.is_healthy(running_server.url)
