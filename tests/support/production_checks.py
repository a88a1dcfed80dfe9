"""What the production tests do to the installed topology: launch runs, log in, reach MLflow.

Runs are launched through the Dagster webserver's GraphQL API (dagster-graphql's client)
over a port-forward; MLflow is read with the official client, logged in through
MLflow's own variables (``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD``, set for the
duration of a ``with login(...)`` block). Reachability is tried from a new pod (or from a
running pod by ``kubectl exec``) with Python's urllib for 10 s: ``"200"`` when
MLflow answered, else the error's type and text (kube-router rejects a connection a policy
forbids: "Connection refused").
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from dagster import AssetKey
from dagster_graphql import DagsterGraphQLClient
from kubernetes import client
from mlflow import MlflowClient

from localcluster.cluster import kubectl
from localcluster.components import Layout
from support.production import Production
from support.release import USER_CODE
from support.workloads import pod, pod_log, port_forward, wait_for, wait_pod_phase

ASSET = "train_model_stub"
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")
HEALTH = "http://mlflow.{namespace}.svc.cluster.local:5000/health"
REACH = """
import json, sys, time, urllib.request
# Tried for 10 s: the enforcer adds a new pod's address to its ipsets a moment after the
# pod starts, and until then a policy-selected destination refuses it.
deadline = time.monotonic() + 10
while True:
    try:
        status = str(urllib.request.urlopen(sys.argv[1], timeout=5).status)
    except Exception as error:
        status = f"{type(error).__name__}: {error}"
    if status == "200" or time.monotonic() > deadline:
        break
    time.sleep(1)
print(json.dumps(status))
"""


@contextmanager
def login(username: str, password: str) -> Iterator[None]:
    """MLflow's client logs in as ``username`` inside the block."""
    names = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    before = {name: os.environ.get(name) for name in names}
    os.environ.update(zip(names, (username, password), strict=True))
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def submit(graphql: DagsterGraphQLClient) -> str:
    """Launch ``train_model_stub`` through the webserver; the Dagster run id."""
    return graphql.submit_job_execution(
        "__ASSET_JOB", repository_location_name=USER_CODE, asset_selection=[AssetKey(ASSET)]
    )


def wait_finished(
    graphql: DagsterGraphQLClient, run_ids: list[str], timeout: float, explain: Callable
) -> dict[str, str]:
    """Until every run has ended; their statuses."""
    ended: dict[str, str] = {}

    def all_ended() -> bool:
        for run_id in run_ids:
            if run_id not in ended:
                status = graphql.get_run_status(run_id).value
                if status in FINISHED:
                    ended[run_id] = status
        return len(ended) == len(run_ids)

    wait_for(f"{len(run_ids)} runs finished", all_ended, timeout, explain)
    return ended


def reach_from_new_pod(
    core: client.CoreV1Api, namespace: str, image: str, name: str, labels: dict[str, str],
    url: str,
) -> str:  # fmt: skip
    """From a new pod with ``labels`` in ``namespace``: what a GET of ``url`` got."""
    spec = pod(name, image, ["python3", "-c", REACH, url])
    spec["metadata"]["labels"] = {**spec["metadata"]["labels"], **labels}
    core.create_namespaced_pod(namespace, spec)
    wait_pod_phase(core, namespace, name, {"Succeeded", "Failed"})
    result = json.loads(pod_log(core, namespace, name).strip().splitlines()[-1])
    core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    return result


def reach_from_running_pod(layout: Layout, namespace: str, pod_name: str, url: str) -> str:
    """From the running pod ``pod_name`` (``kubectl exec``, its own python)."""
    output = kubectl(layout, "-n", namespace, "exec", pod_name, "--",
                     "python", "-c", REACH, url)  # fmt: skip
    return json.loads(output.strip().splitlines()[-1])


def pods_of(core: client.CoreV1Api, namespace: str, component: str) -> list[client.V1Pod]:
    """Running pods of the namespace whose ``component`` label is ``component``."""
    found = core.list_namespaced_pod(namespace, label_selector=f"component={component}").items
    return [p for p in found if p.status.phase == "Running"]


def env_names(spec: client.V1PodSpec) -> dict[str, set[str]]:
    """Per container (init containers too): variable names, and ``secret:<name>`` for
    every Secret the container reads (env valueFrom or envFrom)."""
    names: dict[str, set[str]] = {}
    for container in [*(spec.init_containers or []), *spec.containers]:
        found = names.setdefault(container.name, set())
        for variable in container.env or []:
            found.add(variable.name)
            ref = variable.value_from and variable.value_from.secret_key_ref
            if ref:
                found.add(f"secret:{ref.name}")
        for source in container.env_from or []:
            if source.secret_ref:
                found.add(f"secret:{source.secret_ref.name}")
    return names


def server_pods(core: client.CoreV1Api, namespace: str) -> list[client.V1Pod]:
    """MLflow's server pods of the release, those being deleted left out."""
    selector = "app.kubernetes.io/name=mlflow,app.kubernetes.io/component=server"
    return [p for p in core.list_namespaced_pod(namespace, label_selector=selector).items
            if p.metadata.deletion_timestamp is None]  # fmt: skip


def servers_ready(apps: client.AppsV1Api, namespace: str) -> bool:
    """Every MLflow server replica Ready on the Deployment's current revision."""
    found = apps.read_namespaced_deployment("dagma-mlflow", namespace)
    return found.status.ready_replicas == found.spec.replicas == found.status.updated_replicas


@contextmanager
def admin_tracking(layout: Layout, production: Production) -> Iterator[MlflowClient]:
    """The official client through a new port-forward (a test's earlier forward may hold a
    pod that was deleted since), logged in as the admin."""
    forward = (layout.bin / "kubectl", layout.kubeconfig, production.namespace)
    with port_forward(*forward, "svc/mlflow", 5000) as port, login(*production.admin):
        yield MlflowClient(f"http://127.0.0.1:{port}")


def user_code_image(core: client.CoreV1Api, namespace: str) -> str:
    """The image the user-code deployment (and so every run pod) runs."""
    [first, *_] = pods_of(core, namespace, "user-deployments")
    return first.spec.containers[0].image


def schema_hook_log(core: client.CoreV1Api, namespace: str) -> list[tuple[float, str]]:
    """charts/mlflow's pre-upgrade hook's log (its kept Job): each line with the time the node
    stamped on it (epoch seconds)."""
    selector = "job-name=dagma-mlflow-schema-upgrade"
    [pod] = core.list_namespaced_pod(namespace, label_selector=selector).items
    log = core.read_namespaced_pod_log(pod.metadata.name, namespace, timestamps=True,
                                       _preload_content=False).data.decode()  # fmt: skip
    lines = []
    for line in log.splitlines():
        stamp, _, text = line.partition(" ")
        lines.append((datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp(), text))
    return lines
