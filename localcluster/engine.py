"""The cluster's own Docker engine, and the docker CLI every part of the tool drives it with.

The engine: Debian's dockerd on a socket, data root and exec root of its own, so the
cluster and any other engine on the machine never stop anything under each other.
Why its own: this machine's root lacks CAP_SYS_RESOURCE, so the kernel refuses a negative
``oom_score_adj``, and cri-dockerd gives every pod sandbox -998. This engine's default
runtime is ``localcluster/bin/runc``, which raises a negative value to 0 and runs Debian's
runc unchanged. No docker0 bridge, no iptables, no forwarding changes (the pods' network
is CNI's). Images for pods are built into this engine
(``DOCKER_HOST=unix:///run/dagma-cluster/docker.sock``) and the kubelet runs exactly those.

The CLI: builds use BuildKit (the Dockerfiles may use ``RUN --mount``). Docker CLIs from
23 on need the buildx plugin for that; older ones (Debian bookworm's ``docker.io``, 20.10)
have it built in. Some machines carry a newer CLI without buildx first on PATH, so the
choice falls back to Debian's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from localcluster.prerequisites import MissingPrerequisite, require_executable
from localcluster.processes import Process, wait_until

STATE = Path("/run/dagma-cluster")
SOCKET = STATE / "docker.sock"
HOST = f"unix://{SOCKET}"
DATA_ROOT = Path("/var/lib/dagma-cluster/docker")  # kept by cluster-down: the image cache
RUNC = Path(__file__).resolve().parent / "bin" / "runc"
# Where Debian's docker.io puts its CLI, when another CLI shadows it on PATH.
FALLBACK_CLIENTS = ("/usr/bin/docker",)
HOW_TO_GET_DOCKER = "install Debian's docker.io (apt-get install docker.io)"


@dataclass(frozen=True)
class Docker:
    """A docker CLI bound to one engine; every helper runs its commands through this."""

    client: str
    host: str = HOST

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
    raise MissingPrerequisite(
        f"no docker CLI that builds with BuildKit (tried {', '.join(candidates)}): "
        f"install the docker-buildx plugin for that CLI, or {HOW_TO_GET_DOCKER}"
    )


def docker() -> Docker:
    """A docker CLI bound to the cluster's engine."""
    return Docker(pick_client(), HOST)


def process(run_dir: Path, log_dir: Path) -> Process:
    return Process(
        "dockerd",
        [
            "/usr/sbin/dockerd",
            f"--host={HOST}",
            f"--data-root={DATA_ROOT}",
            f"--exec-root={STATE / 'docker-exec'}",
            f"--pidfile={STATE / 'docker.pid'}",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--ip-forward=false",
            f"--add-runtime=dagma-runc={RUNC}",
            "--default-runtime=dagma-runc",
        ],
        run_dir,
        log_dir,
    )


def start(run_dir: Path, log_dir: Path) -> Docker:
    """Start the engine unless it runs; wait until it answers."""
    dockerd = process(run_dir, log_dir)
    STATE.mkdir(parents=True, exist_ok=True)
    dockerd.start()
    client = docker()
    wait_until("the cluster's dockerd answering", lambda: bool(client.server_version(5)), dockerd)
    return client
