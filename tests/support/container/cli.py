"""The docker CLI the tests drive, and how it is chosen.

Builds use BuildKit (the project's Dockerfiles may use ``RUN --mount``).
Docker CLIs from 23 on need the buildx plugin for that; older ones (Debian
bookworm's ``docker.io``, 20.10) have it built in. Some machines carry a newer
CLI without buildx first on PATH, so the choice falls back to Debian's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from support.tools import missing, require_executable

DEFAULT_HOST = "unix:///var/run/docker.sock"
# Where Debian's docker.io puts its CLI, when another CLI shadows it on PATH.
FALLBACK_CLIENTS = ("/usr/bin/docker",)
HOW_TO_GET_DOCKER = "install Debian's docker.io (apt-get install docker.io)"


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
