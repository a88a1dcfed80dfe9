"""training_pipeline_k8s on an installed release: launched, and what it left behind read back.

The run is launched through the webserver's GraphQL API (:class:`support.release_records.
Webserver`, behind its port-forward), as the UI's launchpad does: the job of the training
code location, one daily partition. What ran where comes from the Kubernetes API (the
pods the run's ``k8s_job_executor`` created, by the labels dagster-k8s gives them) and from
Dagster's event log (each step's ``STEP_WORKER_STARTING``, ``STEP_START`` and end, with its
step key). Where the wall time went (:func:`time_shares`) is figures only, never asserted.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from kubernetes import client
from mlflow import MlflowClient
from mlflow.entities import Run

from benchmarks.http_count import endpoint
from dagma.examples.training import contract
from support.release import REPOSITORY, TRAINING_CODE
from support.release_records import Webserver

STEP_EVENTS_QUERY = """
query Events($runId: ID!) { logsForRun(runId: $runId, limit: 5000) { __typename
  ... on EventConnection { events { __typename
    ... on MessageEvent { timestamp eventType stepKey } } }
  ... on PythonError { message } } }
"""
STEP_ENDS = ("STEP_SUCCESS", "STEP_FAILURE")


@dataclass(frozen=True)
class StepTimes:
    """One step as Dagster's event log has it (epoch seconds)."""

    worker_starting: float  # the run pod asked Kubernetes for the step's Job
    start: float  # the step began, in its own pod
    end: float  # it succeeded or failed there

    @property
    def pod_start_seconds(self) -> float:
        """Job created to step begun: scheduling, the container, Python and Dagster's start."""
        return self.start - self.worker_starting

    @property
    def step_seconds(self) -> float:
        return self.end - self.start


RUN_TAGS_QUERY = """
query Tags($runId: ID!) { runOrError(runId: $runId) { __typename
  ... on Run { tags { key value } } ... on PythonError { message } } }
"""


def launch_training(
    web: Webserver, day: str, model_config: dict | None = None,
    step_containers: dict[str, dict] | None = None,
) -> str:  # fmt: skip
    """Launch ``training_pipeline_k8s`` for ``day`` in the training code location, with
    ``model_config`` as trained_model's config and ``step_containers`` as container config
    of the named steps' pods (k8s_job_executor's ``per_step_k8s_config``); its run id."""
    run_config = contract.run_config(model_config)
    if step_containers:
        per_step = {step: {"container_config": config} for step, config in step_containers.items()}
        run_config["execution"] = {"config": {"per_step_k8s_config": per_step}}
    return web.call(lambda graphql: graphql.submit_job_execution(
        contract.K8S_JOB, repository_location_name=TRAINING_CODE, repository_name=REPOSITORY,
        run_config=run_config, tags={"dagster/partition": day},
    ))  # fmt: skip


def dagster_run_tags(web: Webserver, run_id: str) -> dict[str, str]:
    """The Dagster run's tags, as its page shows them."""
    answer = web.query(RUN_TAGS_QUERY, {"runId": run_id})["runOrError"]
    assert answer["__typename"] == "Run", answer
    return {tag["key"]: tag["value"] for tag in answer["tags"]}


def mlflow_runs_of(tracking: MlflowClient, run_id: str) -> tuple[Run | None, dict[str, Run]]:
    """The Dagster run's MLflow parent (None before it exists) and its children by asset."""
    found = tracking.search_runs(
        [e.experiment_id for e in tracking.search_experiments()],
        filter_string=f"tags.`dagster.run_id` = '{run_id}'",
    )
    parents = [run for run in found if "dagster.asset_key" not in run.data.tags]
    children = {run.data.tags["dagster.asset_key"]: run for run in found if run not in parents}
    assert len(parents) <= 1 and len(children) + len(parents) == len(found), [
        run.data.tags for run in found
    ]  # fmt: skip
    return (parents[0] if parents else None), children


def run_events(web: Webserver, run_id: str) -> list[dict]:
    """Every event of the run that has a type: ``{timestamp, eventType, stepKey}``."""
    answer = web.query(STEP_EVENTS_QUERY, {"runId": run_id})["logsForRun"]
    assert answer["__typename"] == "EventConnection", answer
    return [event for event in answer["events"] if event.get("eventType")]


def step_times(events: list[dict]) -> dict[str, StepTimes]:
    """``{step key: StepTimes}`` for every step that ended."""
    seen: dict[str, dict[str, float]] = {}
    for event in events:
        if event.get("stepKey"):
            times = seen.setdefault(event["stepKey"], {})
            times.setdefault(event["eventType"], int(event["timestamp"]) / 1000)
    return {
        step: StepTimes(times["STEP_WORKER_STARTING"], times["STEP_START"],
                        next(times[end] for end in STEP_ENDS if end in times))
        for step, times in seen.items() if any(end in times for end in STEP_ENDS)
    }  # fmt: skip


def first_times(events: list[dict]) -> dict[str, float]:
    """The first time of each event type (epoch seconds)."""
    first: dict[str, float] = {}
    for event in events:
        first.setdefault(event["eventType"], int(event["timestamp"]) / 1000)
    return first


def run_pods(core: client.CoreV1Api, namespace: str, run_id: str) -> dict[str, list]:
    """The run's pods by dagster-k8s's component label: ``run_worker``, ``step_worker``."""
    pods = core.list_namespaced_pod(namespace, label_selector=f"dagster/run-id={run_id}").items
    found: dict[str, list] = {}
    for pod in pods:
        component = (pod.metadata.labels or {}).get("app.kubernetes.io/component", "")
        found.setdefault(component, []).append(pod)
    return found


def step_pods_by_step(pods: list) -> dict[str, client.V1Pod]:
    """Step pods by the step they ran (dagster-k8s's ``dagster/op`` label); one each."""
    by_step: dict[str, client.V1Pod] = {}
    for pod in pods:
        step = pod.metadata.labels["dagster/op"]
        assert step not in by_step, f"two pods ran {step}: {by_step[step].metadata.name}, " \
            f"{pod.metadata.name}"  # fmt: skip
        by_step[step] = pod
    return by_step


def time_shares(wall_seconds: float, mlflow_runs: list[Run]) -> dict[str, float]:
    """Where the pipeline's wall time went, in seconds, adding up to ``wall_seconds``.

    Training is the fit itself (``fit_seconds``, logged by ``trained_model``); MLflow is the
    rest of the time inside the pipeline's MLflow runs (params, metrics, the plot, the model
    files through the server's artifact proxy, registration, the champion's download); the
    remainder is Dagster and Kubernetes: queueing, run and step pods started, Python and
    Dagster loaded in each, the event log, the check's and the promotion's few requests.
    """
    training = sum(run.data.metrics.get("fit_seconds", 0.0) for run in mlflow_runs)
    in_runs = sum((run.info.end_time - run.info.start_time) / 1000 for run in mlflow_runs)
    mlflow = in_runs - training
    return {"training": training, "MLflow": mlflow,
            "Dagster and Kubernetes": wall_seconds - in_runs}  # fmt: skip


# uvicorn's access log line: `INFO:     10.88.0.12:51234 - "POST /api/2.0/mlflow/runs/create ..."`
ACCESS_LINE = re.compile(r'(\d+\.\d+\.\d+\.\d+):\d+ - "([A-Z]+) (\S+) HTTP')


def server_requests(core: client.CoreV1Api, namespace: str, since_seconds: int) -> list[tuple]:
    """Every request the release's MLflow servers logged in the last ``since_seconds``:
    ``(client IP, endpoint)``, the endpoint as :mod:`benchmarks.http_count` names it."""
    selector = "app.kubernetes.io/name=mlflow,app.kubernetes.io/component=server"
    requests = []
    for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
        log = core.read_namespaced_pod_log(  # raw: the client would hand back str(bytes)
            pod.metadata.name, namespace, container="mlflow", since_seconds=since_seconds,
            _preload_content=False,
        ).data.decode()  # fmt: skip
        requests += [(found[1], endpoint(found[2], found[3]))
                     for found in map(ACCESS_LINE.search, log.splitlines()) if found]  # fmt: skip
    return requests


def requests_by_pod(requests: list[tuple], pods: list[client.V1Pod]) -> dict[str, Counter]:
    """The requests each of ``pods`` sent, by endpoint, told apart by the pod's IP."""
    names = {pod.status.pod_ip: pod.metadata.name for pod in pods}
    assert None not in names and len(names) == len(pods), [p.status.pod_ip for p in pods]
    counts: dict[str, Counter] = {name: Counter() for name in names.values()}
    for ip, request in requests:
        if ip in names:
            counts[names[ip]][request] += 1
    return counts
