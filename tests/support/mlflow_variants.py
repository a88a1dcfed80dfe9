"""Local MLflow servers started with the flags that break tracking, for ``dagma doctor``'s tests.

They are :func:`dagma.devserver.server_command` with one thing changed — a restrictive
``--allowed-hosts``, no artifact proxying, or basic auth — started side by side (each
takes seconds to come up) and stopped by their own process.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from dagma import devserver

ADMIN = "dagma-admin"
# No telemetry; no GenAI job runner, whose ~7 worker processes import MLflow right after
# /health answers and would slow every command timed against the server.
QUIET = {"DO_NOT_TRACK": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def without_proxying(command: list[str], artifact_root: Path) -> list[str]:
    """``command`` with artifacts written by clients to ``artifact_root`` instead of proxied."""
    at = command.index("--artifacts-destination")
    command = command[:at] + command[at + 2 :]
    command.remove("--serve-artifacts")
    return [*command, "--no-serve-artifacts", "--default-artifact-root", str(artifact_root)]


def launch(
    data_dir: Path,
    extra: list[str],
    env: Mapping[str, str] | None = None,
    proxy: bool = True,
    port: int | None = None,
) -> devserver.LocalMlflowServer:
    """Start ``mlflow server`` (SQLite in ``data_dir``) with ``extra`` flags; do not wait."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or devserver.free_port()
    command = devserver.server_command(data_dir, port)
    if not proxy:
        command = without_proxying(command, data_dir / "server-disk-artifacts")
    with (data_dir / "server.log").open("ab") as log:
        process = subprocess.Popen(
            [*command, *extra], stdout=log, stderr=subprocess.STDOUT, cwd=data_dir,
            env={**os.environ, **QUIET, **(env or {})},
        )  # fmt: skip
    return devserver.LocalMlflowServer(f"http://127.0.0.1:{port}", data_dir, process)


def wait_healthy(*servers: devserver.LocalMlflowServer, timeout: float = 180) -> None:
    """Wait until every server answers /health; stop them all and raise with a log otherwise."""
    deadline = time.monotonic() + timeout
    for server in servers:
        while not devserver.is_healthy(server.url):
            assert server.process is not None and server.data_dir is not None
            if server.process.poll() is not None or time.monotonic() > deadline:
                for each in servers:
                    each.stop()
                log = (server.data_dir / "server.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"MLflow server at {server.url} did not come up:\n{log}")
            time.sleep(0.3)
