"""The local MLflow Tracking server of ``make demo``, ``make dev``, the tests and the benchmark.

It runs the way the in-cluster chart runs it: a SQLite backend store and
*proxied* artifacts (``--serve-artifacts --artifacts-destination``), so clients
upload artifacts through the server instead of writing to their own disk.
The ``mlflow`` command comes from the full ``mlflow`` package (dev group).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

LOG_TAIL_LINES = 25


class PortInUseError(RuntimeError):
    """Something other than a healthy MLflow server holds the port."""

    def __init__(self, port: int, holder: str | None) -> None:
        self.port, self.holder = port, holder
        held_by = f" by {holder}" if holder else ""
        super().__init__(f"port {port} on 127.0.0.1 is already in use{held_by}")


class ServerStartError(RuntimeError):
    """The MLflow server exited or never became healthy; the message ends with its log."""


@dataclass
class LocalMlflowServer:
    """A running (or already answering) MLflow server on 127.0.0.1."""

    url: str
    data_dir: Path | None
    process: subprocess.Popen[bytes] | None
    # In its own session and process group (see start): stopped as a group.
    detached: bool = False

    def stop(self) -> None:
        """Stop the server if this object started it."""
        if self.process is None or self.process.poll() is not None:
            return
        if self.detached:
            stop_process_group(self.process.pid, child=self.process)
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def stop_process_group(
    pgid: int,
    sig: signal.Signals = signal.SIGTERM,
    grace: float = 20.0,
    child: subprocess.Popen | None = None,
) -> bool:
    """Send ``sig`` to process group ``pgid``, wait until every member has exited.

    Members still alive after ``grace`` seconds are killed. ``child`` is the group
    leader when it is this process's child: it is reaped, as a zombie still counts
    as a member. Returns whether the group exited without being killed.
    """
    try:
        os.killpg(pgid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if child is not None:
                child.poll()
            os.killpg(pgid, 0)  # raises ProcessLookupError once the group is empty
            time.sleep(0.2)
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    if child is not None:
        child.wait()
    return False


def is_healthy(url: str, timeout: float = 1.0) -> bool:
    """Whether an MLflow server answers ``/health`` at ``url``."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    """Whether a server could not bind 127.0.0.1:``port`` right now."""
    with socket.socket() as sock:
        # As servers do: ignore connections lingering in TIME_WAIT, not listeners.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _listening_inodes(port: int) -> set[str]:
    """Inodes of the sockets listening on TCP ``port`` (Linux ``/proc/net/tcp*``)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "0A":  # 0A: LISTEN
                inodes.add(fields[9])
    return inodes


def port_holder_pid(port: int) -> int | None:
    """The pid of a process listening on TCP ``port``, if it can be found.

    Reads ``/proc`` (Linux); processes of other users are invisible without root.
    """
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in wanted for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:  # gone, or not ours to read
            continue
    return None


def command_line(pid: int) -> str | None:
    """The command line of process ``pid``, or None when it is gone (or not ours to read)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return None


def port_holder(port: int) -> str | None:
    """``pid N (command line)`` of the process listening on ``port``, if it can be found."""
    pid = port_holder_pid(port)
    command = command_line(pid) if pid is not None else None
    return None if command is None else f"pid {pid} ({command[:120]})"


def ui_command(backend_store_uri: str) -> str:
    """An ``mlflow ui`` command for a local store that runs as printed, from any directory.

    This environment's own ``mlflow`` by its absolute path (no activated virtualenv needed),
    on a port that is free right now (the demo's server may hold 5000, MLflow's default).
    """
    mlflow = Path(sys.executable).parent / "mlflow"
    program = [str(mlflow)] if mlflow.exists() else [sys.executable, "-m", "mlflow"]
    return shlex.join(
        [*program, "ui", "--backend-store-uri", backend_store_uri, "--port", str(free_port())]
    )


def log_tail(log_path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a server log."""
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {log_path})"


def server_command(data_dir: Path, port: int, workers: int = 1) -> list[str]:
    """The ``mlflow server`` command line for a SQLite store and proxied artifacts."""
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    return [
        mlflow, "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", str(workers),
        "--backend-store-uri", f"sqlite:///{(data_dir / 'mlflow.db').resolve()}",
        "--serve-artifacts",
        "--artifacts-destination", str((data_dir / "artifacts").resolve()),
    ]  # fmt: skip


def start(
    data_dir: Path, port: int | None = None, timeout: float = 90.0, *, detached: bool = False
) -> LocalMlflowServer:
    """Start a server keeping its data in ``data_dir``; reuse one already answering on ``port``.

    ``detached`` puts the server in its own session, so a Ctrl-C in the terminal
    does not reach it (its owner stops it). Raises :class:`PortInUseError` at once
    when something else holds the port, and :class:`ServerStartError` with the end
    of the server's log as soon as it exits (or after ``timeout``).
    """
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    if is_healthy(url):
        return LocalMlflowServer(url=url, data_dir=None, process=None)
    if port_in_use(port):
        raise PortInUseError(port, port_holder(port))
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            server_command(data_dir, port),
            stdout=log, stderr=subprocess.STDOUT, cwd=data_dir, start_new_session=detached,
            # As charts/mlflow runs it: no GenAI job runner, whose ~7 workers each import
            # MLflow right after /health answers (seconds of CPU the first requests wait for).
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )  # fmt: skip
    server = LocalMlflowServer(url=url, data_dir=data_dir, process=process, detached=detached)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if is_healthy(url):
                return server
            if process.poll() is not None:
                break
            time.sleep(0.3)
    except BaseException:  # e.g. Ctrl-C while waiting: leave no server behind
        server.stop()
        raise
    exit_code = process.poll()
    server.stop()
    why = (
        f"exited with code {exit_code}"
        if exit_code is not None
        else f"did not become healthy within {timeout:.0f} s"
    )
    raise ServerStartError(
        f"MLflow server at {url} {why}; the end of its log {log_path}:\n{log_tail(log_path)}"
    )
