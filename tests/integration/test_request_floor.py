"""Requests to the MLflow server, counted by endpoint: the floor is four per materialization.

Without a parent run (``materialize()`` runs in process, with no executor of dagma's), the
first in a process adds one: the experiment lookup, also the reachability check. Nothing
ever searches. (With parent runs: tests/integration/test_parent_runs.py.)

Counted where the MLflow client sends every request (benchmarks.http_count), with the
requests going to the session's real server; what reaches it is read back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow as mlflow_module
from dagster import DagsterInstance, asset, materialize
from mlflow import MlflowClient

from benchmarks.http_count import counting_requests
from dagma import MlflowRunRecorder, MlflowTrackingResource
from dagma.tracking.dagster_records import recorded_runs

ROOT = Path(__file__).parents[2]
FLOOR = {
    "POST runs/create": 1,  # with the Dagster tags
    "POST runs/log-batch": 1,  # params, metrics and tags together
    "PUT mlflow-artifacts/artifacts/<path>": 1,  # the artifact, to the URI create returned
    "POST runs/update": 1,  # FINISHED
}
POINTS = 10_000


def test_train_model_stub_costs_five_requests_first_then_four(
    mlflow_server: str, client: MlflowClient
) -> None:
    # A fresh interpreter: the first materialization in a process is what is counted.
    client.get_experiment_by_name("floor") or client.create_experiment("floor")
    script = (
        "import json, sys\n"
        "from dagster import materialize\n"
        "from benchmarks.http_count import counting_requests\n"
        "from dagma.defs.train_model import train_model_stub\n"
        "from dagma import MlflowTrackingResource\n"
        f"resource = MlflowTrackingResource(tracking_uri={mlflow_server!r}, experiment='floor')\n"
        "counts = []\n"
        "for _ in range(3):\n"
        f"    with counting_requests({mlflow_server!r}) as counted:\n"
        "        materialize([train_model_stub], resources={'tracking': resource})\n"
        "    counts.append(dict(counted))\n"
        "print(json.dumps(counts))\n"
    )
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    first, *later = json.loads(result.stdout.strip().splitlines()[-1])
    # Once per process: the experiment lookup, which is also the reachability check.
    assert first == {"GET experiments/get-by-name": 1, **FLOOR}
    assert later == [FLOOR, FLOOR]


def test_ten_thousand_points_in_few_requests_with_every_point_readable(
    tracking: MlflowTrackingResource, client: MlflowClient, mlflow_server: str
) -> None:
    @asset
    def training_loop(tracking: MlflowRunRecorder) -> str:
        with tracking.run() as run_id:
            for step in range(POINTS):
                tracking.log_metric("loss", 1.0 / (step + 1), step=step)
        return run_id

    with counting_requests(mlflow_server) as counted:
        result = materialize([training_loop], resources={"tracking": tracking})
    assert sum(counted.values()) <= 20, counted
    assert counted["POST runs/log-batch"] == POINTS // 1000  # full batches only
    history = client.get_metric_history(result.output_for_node("training_loop"), "loss")
    assert sorted(m.step for m in history) == list(range(POINTS))
    assert {m.step: m.value for m in history}[9] == 0.1


def test_points_logged_before_an_exception_are_kept(
    tracking: MlflowTrackingResource, client: MlflowClient
) -> None:
    with DagsterInstance.ephemeral() as instance:

        @asset
        def diverges(tracking: MlflowRunRecorder) -> None:
            tracking.start_run()
            tracking.log_param("lr", 0.1)
            for step in range(2_500):  # two full batches sent, the rest still buffered
                tracking.log_metric("loss", float(step), step=step)
            raise FloatingPointError("loss is nan")

        result = materialize(
            [diverges], resources={"tracking": tracking}, instance=instance, raise_on_error=False
        )
        [recorded] = recorded_runs(instance, result.run_id)  # as the Dagster run wrote it
        run_id = recorded.run_id
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.params == {"lr": "0.1"}
    assert run.data.tags["dagster.failure"] == "FloatingPointError: loss is nan"
    history = client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == list(range(2_500))


def test_params_and_tags_beyond_one_batch_are_all_sent(
    tracking: MlflowTrackingResource, client: MlflowClient, mlflow_server: str
) -> None:
    # MLflow takes at most 100 params (and 100 tags) per batch: the buffer flushes at that.
    @asset
    def many_params(tracking: MlflowRunRecorder) -> str:
        with tracking.run() as run_id:
            tracking.log_params({f"p{i}": i for i in range(250)})
            for i in range(150):
                tracking.set_tag(f"t{i}", i)
        return run_id

    with counting_requests(mlflow_server) as counted:
        result = materialize([many_params], resources={"tracking": tracking})
    run = client.get_run(result.output_for_node("many_params"))
    assert run.data.params == {f"p{i}": str(i) for i in range(250)}
    assert {k: v for k, v in run.data.tags.items() if k.startswith("t")} == {
        f"t{i}": str(i) for i in range(150)
    }
    # 250 params in batches of 100 (3), 150 tags in batches of 100 (2); none rejected as too big.
    assert counted["POST runs/log-batch"] == 5


def test_direct_mlflow_calls_land_in_the_run_at_one_request_each(
    tracking: MlflowTrackingResource, client: MlflowClient, mlflow_server: str
) -> None:
    # Making the run MLflow's active run is free; each direct fluent call is its own request.
    @asset
    def mixes_apis(tracking: MlflowRunRecorder) -> str:
        with tracking.run() as run_id:
            tracking.log_param("via", "resource")
            mlflow_module.log_param("direct", "fluent")
        return run_id

    materialize([mixes_apis], resources={"tracking": tracking})  # the experiment is cached now
    with counting_requests(mlflow_server) as counted:
        result = materialize([mixes_apis], resources={"tracking": tracking})
    assert dict(counted) == {
        "POST runs/create": 1,
        "POST runs/log-parameter": 1,  # the direct call
        "POST runs/log-batch": 1,
        "POST runs/update": 1,
    }
    run = client.get_run(result.output_for_node("mixes_apis"))
    assert run.data.params == {"via": "resource", "direct": "fluent"}
