"""A local MLflow Tracking server for development: ``make demo``, ``make dev`` and the tests.

It runs the way the in-cluster chart runs it: a SQLite backend store and
*proxied* artifacts (``--serve-artifacts --artifacts-destination``), so clients
upload artifacts through the server instead of writing to their own disk.
The ``mlflow`` command comes from the full ``mlflow`` package (dev group).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass
class LocalMlflowServer:
    """A running (or already answering) MLflow server on 127.0.0.1."""

    url: str
    data_dir: Path | None
    process: subprocess.Popen[bytes] | None

    def stop(self) -> None:
        """Stop the server if this object started it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


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


def start(data_dir: Path, port: int | None = None, timeout: float = 90.0) -> LocalMlflowServer:
    """Start a server keeping its data in ``data_dir``; reuse one already answering on ``port``.

    Raises ``RuntimeError`` with the server's log when it does not come up.
    """
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    if is_healthy(url):
        return LocalMlflowServer(url=url, data_dir=None, process=None)
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            server_command(data_dir, port), stdout=log, stderr=subprocess.STDOUT, cwd=data_dir
        )
    server = LocalMlflowServer(url=url, data_dir=data_dir, process=process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_healthy(url):
            return server
        if process.poll() is not None:
            break
        time.sleep(0.3)
    server.stop()
    tail = log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"MLflow server at {url} did not become healthy; log {log_path}:\n{tail}")
