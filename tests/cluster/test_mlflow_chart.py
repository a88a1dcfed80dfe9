"""charts/mlflow with the real ``helm`` on the real cluster, in a "restricted" namespace.

The tests follow one release through its life in order: install (the migration Job
completes, the server gets Ready), ``helm test``, a client pod logging a run with an
artifact through the Service name, ``helm upgrade`` (the next migration; the run is
still there), ``helm uninstall`` (the volume stays).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from kubernetes import client
from mlflow import MlflowClient
from support.helm import CHARTS
from support.workloads import (
    RESTRICTED_CONTAINER,
    describe_pod,
    pod,
    pod_log,
    port_forward,
    restricted_namespace,
    unique,
    wait_pod_phase,
)

from localcluster.components import Layout

RELEASE = "mlflow"
LOG_A_RUN = """
import json, mlflow
mlflow.set_experiment("cluster-check")
with mlflow.start_run() as run:
    mlflow.log_param("n_estimators", 10)
    mlflow.log_metric("rmse", 0.123)
    mlflow.log_text("trained on the cluster", "train_summary.txt")
print(json.dumps({"run_id": run.info.run_id}))
"""


@dataclass
class Release:
    namespace: str
    layout: Layout
    run_id: str = ""

    def helm(self, *args: str, timeout: float = 900) -> str:
        command = [str(self.layout.bin / "helm"), f"--kubeconfig={self.layout.kubeconfig}"]
        result = subprocess.run(
            [*command, "--namespace", self.namespace, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}{result.stderr}"
        return result.stdout


@pytest.fixture(scope="module")
def release(layout: Layout, core: client.CoreV1Api, release_images) -> Iterator[Release]:
    namespace = restricted_namespace(core, unique("mlflow"))
    yield Release(namespace, layout)
    subprocess.run(
        [str(layout.bin / "helm"), f"--kubeconfig={layout.kubeconfig}", "-n", namespace,
         "uninstall", RELEASE, "--wait"], capture_output=True, check=False,
    )  # fmt: skip
    core.delete_namespace(namespace)


def _job_succeeded(kube: client.ApiClient, namespace: str, name: str) -> bool:
    job = client.BatchV1Api(kube).read_namespaced_job(name, namespace)
    return (job.status.succeeded or 0) == 1


def test_install_runs_the_migration_and_the_server_gets_ready(
    release: Release, kube: client.ApiClient, cluster_measure
) -> None:
    began = time.monotonic()
    notes = release.helm("install", RELEASE, str(CHARTS / "mlflow"), "--wait", "--wait-for-jobs",
                         "--timeout", "10m")  # fmt: skip
    cluster_measure("helm install charts/mlflow to all Ready", f"{time.monotonic() - began:.0f} s")
    assert f"port-forward service/{RELEASE} 5000:5000" in notes
    assert _job_succeeded(kube, release.namespace, f"{RELEASE}-migrate-1")
    deployment = client.AppsV1Api(kube).read_namespaced_deployment(RELEASE, release.namespace)
    assert deployment.status.ready_replicas == 1


def test_helm_test_passes(release: Release) -> None:
    # No --logs: the chart deletes its test pod once it succeeded (hook-succeeded).
    output = release.helm("test", RELEASE, "--timeout", "5m")
    assert "Phase:          Succeeded" in output, output


def test_a_client_pod_logs_a_run_with_an_artifact_through_the_service(
    release: Release, core: client.CoreV1Api, release_images
) -> None:
    image = release_images.mlflow.tag
    env = [{"name": "MLFLOW_TRACKING_URI", "value": f"http://{RELEASE}:5000"},
           {"name": "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "value": "2"}]  # fmt: skip
    spec = pod(
        "log-a-run",
        image,
        ["python", "-c", LOG_A_RUN],
        container={"env": env, "securityContext": {**RESTRICTED_CONTAINER, "runAsUser": 10001}},
    )
    core.create_namespaced_pod(release.namespace, spec)
    phase = wait_pod_phase(core, release.namespace, "log-a-run", {"Succeeded", "Failed"}, 300)
    log = pod_log(core, release.namespace, "log-a-run")
    assert phase == "Succeeded", describe_pod(core, release.namespace, "log-a-run") + log
    release.run_id = json.loads(log.strip().splitlines()[-1])["run_id"]
    _assert_run_kept(release)


def _assert_run_kept(release: Release) -> None:
    """Read the run back from the host through a port-forward to the Service."""
    kubectl = release.layout.bin / "kubectl"
    target = f"service/{RELEASE}"
    with port_forward(kubectl, release.layout.kubeconfig, release.namespace, target, 5000) as port:
        tracking = MlflowClient(f"http://127.0.0.1:{port}")
        run = tracking.get_run(release.run_id)
        assert run.data.params["n_estimators"] == "10"
        assert run.data.metrics["rmse"] == 0.123
        [artifact] = tracking.list_artifacts(release.run_id)
        assert artifact.path == "train_summary.txt"
        text = tracking.download_artifacts(release.run_id, "train_summary.txt")
        with open(text) as downloaded:
            assert downloaded.read() == "trained on the cluster"


def test_upgrade_runs_the_next_migration_and_keeps_the_data(
    release: Release, kube: client.ApiClient
) -> None:
    assert release.run_id, "the client pod's run is needed"
    release.helm("upgrade", RELEASE, str(CHARTS / "mlflow"), "--wait", "--wait-for-jobs",
                 "--timeout", "10m")  # fmt: skip
    assert _job_succeeded(kube, release.namespace, f"{RELEASE}-migrate-2")
    _assert_run_kept(release)


def test_uninstall_keeps_the_volume(release: Release, core: client.CoreV1Api, kube) -> None:
    release.helm("uninstall", RELEASE, "--wait")
    deployments = client.AppsV1Api(kube).list_namespaced_deployment(release.namespace).items
    assert deployments == []
    claim = core.read_namespaced_persistent_volume_claim(f"{RELEASE}-data", release.namespace)
    assert claim.status.phase == "Bound"
