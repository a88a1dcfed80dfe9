"""Where the time of a launched run goes: Job, pod, container, Dagster's first events.

The Kubernetes side is read from the API (the Job's ``creationTimestamp``, the run pod's
container ``startedAt``: whole seconds, as the API serialises them); Dagster's side from
the run's event log, asked of the webserver through dagster-graphql's client
(``logsForRun``: the events' ``timestamp`` in milliseconds). All clocks are this machine's.
Figures only: recorded with ``cluster_measure``, never asserted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dagster_graphql import DagsterGraphQLClient
from kubernetes import client

EVENT_TIMES_QUERY = """
query RunEventTimes($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection { events { ... on MessageEvent { eventType timestamp } } }
    ... on PythonError { message }
  }
}
"""


def first_event_times(graphql: DagsterGraphQLClient, run_id: str) -> dict[str, float]:
    """The first time (epoch seconds) of each event type in the run's log."""
    # The client has no public call for the event log; _execute is how it runs its queries.
    logs = graphql._execute(EVENT_TIMES_QUERY, {"runId": run_id})["logsForRun"]
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
