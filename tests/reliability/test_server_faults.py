"""The MLflow server SIGKILLed and restarted on the same volume, as the chart runs it.

One release per module: charts/mlflow rendered with its defaults (SQLite and artifacts on the
volume; a free port), its migration Job and server run as local processes from the manifests
(support.mlflow_servers). Materializations are real ``dagster asset materialize`` processes of the
dagma code location, as a run pod would start them with the MLflow client settings charts/dagma
gives run pods, or as `make demo`/`dagster dev` start them with no MLFLOW_HTTP_* at all (dagma's
own bounded defaults). The server is killed with SIGKILL (no shutdown of any kind) and started
again from the same container spec on the same volume. `make soak` repeats the kill between
materializations for more cycles (support.soak).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, build_sensor_context
from mlflow import MlflowClient
from support import container_spec, mlflow_servers, soak
from support.helm import render
from support.umbrella import render_umbrella

from dagma import mlflow_resource_from_env, mlflow_run_endings_sensor
from dagma.dev.local_mlflow import free_port
from dagma.settings import SERVER_WAIT_VARIABLE, HttpRequestSettings, load_settings
from dagma.tracking.run_endings import END_REASON_TAG

LOCATIONS = Path(__file__).parent / "locations"
EXPERIMENT = f"faults-{uuid.uuid4().hex[:8]}"
BEFORE_KILL = 3  # materializations recorded before the first kill
KILL_CYCLES = soak.count(1, 5)  # SIGKILL and restart between materializations, this many times
# The goal for a materialization whose server dies under it: a clear failure, not a hang.
# With MLflow's default client retries it took 495 s; dagma and charts/dagma bound them.
FAILURE_BOUND_SECONDS = 300
CLIENT_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mlflow_servers.ServerPod]:
    rendered = render("mlflow", {"server": {"port": free_port()}})
    with mlflow_servers.serving(rendered, tmp_path_factory.mktemp("mlflow-faults")) as started:
        yield started


def _client(pod: mlflow_servers.ServerPod, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    for key, value in CLIENT_ENV.items():  # MLflow's client reads them at each request
        monkeypatch.setenv(key, value)
    return MlflowClient(pod.url)


def _materialize_command(module: str, asset: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dagster",
        "asset",
        "materialize",
        "-m",
        module,
        "--select",
        asset,
    ]


def _run_pod_http_settings() -> dict[str, str]:
    """The MLflow client's HTTP settings from charts/dagma's ConfigMap, as run pods get them."""
    data = render_umbrella().one("ConfigMap", "dagma-mlflow-env")["data"]
    return {key: value for key, value in data.items() if key.startswith("MLFLOW_HTTP_REQUEST_")}


def _env(pod: mlflow_servers.ServerPod, home: Path, chart_http: bool = True) -> dict[str, str]:
    """A materialization's environment: a run pod's, or with no MLFLOW_HTTP_* (``chart_http``)."""
    home.mkdir(parents=True, exist_ok=True)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_")}
    return {
        **inherited,
        **CLIENT_ENV,
        **(_run_pod_http_settings() if chart_http else {}),
        "MLFLOW_USE_TRACKING": "true",
        "MLFLOW_TRACKING_URI": pod.url,
        "MLFLOW_EXPERIMENT": EXPERIMENT,
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(LOCATIONS), os.environ.get("PYTHONPATH", "")]),
    }


def _materialize(pod: mlflow_servers.ServerPod, home: Path) -> None:
    command = _materialize_command("dagma.definitions", "train_model_stub")
    result = subprocess.run(
        command, env=_env(pod, home), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def snapshot(client: MlflowClient) -> dict[str, Any]:
    """Every run of the experiment: status, params, metrics and its artifacts' bytes."""
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return {}
    runs = {}
    for run in client.search_runs([experiment.experiment_id], max_results=1000):
        artifacts = {}
        for info in client.list_artifacts(run.info.run_id):
            if not info.is_dir:
                local = client.download_artifacts(run.info.run_id, info.path)
                artifacts[info.path] = Path(local).read_bytes()
        runs[run.info.run_id] = {
            "status": run.info.status,
            "params": run.data.params,
            "metrics": run.data.metrics,
            "artifacts": artifacts,
        }
    return runs


def _counts(runs: dict[str, Any]) -> dict[str, int]:
    return {
        "runs": len(runs),
        "params": sum(len(r["params"]) for r in runs.values()),
        "metrics": sum(len(r["metrics"]) for r in runs.values()),
        "artifacts": sum(len(r["artifacts"]) for r in runs.values()),
    }


def kill_server(pod: mlflow_servers.ServerPod) -> None:
    """SIGKILL the server and every worker: no shutdown, no flush, like a node losing power."""
    for pid in container_spec.process_tree(pod.process.pid):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    pod.process.wait(timeout=30)


def restart_server(pod: mlflow_servers.ServerPod) -> None:
    """The kubelet's restart: the same container spec, the same volume."""
    with pod.log_path.open("a") as log:
        pod.process = pod.server.popen(log)
    deadline = time.monotonic() + 300
    while not mlflow_servers.is_healthy(pod.url):
        assert pod.process.poll() is None, f"restart failed:\n{pod.log()[-3000:]}"
        assert time.monotonic() < deadline, "the restarted server never became healthy"
        time.sleep(0.5)


def test_sigkills_between_materializations_lose_nothing(
    pod: mlflow_servers.ServerPod, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _client(pod, monkeypatch)
    lost_in_all = dict.fromkeys(("runs", "params", "metrics", "artifacts"), 0)
    for cycle in range(KILL_CYCLES):
        for i in range(BEFORE_KILL if cycle == 0 else 1):
            _materialize(pod, tmp_path / f"home-{cycle}-{i}")
        before = snapshot(client)
        # Each materialization: its Dagster run's parent run and the asset's run nested in it.
        assert _counts(before)["runs"] == 2 * (BEFORE_KILL + cycle)
        assert all(run["status"] == "FINISHED" for run in before.values())
        assert sum(bool(run["artifacts"]) for run in before.values()) == BEFORE_KILL + cycle

        kill_server(pod)
        restart_server(pod)
        after = snapshot(client)
        lost = {k: _counts(before)[k] - _counts(after)[k] for k in _counts(before)}
        lost_in_all = {k: lost_in_all[k] + lost[k] for k in lost}
        print(f"SIGKILL {cycle + 1} between materializations: {_counts(before)}, lost {lost}")
        assert after == before

    _materialize(pod, tmp_path / "home-after")  # the restarted server takes new runs
    assert _counts(snapshot(client))["runs"] == 2 * (BEFORE_KILL + KILL_CYCLES)
    print(f"{KILL_CYCLES} SIGKILL cycles: lost {lost_in_all}")


def test_dagmas_own_http_bounds_are_the_charts() -> None:
    # Outside the chart (make demo, dagster dev) dagma applies what charts/dagma gives run pods.
    assert _run_pod_http_settings() == HttpRequestSettings().as_env()
    # Except the wait for a server not answering yet, on purpose: 60 s in the chart, where a run
    # may start while the MLflow pod restarts (11-16 s); 0 outside it, where the server is the
    # user's own and a wrong URI under `make demo`/`dagster dev` should fail in seconds.
    data = render_umbrella().one("ConfigMap", "dagma-mlflow-env")["data"]
    assert data[SERVER_WAIT_VARIABLE] == "60"
    assert load_settings({}).server_wait_seconds == 0


def test_a_sigkill_inside_a_materialization_fails_it_and_the_sensor_ends_its_run_once_back(
    pod: mlflow_servers.ServerPod, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _client(pod, monkeypatch)
    before = snapshot(client)
    home = tmp_path / "home-paused"  # the Dagster instance both materializations share
    command = _materialize_command("paused_training", "paused_training")
    # As `make demo` or `dagster dev` run it: no MLFLOW_HTTP_* set, dagma's defaults apply.
    env = _env(pod, home, chart_http=False)
    assert not [k for k in env if k.startswith("MLFLOW_HTTP_")]
    with (tmp_path / "materialize.log").open("w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        started = []
        while not started:
            assert process.poll() is None, (tmp_path / "materialize.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the paused run never reached the server"
            time.sleep(0.5)
            started = [r for r in snapshot(client) if r not in before]
        [interrupted] = started

        # The server stays dead until the Dagster run has failed: its FAILED mark is lost.
        kill_server(pod)
        killed_at = time.monotonic()
        (home / "resume").touch()
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=FAILURE_BOUND_SECONDS)
        failed_after = time.monotonic() - killed_at
        assert process.poll() is not None, f"still running {failed_after:.0f} s after the kill"
    finally:
        if process.poll() is None:
            process.kill()
    output = (tmp_path / "materialize.log").read_text()
    print(f"SIGKILL inside a materialization: it failed {failed_after:.1f} s after the kill")
    assert process.returncode != 0, output[-3000:]
    assert "127.0.0.1" in output, "the error does not say which server failed"

    restart_server(pod)
    after = snapshot(client)
    assert {k: v for k, v in after.items() if k in before} == before, "earlier runs changed"
    assert after[interrupted]["status"] == "RUNNING"  # what the dead server was left with

    # Another deployment's run in progress: never recorded by this instance's Dagster runs.
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    foreign = client.create_run(experiment_id, tags={"dagster.run_id": str(uuid.uuid4())})
    # The daemon's sensor, evaluated on this instance as the daemon would (no daemon runs here).
    env = _env(pod, home, chart_http=False)
    endings = mlflow_run_endings_sensor(mlflow_resource_from_env(env))
    with DagsterInstance.from_config(str(home)) as instance:
        context = build_sensor_context(instance=instance)
        endings(context)
        ended = client.get_run(interrupted)
        endings(build_sensor_context(instance=instance))  # again, from scratch: no change
        assert client.get_run(interrupted).to_dictionary() == ended.to_dictionary()
        [dagster_run] = instance.get_runs(limit=1)
    reason = ended.data.tags.get(END_REASON_TAG, "")
    statuses = [r["status"] for r in snapshot(client).values()]
    print(
        f"the interrupted run is {ended.info.status} after the sensor's evaluation "
        f"({reason!r}); RUNNING: {statuses.count('RUNNING')} (the foreign run)"
    )
    assert ended.info.status == "FAILED"
    assert f"Dagster run ended {dagster_run.status.value}" in reason
    assert "dagster.failure" in ended.data.tags
    assert client.get_run(foreign.info.run_id).info.status == "RUNNING"  # left alone
    assert statuses.count("RUNNING") == 1
