"""What an installed release has recorded, read back the way its users read it.

Dagster's runs through the webserver's GraphQL API (dagster-graphql's client, and ``gql``
for the two queries it has no call for), behind a port-forward that is reopened when a
request fails (its pod restarted, or the database behind it was away). MLflow's runs,
params, metrics and artifact bytes through the official ``MlflowClient`` behind a
port-forward to ``service/mlflow``. The fault itself: a pod deleted and its successor
(from its Deployment or StatefulSet) waited for. And where the time of a launched run
goes (:func:`run_start_figures`), figures only, never asserted.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from dagster import AssetKey
from dagster_graphql import DagsterGraphQLClient
from gql import Client, gql
from gql.transport.requests import RequestsHTTPTransport
from kubernetes import client
from mlflow import MlflowClient

from localcluster.components import Layout
from support.dagster_manifests import webserver_name
from support.release import REPOSITORY, USER_CODE
from support.release_install import Release, describe
from support.workloads import port_forward, wait_for

T = TypeVar("T")
ASSET = "train_model_stub"
TERMINAL = ("SUCCESS", "FAILURE", "CANCELED")
RUNS_QUERY = """
query { runsOrError(limit: 1000) { __typename
  ... on Runs { results { runId status } }
  ... on PythonError { message } } }
"""
EVENTS_QUERY = """
query Events($runId: ID!) { logsForRun(runId: $runId, limit: 2000) { __typename
  ... on EventConnection { events { __typename
    ... on MessageEvent { timestamp message eventType }
    ... on ErrorEvent { error { message } } } }
  ... on PythonError { message } } }
"""


class Webserver:
    """Dagster's webserver behind a port-forward, reopened after a request that failed."""

    def __init__(self, layout: Layout, release: Release) -> None:
        self._layout, self._release = layout, release
        self._stack = ExitStack()
        self._port: int | None = None

    def _open(self) -> int:
        if self._port is None:
            dagster = self._release.dagster
            self._port = self._stack.enter_context(port_forward(
                self._layout.bin / "kubectl", self._layout.kubeconfig, self._release.namespace,
                f"service/{webserver_name(dagster)}",
                int(dagster["dagsterWebserver"]["service"]["port"]),
            ))  # fmt: skip
        return self._port

    def close(self) -> None:
        """Stop the port-forward (a later call opens a new one)."""
        self._stack.close()
        self._port = None

    def call(self, request: Callable[[DagsterGraphQLClient], T]) -> T:
        """``request(client)``; the port-forward is reopened next time if it raised."""
        try:
            return request(DagsterGraphQLClient("127.0.0.1", port_number=self._open(), timeout=30))
        except Exception:
            self.close()
            raise

    def query(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """A GraphQL query dagster-graphql's client has no call for."""

        def run(_: DagsterGraphQLClient) -> dict[str, Any]:
            transport = RequestsHTTPTransport(url=f"http://127.0.0.1:{self._port}/graphql",
                                              timeout=30)  # fmt: skip
            with Client(transport=transport) as session:
                return session.execute(gql(document), variable_values=variables)

        return self.call(run)

    def maybe(self, request: Callable[[Webserver], T]) -> T | None:
        """``request(self)``, or None while the webserver (or its database) does not answer."""
        try:
            return request(self)
        except Exception:
            return None

    def submit(self) -> str:
        """Materialize train_model_stub as a user does (the implicit asset job); its run id."""
        return self.call(lambda graphql: graphql.submit_job_execution(
            "__ASSET_JOB", repository_location_name=USER_CODE, repository_name=REPOSITORY,
            asset_selection=[AssetKey(ASSET)],
        ))  # fmt: skip

    def status(self, run_id: str) -> str:
        return self.call(lambda graphql: graphql.get_run_status(run_id).value)

    def wait_finished(self, run_id: str, timeout: float) -> str:
        """The run's terminal status, polled (through outages) for at most ``timeout`` s."""
        layout, namespace = self._layout, self._release.namespace

        def finished() -> str | None:
            status = self.maybe(lambda web: web.status(run_id))
            return status if status in TERMINAL else None

        return wait_for(f"run {run_id} finished", finished, timeout,
                        lambda: describe(layout, namespace))  # fmt: skip

    def runs(self) -> dict[str, str]:
        """Every run Dagster has stored, by id: its status."""
        found = self.query(RUNS_QUERY)["runsOrError"]
        assert found["__typename"] == "Runs", found
        return {run["runId"]: run["status"] for run in found["results"]}

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """The run's event log (typename, eventType, timestamp in ms, message, error)."""
        found = self.query(EVENTS_QUERY, {"runId": run_id})["logsForRun"]
        assert found["__typename"] == "EventConnection", found
        return found["events"]

    def reload_location(self) -> str:
        """Reload the code location as the UI's button does; its load status."""
        return self.call(lambda graphql: graphql.reload_repository_location(USER_CODE)).status.value


@contextmanager
def webserver(layout: Layout, release: Release) -> Iterator[Webserver]:
    web = Webserver(layout, release)
    try:
        yield web
    finally:
        web.close()


@dataclass(frozen=True)
class TrackedRun:
    """One MLflow run as read back: everything a user compares."""

    dagster_run_id: str | None
    asset_key: str | None  # None for the Dagster run's parent run
    status: str
    params: dict[str, str]
    metrics: dict[str, tuple[tuple[float, int], ...]]
    artifacts: dict[str, bytes]
    started_at: float  # wall clock, as the server recorded it
    seconds: float | None  # from start to end; None while RUNNING


def _artifact_bytes(tracking: MlflowClient, run_id: str, scratch: Path) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    pending: list[str | None] = [None]  # directories still to list; None is the root
    while pending:
        for entry in tracking.list_artifacts(run_id, pending.pop()):
            if entry.is_dir:
                pending.append(entry.path)
            else:
                local = tracking.download_artifacts(run_id, entry.path, str(scratch))
                found[entry.path] = Path(local).read_bytes()
    return found


def tracked_runs(layout: Layout, namespace: str) -> dict[str, TrackedRun]:
    """Every MLflow run of every experiment, by MLflow run id (a fresh port-forward)."""
    kubectl = layout.bin / "kubectl"
    with (
        port_forward(kubectl, layout.kubeconfig, namespace, "service/mlflow", 5000) as port,
        tempfile.TemporaryDirectory(prefix="dagma-faults-") as scratch,
    ):
        tracking = MlflowClient(f"http://127.0.0.1:{port}")
        experiments = [e.experiment_id for e in tracking.search_experiments()]
        found = {}
        for run in tracking.search_runs(experiments, max_results=1000):
            run_id = run.info.run_id
            metrics = {
                key: tuple((m.value, m.step) for m in tracking.get_metric_history(run_id, key))
                for key in run.data.metrics
            }
            download = Path(scratch) / run_id
            download.mkdir()
            found[run_id] = TrackedRun(
                run.data.tags.get("dagster.run_id"), run.data.tags.get("dagster.asset_key"),
                run.info.status, dict(run.data.params),
                metrics, _artifact_bytes(tracking, run_id, download),
                run.info.start_time / 1000,
                (run.info.end_time - run.info.start_time) / 1000 if run.info.end_time else None,
            )  # fmt: skip
        return found


def tracked_counts(runs: dict[str, TrackedRun]) -> str:
    """``N runs, N params, N metric values, N artifacts`` (figures)."""
    params = sum(len(r.params) for r in runs.values())
    values = sum(len(h) for r in runs.values() for h in r.metrics.values())
    artifacts = sum(len(r.artifacts) for r in runs.values())
    return f"{len(runs)} runs, {params} params, {values} metric values, {artifacts} artifacts"


@dataclass(frozen=True)
class Replacement:
    """A deleted pod and the one its controller started instead (wall-clock seconds)."""

    old: str
    new: str
    deleted_at: float
    old_gone_at: float
    ready_at: float
    # Whether the new pod existed while the old one was still shutting down (one API
    # listing showed both): two servers at once on the same volume.
    beside_the_old: bool


def selector_of(core: client.CoreV1Api, namespace: str, deployment: str) -> str:
    """The label selector of a Deployment's pods."""
    apps = client.AppsV1Api(core.api_client)
    labels = apps.read_namespaced_deployment(deployment, namespace).spec.selector.match_labels
    return ",".join(f"{k}={v}" for k, v in labels.items())


def _ready(found: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in found.status.conditions or [])


def replace_pod(
    core: client.CoreV1Api, namespace: str, selector: str, timeout: float = 300
) -> Replacement:
    """Delete the one pod matching ``selector`` (graceful, as ``kubectl delete pod``).

    Returns once the old pod is gone and its successor (a new pod, told apart by its UID:
    a StatefulSet's keeps the name) is Ready.
    """
    [old] = [p for p in core.list_namespaced_pod(namespace, label_selector=selector).items
             if p.metadata.deletion_timestamp is None and _ready(p)]  # fmt: skip
    core.delete_namespaced_pod(old.metadata.name, namespace)
    deleted_at = time.time()
    moments: dict[str, float] = {}
    seen: dict[str, Any] = {"beside": False}

    def settled() -> bool:
        pods = [
            p
            for p in core.list_namespaced_pod(namespace, label_selector=selector).items
            if p.status.phase not in ("Succeeded", "Failed")
        ]  # a Job's pod is no server
        new = [p for p in pods if p.metadata.uid != old.metadata.uid]
        if len(new) < len(pods) and new:
            seen["beside"] = True
        if len(new) == len(pods):
            moments.setdefault("old_gone", time.time())
        for found in new:
            if _ready(found):
                moments.setdefault("ready", time.time())
                seen["new"] = found.metadata.name
        return "old_gone" in moments and "ready" in moments

    wait_for(f"pod {old.metadata.name} replaced", settled, timeout,
             lambda: f"{moments}\n{describe_pods(core, namespace)}")  # fmt: skip
    return Replacement(old.metadata.name, seen["new"], deleted_at, moments["old_gone"],
                       moments["ready"], seen["beside"])  # fmt: skip


def describe_pods(core: client.CoreV1Api, namespace: str) -> str:
    """One line a pod: name, phase, restarts (for failure messages)."""
    return "\n".join(
        f"{p.metadata.name} {p.status.phase} deleting={p.metadata.deletion_timestamp is not None}"
        f" restarts={[s.restart_count for s in p.status.container_statuses or []]}"
        for p in core.list_namespaced_pod(namespace).items
    )


def wait_run_pod_running(
    core: client.CoreV1Api, namespace: str, run_id: str, timeout: float
) -> str:
    """The run's pod (the K8sRunLauncher's Job) as soon as its container runs; its name.

    Polled every 0.2 s, so a fault injected next lands within a moment of the start.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod(namespace, label_selector=f"dagster/run-id={run_id}")
        for found in pods.items:
            if found.status.phase == "Running":
                return found.metadata.name
        time.sleep(0.2)
    raise AssertionError(f"run {run_id}'s pod not Running within {timeout:.0f} s\n"
                         f"{describe_pods(core, namespace)}")  # fmt: skip


# --- where the time of a launched run goes: Job, pod, container, first events ---


def first_event_times(graphql: DagsterGraphQLClient, run_id: str) -> dict[str, float]:
    """The first time (epoch seconds) of each event type in the run's log.

    The Kubernetes side is read from the API (:func:`run_pod_times`: whole seconds, as the
    API serialises them), Dagster's from the run's event log (milliseconds). All clocks are
    this machine's.
    """
    # The client has no public call for the event log; _execute is how it runs its queries.
    logs = graphql._execute(EVENTS_QUERY, {"runId": run_id})["logsForRun"]
    assert logs["__typename"] == "EventConnection", f"logsForRun({run_id}): {logs}"
    times: dict[str, float] = {}
    for event in logs["events"]:
        if event.get("eventType"):
            times.setdefault(event["eventType"], int(event["timestamp"]) / 1000)
    return times


@dataclass(frozen=True)
class RunPodTimes:
    """When the launcher's Job was created and its pod's container started."""

    job_created: datetime
    pod_started: datetime  # the kubelet took the pod (status.startTime)
    container_started: datetime


def run_pod_times(kube: client.ApiClient, namespace: str, job_name: str) -> RunPodTimes:
    """The Job's and its (only) pod's timestamps, as the API server keeps them."""
    job = client.BatchV1Api(kube).read_namespaced_job(job_name, namespace)
    pods = (
        client.CoreV1Api(kube)
        .list_namespaced_pod(namespace, label_selector=f"job-name={job_name}")
        .items
    )
    assert len(pods) == 1, f"job {job_name}: expected one pod, found {len(pods)}"
    [status] = pods[0].status.container_statuses
    state = status.state.terminated or status.state.running
    assert state is not None, f"run pod {pods[0].metadata.name} never started: {status.state}"
    return RunPodTimes(job.metadata.creation_timestamp, pods[0].status.start_time, state.started_at)


def run_start_figures(pod: RunPodTimes, events: dict[str, float], submitted: float) -> dict:
    """The figures of one run, in seconds, named for the measurements table."""
    created, taken = pod.job_created.timestamp(), pod.pod_started.timestamp()
    started = pod.container_started.timestamp()
    return {
        "run submitted -> Job created": created - submitted,
        "Job created -> run pod taken by the kubelet": taken - created,
        "run pod taken by the kubelet -> its container started": started - taken,
        "run pod's container started -> RUN_START": events["RUN_START"] - started,
        "run pod's container started -> STEP_START": events["STEP_START"] - started,
        # The multiprocess executor starts each step in a subprocess that loads the code again.
        "RUN_START -> STEP_WORKER_STARTED": events["STEP_WORKER_STARTED"] - events["RUN_START"],
        "STEP_START -> STEP_SUCCESS": events["STEP_SUCCESS"] - events["STEP_START"],
    }
