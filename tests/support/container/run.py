"""Containers for the tests: always ``--network host``, so they reach servers on 127.0.0.1.

The engine the tests start has no bridge network at all; host networking is
also how a container reaches a server another container or the host runs on
127.0.0.1, without any 172.x address involved. Environment values travel in
the docker CLI's own environment (``--env NAME``), not on its command line.
Every container is labelled ``org.dagma.test`` and removed when done. ``options`` passes
further ``docker run`` flags (security options, ``--add-host``...) through unchanged.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from support.container.cli import Docker

TEST_LABEL = "org.dagma.test=1"


def _run_command(
    docker: Docker,
    image: str,
    command: Sequence[str],
    name: str,
    env: Mapping[str, str] | None,
    volumes: Mapping[Path | str, str] | None,
    user: str | None,
    workdir: str | None,
    entrypoint: str | None,
    detach: bool,
    options: Sequence[str] = (),
) -> list[str]:
    args = [docker.client, "run", "--network", "host", "--name", name, "--label", TEST_LABEL]
    args.append("--detach" if detach else "--rm")
    for variable in env or {}:
        args += ["--env", variable]
    for host_path, container_path in (volumes or {}).items():
        args += ["--volume", f"{Path(host_path).resolve()}:{container_path}"]
    if user is not None:
        args += ["--user", user]
    if workdir is not None:
        args += ["--workdir", workdir]
    if entrypoint is not None:
        args += ["--entrypoint", entrypoint]
    return [*args, *options, image, *command]


def _name(prefix: str) -> str:
    return f"dagma-{prefix}-{uuid.uuid4().hex[:8]}"


def run_container(
    docker: Docker,
    image: str,
    command: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    volumes: Mapping[Path | str, str] | None = None,
    user: str | None = None,
    workdir: str | None = None,
    entrypoint: str | None = None,
    timeout: float = 300.0,
    options: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in a fresh container to completion; its output and exit code.

    ``volumes`` maps host paths to container paths. A container still running
    after ``timeout`` seconds is removed and ``TimeoutExpired`` raised.
    """
    name = _name("run")
    args = _run_command(
        docker, image, command, name, env, volumes, user, workdir, entrypoint, False, options
    )
    try:
        return subprocess.run(
            args,
            env={**docker.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        docker.command(["rm", "--force", name], check=False)
        raise


@dataclass(frozen=True)
class Container:
    """A container running in the background (a server); stop it when done."""

    docker: Docker
    name: str

    def logs(self) -> str:
        """Everything the container wrote to stdout and stderr so far."""
        result = self.docker.command(["logs", self.name], check=False)
        return result.stdout + result.stderr

    def is_running(self) -> bool:
        """Whether the container's main process is still running."""
        result = self.docker.command(
            ["inspect", "--format", "{{.State.Running}}", self.name], check=False
        )
        return result.stdout.strip() == "true"

    def stop(self) -> None:
        """Remove the container (killing it if it still runs)."""
        self.docker.command(["rm", "--force", self.name], check=False, timeout=60)

    def wait(self, timeout: float) -> int:
        """Wait for the main process to end (at most ``timeout`` s); its exit code.

        Raises ``TimeoutExpired`` when it still runs after ``timeout`` seconds.
        """
        result = self.docker.command(["wait", self.name], timeout=timeout)
        return int(result.stdout.strip())

    def exec(
        self, command: Sequence[str], timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` inside the running container (like a kubelet exec probe)."""
        return self.docker.command(["exec", self.name, *command], timeout=timeout, check=False)

    def changed_paths(self) -> list[str]:
        """Paths added, changed or deleted in the container's own filesystem (``docker diff``)."""
        result = self.docker.command(["diff", self.name])
        return [line.split(maxsplit=1)[1] for line in result.stdout.splitlines() if line.strip()]


def start_container(
    docker: Docker,
    image: str,
    command: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    volumes: Mapping[Path | str, str] | None = None,
    user: str | None = None,
    workdir: str | None = None,
    entrypoint: str | None = None,
    options: Sequence[str] = (),
) -> Container:
    """Start ``command`` in a background container on the host network.

    The container stays after its main process ends (for its logs, exit code and
    ``docker diff``) until :meth:`Container.stop` removes it.
    """
    name = _name("server")
    args = _run_command(
        docker, image, command, name, env, volumes, user, workdir, entrypoint, True, options
    )
    result = subprocess.run(
        args,
        env={**docker.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        docker.command(["rm", "--force", name], check=False)
        raise RuntimeError(f"could not start {image} {list(command)}:\n{result.stderr.strip()}")
    return Container(docker, name)
