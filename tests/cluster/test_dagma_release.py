"""The dagma release on the real cluster: materialize train_model_stub the way a user does.

charts/dagma (values/local.yaml) is installed with Helm into a namespace with Pod Security
"restricted" enforced (:mod:`support.release_install`: with the official Dagster chart when
it is on the machine, otherwise with the chart's objects built by
:mod:`support.dagster_manifests`).
Dagster's database is an external PostgreSQL (the stand-in image) in a namespace of its
own. Both UIs are reached exactly as the release's NOTES say: their two
``kubectl port-forward`` lines, run as printed (local ports 3000 and 5000). The run is
launched through the webserver there; the daemon's K8sRunLauncher creates a real Job
whose pod the kubelet runs; the MLflow run is read back through the other port-forward,
and Chromium opens the Dagster asset page and the MLflow run page (screenshots in
test-artifacts/screenshots/, and docs/images/ with ``DAGMA_UPDATE_SCREENSHOTS=1``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from dagster import AssetKey
from dagster_graphql import DagsterGraphQLClient
from kubernetes import client
from mlflow import MlflowClient
from mlflow.entities import Run
from playwright.sync_api import BrowserContext
from support.browser import loopback_chromium, save_screenshot
from support.example_runs import example_run_filter
from support.release import REPOSITORY, USER_CODE
from support.release_install import Release, describe, helm, installed_release
from support.release_records import first_event_times, run_pod_times, run_start_figures
from support.release_ui import (
    DAGSTER_UI,
    MLFLOW_UI,
    ShownRun,
    both_uis,
    check_dagster_asset_page,
    check_mlflow_run_page,
)
from support.ui_pages import mlflow_preferences_script
from support.umbrella import RELEASE, render_umbrella, values_paths
from support.workloads import wait_for

from localcluster.cluster import kubectl
from localcluster.components import Layout

ASSET = "train_model_stub"
# Under load (2 cores, other suites) the Dagster UI's first render takes 10-30 s.
UI_TIMEOUT_MS = 60_000


@dataclass(frozen=True)
class Materialized:
    """The run the module launched, how it ended, and the Job the launcher made for it."""

    run_id: str
    status: str
    job_name: str
    submitted: float  # epoch seconds


@pytest.fixture(scope="module")
def release(layout: Layout, kube, release_images, pod_image, tmp_path_factory) -> Iterator[Release]:
    """The installed release (images built first by ``release_images``)."""
    with installed_release(layout, kube, pod_image, tmp_path_factory.mktemp("values")) as found:
        yield found


@pytest.fixture(scope="module")
def uis(layout: Layout, release: Release) -> Iterator[dict[str, str]]:
    """Both UIs through the port-forwards the release's NOTES print, run as printed."""
    notes = helm(layout, release.namespace, "get", "notes", RELEASE)
    with both_uis(notes, layout) as urls:
        yield urls


def _graphql(dagster_url: str) -> DagsterGraphQLClient:
    address = urlsplit(dagster_url)
    return DagsterGraphQLClient("127.0.0.1", port_number=address.port)  # localhost's IPv4


def _tracking(mlflow_url: str) -> MlflowClient:
    return MlflowClient(f"http://127.0.0.1:{urlsplit(mlflow_url).port}")


def _mlflow_run(tracking: MlflowClient, dagster_run_id: str) -> Run:
    """The one MLflow run tagged with the Dagster run's id."""
    [run] = tracking.search_runs(
        [e.experiment_id for e in tracking.search_experiments()],
        filter_string=example_run_filter(dagster_run_id),
    )
    return run


@pytest.fixture(scope="module")
def materialized(
    layout: Layout, kube, release: Release, uis: dict[str, str], cluster_measure
) -> Materialized:
    """``train_model_stub`` launched through the webserver, until the run ends."""
    namespace = release.namespace
    graphql = _graphql(uis[DAGSTER_UI])
    submitted, began = time.time(), time.monotonic()
    run_id = graphql.submit_job_execution(
        "__ASSET_JOB", repository_location_name=USER_CODE, repository_name=REPOSITORY,
        asset_selection=[AssetKey(ASSET)],
    )  # fmt: skip

    def finished() -> str | None:
        status = graphql.get_run_status(run_id).value
        return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

    status = wait_for(f"run {run_id} finished", finished, 600,
                      lambda: describe(layout, namespace))  # fmt: skip
    cluster_measure("run submitted to finished", f"{time.monotonic() - began:.0f} s")
    jobs = client.BatchV1Api(kube).list_namespaced_job(namespace).items
    [job] = [j for j in jobs if run_id in j.metadata.name or
             (j.metadata.labels or {}).get("dagster/run-id") == run_id]  # fmt: skip
    return Materialized(run_id, status, job.metadata.name, submitted)


def test_materialize_through_the_webserver_runs_a_job_pod_and_tracks_in_mlflow(
    layout: Layout, release: Release, kube, uis: dict[str, str], materialized: Materialized
) -> None:
    namespace, run_id, job_name = release.namespace, materialized.run_id, materialized.job_name
    if materialized.status != "SUCCESS":
        events = kubectl(layout, "-n", namespace, "get", "events", "-o",
                         "custom-columns=OBJECT:.involvedObject.name,REASON:.reason,"
                         "MESSAGE:.message")  # fmt: skip
        pytest.fail(f"run {run_id}: {materialized.status}; job {job_name}\n{events}")

    def job_succeeded() -> bool:
        found = client.BatchV1Api(kube).read_namespaced_job(job_name, namespace)
        return found.status.succeeded == 1  # the Job controller counts the finished pod

    wait_for(f"job {job_name} succeeded", job_succeeded, 120,
             lambda: describe(layout, namespace))  # fmt: skip
    tracking = _tracking(uis[MLFLOW_UI])
    run = _mlflow_run(tracking, run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"n_estimators": "10"}
    assert run.data.metrics == {"rmse": 0.123}
    tags = run.data.tags
    assert (tags["dagster.code_location"], tags["dagster.asset_key"]) == (USER_CODE, ASSET)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied, never a pod's path
    assert [a.path for a in tracking.list_artifacts(run.info.run_id)] == ["train_summary.txt"]
    downloaded = Path(tracking.download_artifacts(run.info.run_id, "train_summary.txt"))
    assert downloaded.read_text() == "n_estimators=10\nrmse=0.123\n"


def test_the_run_is_queued_then_launched_as_a_job_of_the_user_code_image(
    kube, release: Release, release_images, uis: dict[str, str], materialized: Materialized
) -> None:
    """The chart's QueuedRunCoordinator queued the run, and the daemon's K8sRunLauncher made
    its Job from the code location: the location's label, the user-code image, execute_run."""
    events = first_event_times(_graphql(uis[DAGSTER_UI]), materialized.run_id)
    assert {"RUN_ENQUEUED", "RUN_STARTING", "RUN_START"} <= events.keys(), sorted(events)
    assert events["RUN_ENQUEUED"] <= events["RUN_STARTING"] <= events["RUN_START"], events
    job = client.BatchV1Api(kube).read_namespaced_job(materialized.job_name, release.namespace)
    labels = job.spec.template.metadata.labels
    assert labels["dagster/run-id"] == materialized.run_id
    assert labels["dagster/code-location"] == USER_CODE
    [container] = job.spec.template.spec.containers
    assert container.image == release_images.user_code.tag
    assert container.args[:3] == ["dagster", "api", "execute_run"]


def test_helm_test_of_the_release_passes(
    layout: Layout, core: client.CoreV1Api, release: Release
) -> None:
    """Both charts' ``helm test`` Pods pass: charts/mlflow's logs a run with an artifact
    through the Service; charts/dagma's, on the user-code image with the MLflow ConfigMap as
    its environment, finds the ConfigMap's MLFLOW_TRACKING_URI answering /health."""
    output = helm(layout, release.namespace, "test", RELEASE, "--timeout", "5m")
    phases = dict(re.findall(r"^TEST SUITE:\s+(\S+)$.*?^Phase:\s+(\S+)$", output, re.M | re.S))
    tests = render_umbrella(values_files=values_paths(["local.yaml"])).tests
    expected = {test["metadata"]["name"]: "Succeeded" for test in tests}
    assert len(expected) == 2 and expected.items() <= phases.items(), output
    # charts/dagma's test Pod stays until the next `helm test` (before-hook-creation).
    name = f"{RELEASE}-test-mlflow-health"
    [source] = core.read_namespaced_pod(name, release.namespace).spec.containers[0].env_from
    tracking = core.read_namespaced_config_map(source.config_map_ref.name, release.namespace)
    uri = tracking.data["MLFLOW_TRACKING_URI"].rstrip("/")
    assert f"{uri}/health answered 'OK'" in core.read_namespaced_pod_log(name, release.namespace)


def test_run_pod_start_to_step_start_is_measured(
    kube, release: Release, uis: dict[str, str], materialized: Materialized, cluster_measure
) -> None:
    """Figures only (never asserted): where the seconds between submit and step go."""
    pod = run_pod_times(kube, release.namespace, materialized.job_name)
    events = first_event_times(_graphql(uis[DAGSTER_UI]), materialized.run_id)
    for name, seconds in run_start_figures(pod, events, materialized.submitted).items():
        cluster_measure(name, f"{seconds:.1f} s")


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserContext]:
    """Debian's Chromium under Playwright, kept to loopback."""
    with loopback_chromium(UI_TIMEOUT_MS) as context:
        yield context


def test_both_uis_through_the_notes_port_forwards_show_the_run(
    browser: BrowserContext, uis: dict[str, str], materialized: Materialized
) -> None:
    assert materialized.status == "SUCCESS", f"run {materialized.run_id}: {materialized.status}"
    run = _mlflow_run(_tracking(uis[MLFLOW_UI]), materialized.run_id)
    shown = ShownRun(ASSET, uis[DAGSTER_UI], uis[MLFLOW_UI], materialized.run_id,
                     run.info.run_id, run.info.experiment_id)  # fmt: skip
    page = browser.new_page()
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.add_init_script(mlflow_preferences_script(shown.mlflow_url))
    try:
        href = check_dagster_asset_page(page, shown)
        check_mlflow_run_page(page, href, shown)
    except BaseException:
        save_screenshot(page, "failed-cluster-ui")
        raise
    finally:
        page.close()
