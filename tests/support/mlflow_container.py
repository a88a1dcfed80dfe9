"""The release's MLflow pods in Docker: the migration Job, then the server, from the manifests.

The order is the cluster's, run one step after the other: the migration Job's containers
to completion, the server pod's init containers (the schema wait finds the schema at
once), then the server container until ``/health`` answers. Each step is a fresh
container of images/mlflow run from the rendered manifest (:mod:`support.release`); the
chart's volume is a host directory, its emptyDirs fresh directories. The concurrent
start-up (server waiting for the Job) is covered by tests/charts/test_mlflow_server.py.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagma.devserver import is_healthy
from support import container_spec
from support.container.cli import Docker
from support.container.run import Container
from support.release import Release


@dataclass
class MlflowServer:
    """The MLflow server container, its URL on 127.0.0.1 and the directory of its volume."""

    url: str
    volume: Path
    container: Container
    timings: dict[str, float] = field(default_factory=dict)

    def stop(self) -> None:
        """Remove the server container."""
        self.container.stop()


def claims_of(doc: Mapping[str, Any], directory: Path) -> dict[str, Path]:
    """Every PersistentVolumeClaim the pod of ``doc`` mounts → ``directory``."""
    volumes = container_spec.pod_spec(doc).get("volumes", [])
    return {
        v["persistentVolumeClaim"]["claimName"]: directory
        for v in volumes
        if "persistentVolumeClaim" in v
    }


def scratch_for(workdir: Path, doc: Mapping[str, Any]) -> Path:
    """The directory holding one pod's emptyDir and ConfigMap volumes."""
    return workdir / f"{doc['kind'].lower()}-{doc['metadata']['name']}"


def run_pod(
    docker: Docker,
    release: Release,
    doc: Mapping[str, Any],
    workdir: Path,
    volume: Path | None = None,
    timeout: float = 300,
) -> list[subprocess.CompletedProcess[str]]:
    """Run every (init) container of ``doc``'s pod in order, each to completion.

    Stops at the first that fails; returns the results so far.
    """
    claims = claims_of(doc, volume) if volume is not None else {}
    results = []
    for spec in container_spec.containers(doc):
        step = release.pod_container(doc, spec["name"], scratch_for(workdir, doc), claims)
        results.append(step.run(docker, timeout=timeout))
        if results[-1].returncode != 0:
            break
    return results


def _failure(what: str, result: subprocess.CompletedProcess[str]) -> str:
    return f"{what} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def start_mlflow(
    docker: Docker, release: Release, workdir: Path, timeout: float = 300
) -> MlflowServer:
    """Migrate, then start the server of ``release``; its volume is ``workdir/volume``."""
    volume = workdir / "volume"
    deployment, job = release.rendered.one("Deployment"), release.rendered.one("Job")
    timings: dict[str, float] = {}

    started = time.monotonic()
    for result in run_pod(docker, release, job, workdir, volume, timeout):
        assert result.returncode == 0, _failure(f"migration Job {job['metadata']['name']}", result)
    timings["migration_job_s"] = time.monotonic() - started

    pod = container_spec.pod_spec(deployment)
    scratch, claims = scratch_for(workdir, deployment), claims_of(deployment, volume)
    for init in pod.get("initContainers", []):
        step = release.pod_container(deployment, init["name"], scratch, claims)
        result = step.run(docker, timeout=timeout)
        assert result.returncode == 0, _failure(f"init container {init['name']}", result)

    main = pod["containers"][0]
    url = f"http://127.0.0.1:{main['ports'][0]['containerPort']}"
    started = time.monotonic()
    container = release.pod_container(deployment, main["name"], scratch, claims).start(docker)
    try:
        deadline = time.monotonic() + timeout
        while not is_healthy(url):
            if not container.is_running() or time.monotonic() > deadline:
                raise AssertionError(
                    f"the MLflow server never answered {url}/health "
                    f"(running: {container.is_running()}):\n{container.logs()[-4000:]}"
                )
            time.sleep(0.5)
    except BaseException:
        container.stop()
        raise
    timings["server_start_s"] = time.monotonic() - started
    return MlflowServer(url, volume, container, timings)
