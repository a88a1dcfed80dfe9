"""A Docker engine for the tests: the one already answering, or a ``dockerd`` the tests start.

When no engine answers and we are root, the tests start ``dockerd`` as their
own child process (log in a temp file) and stop it by its pid at session end.
The client is chosen so that ``docker build`` uses BuildKit (the project's
Dockerfiles may use ``RUN --mount``): Docker CLIs from 23 on need the buildx
plugin for that, older ones (Debian bookworm's ``docker.io``, 20.10) have it
built in. Some machines carry a newer CLI without buildx first on ``PATH``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.tools import missing, require_executable

DEFAULT_HOST = "unix:///var/run/docker.sock"
# Where Debian's docker.io puts its CLI, when another CLI shadows it on PATH.
FALLBACK_CLIENTS = ("/usr/bin/docker",)
HOW_TO_GET_DOCKER = "install Debian's docker.io (apt-get install docker.io)"

# Flags for the dockerd the tests start. Every container the tests run (and every
# build) uses --network host and talks to 127.0.0.1 only, so the engine needs no
# network of its own:
#   --bridge=none          no docker0 bridge and no 172.17.x address to send traffic to;
#   --iptables=false ...   leave the host's firewall and sysctls alone (by default dockerd
#                          sets the FORWARD policy to DROP and adds NAT rules);
# The storage driver is left to dockerd's own detection: overlay2 works on this
# machine's ext4, and dockerd falls back to vfs by itself where overlay is missing.
# Default data root (/var/lib/docker): images and build cache survive between runs.
DOCKERD_FLAGS = (
    f"--host={DEFAULT_HOST}",
    "--bridge=none",
    "--iptables=false",
    "--ip6tables=false",
    "--ip-masq=false",
    "--ip-forward=false",
)


@dataclass(frozen=True)
class Docker:
    """A docker CLI bound to one engine; every helper runs its commands through this."""

    client: str
    host: str = DEFAULT_HOST

    @property
    def env(self) -> dict[str, str]:
        """Environment for the CLI: BuildKit on, plain progress, this engine's socket."""
        return {
            **os.environ,
            "DOCKER_HOST": self.host,
            "DOCKER_BUILDKIT": "1",
            "BUILDKIT_PROGRESS": "plain",
        }

    def command(
        self, args: Sequence[str], *, timeout: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker <args>``; with ``check``, a failure raises with docker's stderr."""
        result = subprocess.run(
            [self.client, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"`docker {' '.join(args)}` exited {result.returncode}:\n"
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def server_version(self, timeout: float = 10.0) -> str | None:
        """The engine's version, or None when no engine answers."""
        try:
            result = self.command(
                ["version", "--format", "{{.Server.Version}}"], timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            return None
        version = result.stdout.strip()
        return version if result.returncode == 0 and version else None


@dataclass
class Engine:
    """The engine the tests use; ``process`` is set only when the tests started it."""

    docker: Docker
    version: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    started_in: float | None = None

    @property
    def started_by_tests(self) -> bool:
        """Whether this session started the engine (and so will stop it)."""
        return self.process is not None

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the dockerd this session started, by its pid; leave any other engine alone."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)


def _client_version(client: str) -> tuple[int, ...]:
    """``(20, 10, 24)`` from ``Docker version 20.10.24+dfsg1, build …``; () if unknown."""
    result = subprocess.run([client, "--version"], capture_output=True, text=True, timeout=10)
    match = re.search(r"version (\d+)\.(\d+)\.(\d+)", result.stdout)
    return tuple(int(part) for part in match.groups()) if match else ()


def _builds_with_buildkit(client: str) -> bool:
    """Whether ``DOCKER_BUILDKIT=1 <client> build`` works: buildx plugin, or a pre-23 CLI."""
    version = _client_version(client)
    if version and version < (23,):
        return True
    buildx = subprocess.run(
        [client, "buildx", "version"], capture_output=True, text=True, timeout=10, check=False
    )
    return buildx.returncode == 0


def pick_client() -> str:
    """The first docker CLI (PATH first, then Debian's) that builds with BuildKit."""
    on_path = shutil.which("docker")
    candidates = [on_path] if on_path else []
    candidates += [c for c in FALLBACK_CLIENTS if os.access(c, os.X_OK) and c != on_path]
    if not candidates:
        require_executable("docker", HOW_TO_GET_DOCKER)
    for client in candidates:
        if _builds_with_buildkit(client):
            return client
    missing(
        f"a docker CLI that builds with BuildKit (tried {', '.join(candidates)})",
        "install the docker-buildx plugin for that CLI, or " + HOW_TO_GET_DOCKER,
    )
    raise AssertionError("unreachable: missing() skips or fails")


def _log_tail(path: Path, lines: int = 30) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def start_dockerd(docker: Docker, timeout: float = 60.0) -> Engine:
    """Start dockerd in the background and wait until it answers; fail with its log if not."""
    dockerd = require_executable("dockerd", HOW_TO_GET_DOCKER)
    fd, log_name = tempfile.mkstemp(prefix="dagma-dockerd-", suffix=".log")
    log_path = Path(log_name)
    began = time.monotonic()
    with os.fdopen(fd, "wb") as log:
        # Own session: a Ctrl-C reaches pytest, whose teardown then stops dockerd cleanly.
        process = subprocess.Popen(
            [dockerd, *DOCKERD_FLAGS],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = began + timeout
    while time.monotonic() < deadline and process.poll() is None:
        version = docker.server_version(timeout=5)
        if version:
            return Engine(docker, version, process, log_path, time.monotonic() - began)
        time.sleep(0.5)
    exit_code = process.poll()
    engine = Engine(docker, "", process, None)
    engine.stop()
    if exit_code is None:
        state = f"did not answer within {timeout:.0f} s"
    else:
        state = f"exited with code {exit_code}"
    pytest.fail(
        f"Could not start a Docker engine: `{dockerd} {' '.join(DOCKERD_FLAGS)}` {state}.\n"
        f"Last lines of its log ({log_path}):\n{_log_tail(log_path)}",
        pytrace=False,
    )


def ensure_engine() -> Engine:
    """The engine at $DOCKER_HOST (default socket) if it answers; else one we start (root only)."""
    host = os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    docker = Docker(pick_client(), host)
    version = docker.server_version()
    if version:
        return Engine(docker, version)
    if host != DEFAULT_HOST:
        pytest.fail(
            f"No Docker engine answers at DOCKER_HOST={host}: start it, or unset DOCKER_HOST "
            "to let the tests start dockerd on the default socket.",
            pytrace=False,
        )
    if os.geteuid() != 0:
        missing(
            "a running Docker engine",
            "start dockerd (e.g. `sudo systemctl start docker`) or run the tests as root, "
            "which lets them start dockerd themselves",
        )
    return start_dockerd(docker)
