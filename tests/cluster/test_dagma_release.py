"""The dagma release on the real cluster: materialize train_model_stub the way a user does.

charts/dagma (values/kind.yaml) is installed with Helm into a namespace with Pod Security
"restricted" enforced, and the Dagster chart's objects are applied beside it
(:mod:`dagster_release`; the official chart cannot be downloaded here). Dagster's
database is an external PostgreSQL (the stand-in image) in a namespace of its own.
The run is launched through the webserver behind a port-forward; the daemon's
K8sRunLauncher creates a real Job whose pod the kubelet runs; the MLflow run is read back
through a port-forward to MLflow's Service.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetKey
from dagster_graphql import DagsterGraphQLClient
from dagster_release import webserver_name
from kubernetes import client
from localcluster.components import Layout
from mlflow import MlflowClient
from release_install import Release, describe, installed_release
from support.release import USER_CODE
from workloads import port_forward, wait_for

ASSET = "train_model_stub"


@pytest.fixture(scope="module")
def release(layout: Layout, kube, release_images, pod_image, tmp_path_factory) -> Iterator[Release]:
    """The installed release (images built first by ``release_images``)."""
    with installed_release(layout, kube, pod_image, tmp_path_factory.mktemp("values")) as found:
        yield found


def test_materialize_through_the_webserver_runs_a_job_pod_and_tracks_in_mlflow(
    layout: Layout, release: Release, kube, cluster_measure
) -> None:
    namespace, dagster = release.namespace, release.dagster
    kubectl_bin, kubeconfig = layout.bin / "kubectl", layout.kubeconfig
    # As the Dagster chart's NOTES print it: the webserver Service and its port.
    webserver = f"service/{webserver_name(dagster)}"
    web_port = int(dagster["dagsterWebserver"]["service"]["port"])
    with port_forward(kubectl_bin, kubeconfig, namespace, webserver, web_port) as port:
        graphql = DagsterGraphQLClient("127.0.0.1", port_number=port)
        run_id = graphql.submit_job_execution(
            "__ASSET_JOB", repository_location_name=USER_CODE, asset_selection=[AssetKey(ASSET)]
        )
        began = time.monotonic()

        def finished() -> str | None:
            status = graphql.get_run_status(run_id).value
            return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

        status = wait_for(f"run {run_id} finished", finished, 600,
                          lambda: describe(layout, namespace))  # fmt: skip
        cluster_measure("run submitted to finished", f"{time.monotonic() - began:.0f} s")
    jobs = client.BatchV1Api(kube).list_namespaced_job(namespace).items
    [job] = [j for j in jobs if run_id in j.metadata.name or
             (j.metadata.labels or {}).get("dagster/run-id") == run_id]  # fmt: skip
    if status != "SUCCESS":
        from localcluster.cluster import kubectl

        events = kubectl(
            layout,
            "-n",
            namespace,
            "get",
            "events",
            "-o",
            "custom-columns=OBJECT:.involvedObject.name,REASON:.reason,MESSAGE:.message",
        )
        pytest.fail(f"run {run_id}: {status}; job {job.metadata.name}: {job.status}\n{events}")

    def job_succeeded() -> bool:
        found = client.BatchV1Api(kube).read_namespaced_job(job.metadata.name, namespace)
        return found.status.succeeded == 1  # the Job controller counts the finished pod

    wait_for(f"job {job.metadata.name} succeeded", job_succeeded, 120,
             lambda: describe(layout, namespace))  # fmt: skip
    with port_forward(kubectl_bin, kubeconfig, namespace, "service/mlflow", 5000) as port:
        tracking = MlflowClient(f"http://127.0.0.1:{port}")
        [run] = tracking.search_runs(
            [e.experiment_id for e in tracking.search_experiments()],
            filter_string=f"tags.`dagster.run_id` = '{run_id}'",
        )
        assert run.data.params["n_estimators"] == "10"
        assert run.data.metrics["rmse"] == 0.123
        paths = [a.path for a in tracking.list_artifacts(run.info.run_id)]
        assert "train_summary.txt" in paths
        downloaded = Path(tracking.download_artifacts(run.info.run_id, "train_summary.txt"))
        assert downloaded.read_text()
