"""`make dev`: one Ctrl-C, or a script's SIGINT or SIGTERM, stops everything it started.

A terminal sends SIGINT to its foreground process group: make, ``uv run`` and
``python -m dagma.dev.demo --dev``. An IDE, a CI job or a supervisor sends SIGINT or
SIGTERM to the process group of a command it started with no terminal, and a script's
background job starts with SIGINT ignored (which dagster dev inherited, and then ignored
both signals until it was killed 60 s later). The tests do each to a real ``make dev``
with no TTY and check, by pid, that dagster dev, its webserver, daemon and code server, and
the MLflow server it started are all gone, cleanly, within ``STOP_LIMIT`` seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.tools import require_executable

from dagma.dev import local_mlflow

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 300
STOP_LIMIT = 15.0  # seconds from the signal until make has exited, everything stopped
STOP_TIMEOUT = 150  # past the limit: how long to wait before killing, for the failure message
# How the process starts: from a terminal's shell, or as a script's background job, whose
# shell sets SIGINT to ignored (an ignored signal stays ignored across exec).
STARTS = {
    "terminal": [],
    "script": ["sh", "-c", 'trap "" INT; exec "$@"', "sh"],
}
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
    return [make, "-f", str(ROOT / "Makefile"), "-o", "sync", "dev"]


@pytest.fixture
def running_server(tmp_path: Path) -> Iterator[local_mlflow.LocalMlflowServer]:
    server = local_mlflow.start(tmp_path / "already-running")
    yield server
    server.stop()


def _make_dev(
    command: list[str], cwd: Path, mlflow_port: int, start: str = "terminal"
) -> tuple[subprocess.Popen, Path]:
    dagster_port = local_mlflow.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DAGSTER_"))}
    env["UV_NO_SYNC"] = "1"  # the tests' own environment, as it is
    log = cwd / "make-dev.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*STARTS[start], *command, f"MLFLOW_PORT={mlflow_port}",
             f"DAGSTER_PORT={dagster_port}"],
            cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, and no controlling terminal
        )  # fmt: skip
    deadline = time.monotonic() + READY_TIMEOUT
    dagster_ui = f"http://127.0.0.1:{dagster_port}/server_info"
    while not (_answers(dagster_ui) and local_mlflow.is_healthy(f"http://127.0.0.1:{mlflow_port}")):
        if process.poll() is not None or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"make dev did not come up:\n{log.read_text()[-4000:]}")
        time.sleep(1)
    return process, log


def _stop(process: subprocess.Popen, log: Path, sig: signal.Signals) -> tuple[str, float]:
    """Send ``sig`` to the process group, as a terminal or a script does; return the output
    and the seconds until make exited."""
    started = time.monotonic()
    os.killpg(process.pid, sig)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"make dev still running after {sig.name}:\n{log.read_text()[-4000:]}")
    took = time.monotonic() - started
    print(f"make dev stopped {took:.1f} s after {sig.name}")  # the figure, shown with -s
    return log.read_text(), took


def _started(processes: dict[int, tuple[str, str]]) -> set[str]:
    commands = [command for _, command in processes.values()]
    return {name for name, part in EXPECTED.items() if any(part in c for c in commands)}


@pytest.mark.parametrize("start", ["terminal", "script"])
def test_sigint_stops_dagster_dev_and_the_mlflow_server_it_started_cleanly(
    make_dev_command: list[str], tmp_path: Path, start: str
) -> None:
    mlflow_port = local_mlflow.free_port()
    process, log = _make_dev(make_dev_command, tmp_path, mlflow_port, start)
    started = _descendants(process.pid)
    assert _started(started) == set(EXPECTED), started

    output, took = _stop(process, log, signal.SIGINT)
    assert _alive(started) == [], output[-3000:]
    assert not local_mlflow.port_in_use(mlflow_port)
    assert "dagster dev stopped (" in output
    assert "killed what was left" not in output, output[-3000:]
    assert f"stopped the MLflow server at http://127.0.0.1:{mlflow_port}" in output
    assert not (tmp_path / ".mlflow-local" / f"port-{mlflow_port}" / "server.pid").exists()
    assert took < STOP_LIMIT, output[-3000:]


def test_sigterm_from_a_script_stops_it_and_leaves_a_server_it_did_not_start(
    make_dev_command: list[str], tmp_path: Path, running_server: local_mlflow.LocalMlflowServer
) -> None:
    mlflow_port = int(running_server.url.rsplit(":", 1)[1])
    process, log = _make_dev(make_dev_command, tmp_path, mlflow_port, "script")
    started = _descendants(process.pid)
    assert _started(started) == set(EXPECTED) - {"MLflow server"}, started

    output, took = _stop(process, log, signal.SIGTERM)
    assert _alive(started) == [], output[-3000:]
    assert "killed what was left" not in output, output[-3000:]
    assert "already running: it stays up (make demo-stop stops it)" in output
    assert local_mlflow.is_healthy(running_server.url)
    assert took < STOP_LIMIT, output[-3000:]
