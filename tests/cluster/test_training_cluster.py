"""The training pipeline on the local cluster: each step in a pod of its own, the model
registered from a pod, the champion loaded back.

The release is installed as in test_dagma_release.py (values/local.yaml, a namespace with
Pod Security "restricted" enforced, :mod:`support.release_install`), so it has both code
locations; the training one (``dagma-training``) serves ``dagma.examples.training.definitions``
from the training image. One run of ``training_pipeline_k8s`` for the last day is launched
through the webserver's GraphQL API: the daemon's K8sRunLauncher starts the run pod, whose
``k8s_job_executor`` starts one Kubernetes Job per step, on the run's image with the code
location's MLflow settings. Read back: the pods from the Kubernetes API, the steps from
Dagster's event log, the runs, the registered version and its alias from the in-cluster
MLflow server through a port-forward to its Service, and the champion's predictions from
``models:/diabetes_progression@champion`` loaded here through the server's artifact proxy.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.pyfunc
import pandas as pd
import pytest
from kubernetes import client
from mlflow import MlflowClient
from mlflow.entities import Run
from support.release import REPOSITORY, STEPS_CODE, TRAINING_CODE
from support.release_install import Release, describe, installed_release
from support.release_records import webserver
from support.training_cluster import (
    StepTimes,
    dagster_run_tags,
    first_times,
    launch_training,
    mlflow_runs_of,
    requests_by_pod,
    run_events,
    run_pods,
    server_requests,
    step_pods_by_step,
    step_times,
    time_shares,
)
from support.workloads import port_forward, wait_for

from dagma.examples.training import contract, data
from localcluster.components import Layout

DAY = contract.LAST_DAY  # the most history: a model the check passes
RUN_TIMEOUT_S = 1200  # six step pods one after another on 2 shared cores
ASSETS = (contract.HISTORY, contract.NEW_VISITS, contract.TRAINED_MODEL, contract.CHAMPION,
          contract.SCORED)  # fmt: skip
MLFLOW_ASSETS = (contract.TRAINED_MODEL, contract.SCORED)  # the steps that record a run
# The install, the run's pods, their reads: more than one test's default 600 s.
pytestmark = pytest.mark.timeout(3000)


@dataclass(frozen=True)
class Launched:
    """The run of training_pipeline_k8s, how it ended, and what ran it."""

    run_id: str
    status: str
    wall_seconds: float  # submitted to finished, as the client saw it
    steps: dict[str, StepTimes]  # by step key, from Dagster's event log
    first: dict[str, float]  # first time of each event type
    step_pods: dict[str, client.V1Pod]  # by the step each ran
    run_pods: list[client.V1Pod]


@pytest.fixture(scope="module")
def release(layout: Layout, kube, release_images, pod_image, tmp_path_factory) -> Iterator[Release]:
    """The release with both code locations (all three images built by ``release_images``)
    and dagma.examples.steps' beside them."""
    steps = {STEPS_CODE: "dagma.examples.steps"}
    with installed_release(layout, kube, pod_image, tmp_path_factory.mktemp("values"),
                           prefix="dagma-training", extra_locations=steps) as found:  # fmt: skip
        yield found


@pytest.fixture(scope="module")
def launched(layout: Layout, core: client.CoreV1Api, release: Release, cluster_measure) -> Launched:
    """One run of training_pipeline_k8s for :data:`DAY`, until it ends."""
    with webserver(layout, release) as web:
        began = time.monotonic()
        run_id = launch_training(web, DAY)
        status = web.wait_finished(run_id, RUN_TIMEOUT_S)
        wall = time.monotonic() - began
        events = run_events(web, run_id)
    cluster_measure("training_pipeline_k8s: submitted to finished", f"{wall:.0f} s ({status})")

    def pods_ended() -> dict[str, list] | None:  # Dagster's run ends before its pods exit
        pods = run_pods(core, release.namespace, run_id)
        ended = all(p.status.phase in ("Succeeded", "Failed") for ps in pods.values() for p in ps)
        return pods if ended else None

    pods = wait_for(f"the pods of run {run_id} ended", pods_ended, 180,
                    lambda: describe(layout, release.namespace))  # fmt: skip
    launched = Launched(run_id, status, wall, step_times(events), first_times(events),
                        step_pods_by_step(pods.get("step_worker", [])),
                        pods.get("run_worker", []))  # fmt: skip
    if status != "SUCCESS":
        pytest.fail(f"run {run_id}: {status}\n{describe(layout, release.namespace)}")
    return launched


@pytest.fixture(scope="module")
def tracking_uri(layout: Layout, release: Release) -> Iterator[str]:
    """The in-cluster MLflow server, through a port-forward to its Service."""
    kubectl = layout.bin / "kubectl"
    with port_forward(
        kubectl, layout.kubeconfig, release.namespace, "service/mlflow", 5000
    ) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def mlflow_runs(launched: Launched, tracking_uri: str) -> tuple[Run | None, dict[str, Run]]:
    """The MLflow parent of the Dagster run, and its children by the asset of each."""
    return mlflow_runs_of(MlflowClient(tracking_uri), launched.run_id)


@pytest.fixture(scope="module")
def tracked(mlflow_runs: tuple[Run | None, dict[str, Run]]) -> dict[str, Run]:
    """The MLflow runs the steps recorded, by the asset that recorded each."""
    return mlflow_runs[1]


def _env_sources(pod: client.V1Pod) -> set[str]:
    [container] = pod.spec.containers
    return {(ref.config_map_ref or ref.secret_ref).name for ref in container.env_from or []}


def test_each_step_ran_in_a_pod_of_its_own_on_the_training_image(
    launched: Launched, release: Release, release_images
) -> None:
    """Every step Dagster recorded ran in its own Job's pod, which Kubernetes reports
    Succeeded, on the training image with the MLflow ConfigMap and Secret; the run pod
    only started them."""
    assert set(launched.step_pods) == set(launched.steps)
    # The five assets and the check: one pod each.
    assert set(ASSETS) < set(launched.steps) and len(launched.steps) == len(ASSETS) + 1
    [run_pod] = launched.run_pods
    names = {pod.metadata.name for pod in launched.step_pods.values()}
    assert len(names) == len(launched.step_pods) and run_pod.metadata.name not in names
    mlflow_env = {"dagma-mlflow-env", "dagma-mlflow-credentials"}
    for step, pod in launched.step_pods.items():
        assert pod.status.phase == "Succeeded", (step, pod.status)
        labels = pod.metadata.labels
        assert labels["dagster/code-location"] == TRAINING_CODE, labels
        [container] = pod.spec.containers
        assert container.image == release_images.training.tag, (step, container.image)
        assert container.args[:3] == ["dagster", "api", "execute_step"], container.args
        assert mlflow_env <= _env_sources(pod), (step, _env_sources(pod))
        # Model files go through MLflow's artifact proxy: no storage credentials here.
        variables = {env.name for env in container.env or []}
        assert not {name for name in variables if name.startswith("AWS_")}, variables
    [run_container] = run_pod.spec.containers
    assert run_container.image == release_images.training.tag
    assert run_container.args[:3] == ["dagster", "api", "execute_run"]


def test_each_step_pod_recorded_its_own_mlflow_run(
    launched: Launched, tracked: dict[str, Run]
) -> None:
    """trained_model and scored_visits each recorded one MLflow run, tagged with the Dagster
    run, the asset, the day and the training code location, and named by its ``dagster.host`` tag
    as the pod that ran that step; the files went through the server's proxy."""
    assert set(tracked) == set(MLFLOW_ASSETS)
    for asset, run in tracked.items():
        tags = run.data.tags
        assert run.info.status == "FINISHED", (asset, run.info.status)
        assert tags[contract.HOST_TAG] == launched.step_pods[asset].metadata.name, (asset, tags)
        assert (tags["dagster.code_location"], tags["dagster.partition_key"]) == (
            TRAINING_CODE, DAY
        )  # fmt: skip
        assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
    assert len({run.data.tags[contract.HOST_TAG] for run in tracked.values()}) == 2


def test_one_mlflow_parent_run_groups_the_runs_of_the_step_pods(
    launched: Launched,
    mlflow_runs: tuple[Run | None, dict[str, Run]],
    layout: Layout,
    release: Release,
) -> None:
    """The run pod created one parent before any step; each step pod read its id from the
    Dagster run and nested its run under it; the Dagster run links to it."""
    parent, children = mlflow_runs
    assert parent is not None, "no MLflow parent run"
    tags = parent.data.tags
    assert parent.info.status == "FINISHED"
    assert (tags["dagster.run_id"], parent.info.run_name) == (launched.run_id, contract.K8S_JOB)
    assert tags["dagster.code_location"] == TRAINING_CODE
    for step in launched.steps:  # the note lists every step, the check's included
        assert f"`{step}`" in tags["mlflow.note.content"], (step, tags["mlflow.note.content"])
    [run_pod] = launched.run_pods  # each run names the pod that recorded it
    assert tags["dagster.host"] == run_pod.metadata.name
    for asset, child in children.items():
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id, asset
        assert child.data.tags["dagster.step_key"] == asset
        assert child.data.tags["dagster.host"] == launched.step_pods[asset].metadata.name
    with webserver(layout, release) as web:
        dagster_tags = dagster_run_tags(web, launched.run_id)
    assert dagster_tags["dagma/mlflow_parent_run_id"] == parent.info.run_id
    assert dagster_tags["dagma/mlflow_parent_run_url"].endswith(f"/runs/{parent.info.run_id}")


def test_the_model_was_registered_from_the_training_pod_and_became_the_champion(
    launched: Launched, tracked: dict[str, Run], tracking_uri: str
) -> None:
    tracking = MlflowClient(tracking_uri)
    champion = tracking.get_model_version_by_alias(contract.MODEL_NAME, contract.ALIAS)
    assert champion.tags["dagster.run_id"] == launched.run_id
    assert champion.tags["dagster.partition_key"] == DAY
    assert champion.tags[f"dagster.check.{contract.CHECK}"] == "passed"
    # Registered in trained_model's run, which its step pod recorded.
    training_run = tracked[contract.TRAINED_MODEL]
    assert champion.run_id == training_run.info.run_id
    assert training_run.data.tags[contract.HOST_TAG] == (
        launched.step_pods[contract.TRAINED_MODEL].metadata.name
    )
    assert champion.source.startswith("models:/m-"), champion.source
    assert tracked[contract.SCORED].data.tags["model_version"] == champion.version


def test_the_champion_loads_from_the_alias_uri_and_predicts_what_the_scoring_pod_stored(
    tracked: dict[str, Run], tracking_uri: str, tmp_path: Path
) -> None:
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)  # models:/ resolves against the global URI
    try:
        champion = mlflow.pyfunc.load_model(f"models:/{contract.MODEL_NAME}@{contract.ALIAS}")
    finally:
        mlflow.set_tracking_uri(previous)
    visits = data.new_visits(DAY)
    predicted = pd.Series(champion.predict(visits[data.feature_columns()])).round(6)
    scoring = tracked[contract.SCORED].info.run_id
    stored = MlflowClient(tracking_uri).download_artifacts(scoring, "predictions.csv", tmp_path)
    assert list(pd.read_csv(stored)["predicted"].round(6)) == list(predicted)


def test_where_the_pipeline_wall_time_went(
    launched: Launched, tracked: dict[str, Run], cluster_measure
) -> None:
    """Figures only (never asserted): the shares of the wall time, each step's pod start and
    run, the run pod's start."""
    shares = time_shares(launched.wall_seconds, list(tracked.values()))
    cluster_measure("training_pipeline_k8s: wall time shares", ", ".join(
        f"{name} {seconds:.1f} s ({seconds / launched.wall_seconds:.0%})"
        for name, seconds in shares.items()
    ))  # fmt: skip
    first = launched.first
    if {"RUN_STARTING", "RUN_START"} <= first.keys():
        cluster_measure("training_pipeline_k8s: run pod started (RUN_STARTING to RUN_START)",
                        f"{first['RUN_START'] - first['RUN_STARTING']:.1f} s")  # fmt: skip
    for step, times in sorted(launched.steps.items(), key=lambda item: item[1].start):
        cluster_measure(f"training_pipeline_k8s: step {step}",
                        f"pod start {times.pod_start_seconds:.1f} s, "
                        f"step {times.step_seconds:.1f} s")  # fmt: skip
    assert sum(shares.values()) == pytest.approx(launched.wall_seconds)


THREE_STEPS = ("features_a", "features_b", "model")


def test_three_steps_on_k8s_job_executor_give_one_parent_and_three_children_at_the_floor(
    layout: Layout, core: client.CoreV1Api, release: Release, tracking_uri: str,
    launched: Launched, cluster_measure,
) -> None:  # fmt: skip
    """dagma.examples.steps' ``three_steps_k8s``: one MLflow parent from the run pod and a
    nested child from each step's own pod, named by it; the requests each pod sent, read
    from the MLflow server's access log by the pods' IPs: no search, at most 4 per step and
    3 for the parent (the floor the multiprocess executor keeps under ``dagster dev``), and
    none from the code locations, where the run-endings sensors run."""
    tracking = MlflowClient(tracking_uri)
    began = time.monotonic()
    with webserver(layout, release) as web:
        run_id = web.call(lambda graphql: graphql.submit_job_execution(
            "three_steps_k8s", repository_location_name=STEPS_CODE, repository_name=REPOSITORY,
        ))  # fmt: skip
        assert web.wait_finished(run_id, RUN_TIMEOUT_S) == "SUCCESS"
    parent, children = mlflow_runs_of(tracking, run_id)
    pods = run_pods(core, release.namespace, run_id)
    step_pods = step_pods_by_step(pods["step_worker"])
    [run_pod] = pods["run_worker"]
    assert parent is not None and parent.info.status == "FINISHED", parent
    assert parent.info.run_name == "three_steps_k8s"
    assert parent.data.tags["dagster.host"] == run_pod.metadata.name
    assert sorted(children) == sorted(step_pods) == list(THREE_STEPS)
    for step, child in children.items():
        tags = child.data.tags
        assert (child.info.status, tags["mlflow.parentRunId"]) == ("FINISHED", parent.info.run_id)
        assert tags["dagster.step_key"] == step
        assert tags["dagster.host"] == step_pods[step].metadata.name, (step, tags)
        assert child.data.params["asset"] == step

    time.sleep(25)  # two evaluations of the sensors after the run: they must ask nothing
    logged = server_requests(core, release.namespace, int(time.monotonic() - began) + 5)
    locations = [pod for pod in core.list_namespaced_pod(release.namespace).items
                 if pod.metadata.name.startswith("dagma-dagster-user-deployments-")]  # fmt: skip
    sensors = requests_by_pod(logged, locations)
    assert len(locations) == 3 and not any(sensors.values()), sensors
    by_pod = requests_by_pod(logged, [run_pod, *step_pods.values()])
    for name, counts in by_pod.items():
        cluster_measure(f"three_steps_k8s: requests from {name}", ", ".join(
            f"{request} {count}" for request, count in sorted(counts.items())))  # fmt: skip
    total = sum(by_pod.values(), Counter())
    cluster_measure("three_steps_k8s: requests per run", f"{sum(total.values())} ({dict(total)})")
    assert total["POST runs/search"] == 0, dict(total)
    assert sum(by_pod[run_pod.metadata.name].values()) <= 3, by_pod[run_pod.metadata.name]
    for step, pod in step_pods.items():
        assert sum(by_pod[pod.metadata.name].values()) <= 4, (step, by_pod[pod.metadata.name])
    assert total["POST runs/create"] == 4, dict(total)


# Boosting stages enough that trained_model's MLflow run stays open for seconds.
LONG_TRAINING = {"n_estimators": 1000, "max_depth": 8, "learning_rate": 0.01}
ENDED_WITHIN_S = 60  # the bound: Dagster run ended -> no MLflow run RUNNING


@pytest.mark.parametrize("grace_seconds", [None, 0], ids=["deleted", "force-deleted"])
def test_a_step_pod_deleted_mid_step_fails_its_run_and_the_parent_within_60_s(
    layout: Layout, core: client.CoreV1Api, release: Release, tracking_uri: str,
    launched: Launched, cluster_measure, grace_seconds: int | None,
) -> None:  # fmt: skip
    """trained_model's pod deleted while its MLflow run is open, as ``kubectl delete pod``
    does (SIGTERM, then the grace period) and forced (``--grace-period=0``, the pod object
    gone at once, the container stopped without waiting): the step fails, the Dagster run
    fails, and its MLflow child and parent end FAILED (never KILLED: nobody canceled it)
    within 60 s of the Dagster run's end, with the reason."""
    tracking = MlflowClient(tracking_uri)
    with webserver(layout, release) as web:
        run_id = launch_training(web, contract.FIRST_DAY, LONG_TRAINING)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while True:  # polled often: the run is open for a few seconds
            assert time.monotonic() < deadline, describe(layout, release.namespace)
            _, children = mlflow_runs_of(tracking, run_id)
            training = children.get(contract.TRAINED_MODEL)
            if training is not None and training.info.status == "RUNNING":
                break
            assert web.status(run_id) not in ("SUCCESS", "FAILURE", "CANCELED"), run_id
            time.sleep(0.2)
        pod = training.data.tags["dagster.host"]  # dagma's tag, set when the run is created
        core.delete_namespaced_pod(pod, release.namespace, grace_period_seconds=grace_seconds)
        assert web.wait_finished(run_id, RUN_TIMEOUT_S) == "FAILURE"
        run_ended = first_times(run_events(web, run_id))["RUN_FAILURE"]
    how = "force-deleted" if grace_seconds == 0 else "deleted"
    child = _ended_failed_within_bound(tracking, run_id, run_ended, f"step pod {how}",
                                       cluster_measure)  # fmt: skip
    assert "dagster.failure" in child.data.tags, child.data.tags


# Above a step pod's memory when trained_model's MLflow run starts (Python, Dagster and the
# MLflow client: about 280 MB), below what training needs once scikit-learn, SciPy and
# matplotlib are loaded (about 360-400 MB): the container is OOM-killed mid-step.
OOM_LIMIT = "320Mi"


def test_a_step_container_oom_killed_fails_its_run_and_the_parent_within_60_s(
    layout: Layout, core: client.CoreV1Api, release: Release, tracking_uri: str,
    launched: Launched, cluster_measure,
) -> None:  # fmt: skip
    """trained_model's container given a memory limit it outgrows once training loads its
    libraries: the kernel kills it (OOMKilled, read from the pod), the step and the Dagster
    run fail, and its MLflow child and parent end FAILED within 60 s, with the reason."""
    tracking = MlflowClient(tracking_uri)
    memory = {"limits": {"memory": OOM_LIMIT}, "requests": {"memory": OOM_LIMIT}}
    with webserver(layout, release) as web:
        run_id = launch_training(web, contract.FIRST_DAY, LONG_TRAINING,
                                 {contract.TRAINED_MODEL: {"resources": memory}})  # fmt: skip
        assert web.wait_finished(run_id, RUN_TIMEOUT_S) == "FAILURE"
        run_ended = first_times(run_events(web, run_id))["RUN_FAILURE"]
    pod = step_pods_by_step(run_pods(core, release.namespace, run_id)["step_worker"])[
        contract.TRAINED_MODEL
    ]
    [container] = pod.status.container_statuses
    assert container.state.terminated is not None, container.state
    assert container.state.terminated.reason == "OOMKilled", container.state
    child = _ended_failed_within_bound(tracking, run_id, run_ended, "step container OOM-killed",
                                       cluster_measure)  # fmt: skip
    reason = child.data.tags["dagma.end_reason"]
    print(f"the OOM-killed step's MLflow run ended with: {reason!r}")
    assert "dagster.failure" in child.data.tags, child.data.tags
    # Dagster's error for the step, as the run's note and tags say it: its Job failed.
    assert "failed Kubernetes job dagster-step-" in reason, reason


def _ended_failed_within_bound(
    tracking: MlflowClient, run_id: str, run_ended: float, fault: str, cluster_measure
) -> Run:
    """Wait until the Dagster run's MLflow runs have ended; check that trained_model's child
    and the parent ended FAILED (never KILLED: nobody canceled) within the bound, the parent
    naming the step, and nothing ran after it. Returns the child."""

    def all_ended() -> tuple[Run, dict[str, Run]] | None:
        parent, children = mlflow_runs_of(tracking, run_id)
        runs = [parent, *children.values()]
        return (parent, children) if parent and all(r.info.end_time for r in runs) else None

    parent, children = wait_for("the MLflow runs ended", all_ended, ENDED_WITHIN_S + 30)
    child = children[contract.TRAINED_MODEL]
    last_end = max(run.info.end_time for run in (parent, *children.values())) / 1000
    cluster_measure(f"training_pipeline_k8s: {fault}, Dagster run ended -> last MLflow run "
                    "ended", f"{last_end - run_ended:.1f} s")  # fmt: skip
    assert last_end - run_ended <= ENDED_WITHIN_S
    assert (child.info.status, parent.info.status) == ("FAILED", "FAILED")
    assert contract.TRAINED_MODEL in parent.data.tags["dagster.failure"], parent.data.tags
    assert set(children) == {contract.TRAINED_MODEL}  # nothing ran after it
    return child
