"""The Dagster daemon's part for queued runs, with a Kubernetes API that only records Jobs.

In the cluster, ``dagster-daemon`` (``DAGSTER_HOME`` = ``global.dagsterHome``, the
chart's instance ConfigMap mounted there) dequeues a QUEUED run with its
QueuedRunCoordinatorDaemon; ``instance.launch_run`` marks it STARTING and the
K8sRunLauncher builds the run worker Job with dagster-k8s's own code and creates it
through the Kubernetes batch API. Here the same daemon class does one iteration on an
instance built from the same instance ref. The launcher is the chart's K8sRunLauncher,
from the ConfigMap's config, except where it gets its API: an offline kubeconfig
(never connected to) and a stand-in batch API that records the Job. The launcher's
configuration data stays the chart's, so the run worker receives the very instance ref
the daemon would send (``load_incluster_config: true`` included). The recorded Job is
then run in Docker, as the kubelet would run its pod.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from dagster import DagsterInstance, DagsterRunStatus
from dagster._config import process_config
from dagster._core.instance import InstanceType
from dagster._core.instance.ref import InstanceRef
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
    QueuedRunCoordinatorDaemon,
)
from dagster_k8s import K8sRunLauncher

from support import container_spec
from support.container.cli import Docker
from support.release import Release

MAX_ITERATIONS = 5  # dequeue attempts before giving up (each is one daemon iteration)


@dataclass(frozen=True)
class LaunchedJob:
    """The Job the daemon's launcher created for a run, and the run's status after that."""

    manifest: dict[str, Any]
    status_after_launch: DagsterRunStatus


@dataclass
class RecordedJobs:
    """Stands in for the Kubernetes batch API: keeps every Job created, runs none."""

    jobs: list[dict[str, Any]] = field(default_factory=list)

    def create_namespaced_job(self, body: Any, namespace: str, **_options: Any) -> Any:
        """What the K8sRunLauncher calls; the Job is kept as the manifest the API would get."""
        manifest = kubernetes.client.ApiClient().sanitize_for_serialization(body)
        manifest["metadata"]["namespace"] = namespace
        self.jobs.append(manifest)
        return body


def offline_kubeconfig(directory: Path) -> Path:
    """A kubeconfig for 127.0.0.1:6443 that is only parsed, never connected to."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "offline", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "offline", "user": {"token": "unused"}}],
        "contexts": [{"name": "offline", "context": {"cluster": "offline", "user": "offline"}}],
        "current-context": "offline",
    }
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def daemon_instance_ref(config_dir: Path, dagster_home: str) -> InstanceRef:
    """The instance ref of the daemon: ``dagster.yaml`` from ``config_dir``, home ``dagster_home``.

    Only paths are computed for ``dagster_home``; nothing is created there on this host.
    """
    return InstanceRef.from_dir(dagster_home, config_dir=str(config_dir))


def recording_launcher(ref: InstanceRef, kubeconfig: Path, jobs: RecordedJobs) -> K8sRunLauncher:
    """The chart's K8sRunLauncher, talking to ``jobs`` instead of a cluster."""
    data = ref.run_launcher_data
    assert data is not None and data.class_name == "K8sRunLauncher", data
    processed = process_config(K8sRunLauncher.config_type(), yaml.safe_load(data.config_yaml))
    assert processed.success, processed.errors
    config = dict(processed.value)
    config.update(load_incluster_config=False, kubeconfig_file=str(kubeconfig))
    return K8sRunLauncher(inst_data=data, k8s_client_batch_api=jobs, **config)


def daemon_instance(ref: InstanceRef, launcher: K8sRunLauncher) -> DagsterInstance:
    """What ``create_instance_from_ref`` (dagster/_core/instance/factory.py) builds from
    ``ref``, but with ``launcher`` as its run launcher."""
    storage = ref.storage
    return DagsterInstance(
        instance_type=InstanceType.PERSISTENT,
        local_artifact_storage=ref.local_artifact_storage,
        run_storage=storage.run_storage if storage else ref.run_storage,
        event_storage=storage.event_log_storage if storage else ref.event_storage,
        schedule_storage=storage.schedule_storage if storage else ref.schedule_storage,
        compute_log_manager=None,  # lazy, as in the factory
        scheduler=ref.scheduler,
        run_coordinator=None,
        run_launcher=launcher,
        settings=ref.settings,
        secrets_loader=ref.secrets_loader,
        defs_state_storage=ref.defs_state_storage,
        ref=ref,
    )


@contextmanager
def daemon(
    config_dir: Path, dagster_home: str, workspace_file: Path, scratch: Path
) -> Iterator[tuple[WorkspaceProcessContext, RecordedJobs]]:
    """The daemon's instance and workspace, with the Jobs its launcher creates."""
    ref = daemon_instance_ref(config_dir, dagster_home)
    jobs = RecordedJobs()
    launcher = recording_launcher(ref, offline_kubeconfig(scratch), jobs)
    with (
        daemon_instance(ref, launcher) as instance,
        WorkspaceProcessContext(
            instance, WorkspaceFileTarget(paths=[str(workspace_file)])
        ) as workspace,
    ):
        yield workspace, jobs


def dequeue(workspace: WorkspaceProcessContext, jobs: RecordedJobs, run_id: str) -> dict:
    """Daemon iterations until the run's Job is created; that Job's manifest."""
    with QueuedRunCoordinatorDaemon(interval_seconds=1) as coordinator:
        for _iteration in range(MAX_ITERATIONS):
            for _ in coordinator.run_iteration(workspace):
                pass
            created = [j for j in jobs.jobs if _labels(j).get("dagster/run-id") == run_id]
            if created:
                return copy.deepcopy(created[-1])
    run = workspace.instance.get_run_by_id(run_id)
    raise AssertionError(
        f"the daemon created no Job for run {run_id} in {MAX_ITERATIONS} iterations "
        f"(status {run.status if run else 'unknown'})"
    )


def _labels(job: Mapping[str, Any]) -> dict[str, str]:
    return dict(job["spec"]["template"]["metadata"].get("labels") or {})


@dataclass
class RunPod:
    """What the run worker's container did: exit code, output, and what it left on its disk."""

    exit_code: int
    logs: str
    changed_paths: list[str]
    seconds: float


def run_job(docker: Docker, release: Release, job: Mapping[str, Any], scratch: Path,
            timeout: float = 600) -> RunPod:  # fmt: skip
    """Run the Job's pod (one container) in a fresh container, to completion."""
    [spec] = container_spec.pod_spec(job)["containers"]
    container = release.pod_container(job, spec["name"], scratch).start(docker)
    started = time.monotonic()
    try:
        exit_code = container.wait(timeout)
        seconds = time.monotonic() - started
        return RunPod(exit_code, container.logs(), container.changed_paths(), seconds)
    finally:
        container.stop()
