"""`make demo` fails at once, saying why, when its MLflow server cannot start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dagma.dev.local_mlflow import free_port


def _demo(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.run(
        [sys.executable, "-m", "dagma.dev.demo", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port this test process listens on, without answering like MLflow."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def test_busy_port_fails_at_once_naming_the_port_its_holder_and_the_fix(
    tmp_path: Path, busy_port: int
) -> None:
    result = _demo(tmp_path, "--port", str(busy_port))
    assert result.returncode == 1
    first_line = result.stderr.splitlines()[0]
    assert first_line.startswith(f"error: port {busy_port} on 127.0.0.1 is already in use")
    assert f"by pid {os.getpid()} (" in first_line  # the holder: this test's process
    assert "no MLflow server answers there" in first_line
    assert "make demo MLFLOW_PORT=" in first_line
    assert not (tmp_path / ".mlflow-local").exists()  # nothing was started, nothing waited for


def test_busy_dagster_port_stops_make_dev_before_anything_starts(
    tmp_path: Path, busy_port: int
) -> None:
    mlflow_port = free_port()
    result = _demo(tmp_path, "--dev", "--port", str(mlflow_port), "--dagster-port", str(busy_port))
    assert result.returncode == 1
    assert f"error: port {busy_port} on 127.0.0.1 is already in use" in result.stderr
    # The hint repeats every setting the user gave, with a new port for the busy one.
    hint = result.stderr.rsplit("use another port: ", 1)[1].strip()
    words = hint.split()
    assert words[:3] == ["make", "dev", f"MLFLOW_PORT={mlflow_port}"], hint
    [dagster_port] = [w.split("=")[1] for w in words if w.startswith("DAGSTER_PORT=")]
    assert int(dagster_port) != busy_port
    assert not (tmp_path / ".mlflow-local").exists()


def test_server_that_exits_stops_the_wait_and_shows_the_end_of_its_log(tmp_path: Path) -> None:
    port = free_port()
    store = tmp_path / ".mlflow-local" / f"port-{port}" / "mlflow.db"  # that port's database
    store.parent.mkdir(parents=True)
    store.write_text("not a database")  # the server exits on start-up
    result = _demo(tmp_path, "--port", str(port))
    assert result.returncode == 1
    assert "exited with code" in result.stderr  # noticed the exit: did not wait for a timeout
    assert "the end of its log" in result.stderr
    assert "file is not a database" in result.stderr  # the log's last lines, the real cause
    assert not (store.parent / "server.pid").exists()
