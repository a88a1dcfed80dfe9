"""MLflow mirrors Dagster: one parent run per Dagster run, a nested run per step, every ending.

One ``dagster dev`` (webserver, daemon, code server) serves tests/integration/locations/steps.py
with dagma's executor (multiprocess, Dagster's default) and sensor, in front of a real MLflow
server through a recording proxy, so every request from every process (run workers, step
subprocesses, the daemon's sensor) is counted. Runs are launched through dagster-graphql's
client, as the UI does; faults are real signals to real processes. Nothing is mocked. The
tests search MLflow to check what is there; dagma itself never does (0 ``runs/search``).
"""

from __future__ import annotations

import os
import signal
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster_graphql import DagsterGraphQLClient
from mlflow import MlflowClient
from mlflow.entities import Run
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Locator, expect
from support import mlflow_servers, soak
from support.browser import loopback_chromium, save_screenshot
from support.dagster_local import command_env, dagster_dev, location_statuses, write_workspace
from support.ui_pages import open_mlflow_page

from benchmarks.http_count import RecordingProxy, recording_proxy
from dagma.dev import local_mlflow
from dagma.tracking.dagster_records import PARENT_RUN_TAG, PARENT_URL_TAG
from dagma.tracking.parent_runs import RETRIED_BY_TAG, RETRY_OF_TAG

LOCATION = Path(__file__).parent / "locations" / "steps.py"
EXPERIMENT = f"steps-{uuid.uuid4().hex[:8]}"
ENDED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
UI_TIMEOUT_MS = 60_000
ENDING_BOUND_SECONDS = 60  # the bound: every MLflow run ended this soon after Dagster
TRIES = soak.count(2, 5)  # of each fault whose ending the sensor (or a cancel) decides
# Long enough for any run worker of these tests to start on 2 busy cores (a few seconds).
START_TIMEOUT_SECONDS = 40
INSTANCE = f"""
telemetry: {{enabled: false}}
nux: {{enabled: false}}
run_retries: {{enabled: true}}
run_monitoring: {{enabled: true, start_timeout_seconds: {START_TIMEOUT_SECONDS},
                 poll_interval_seconds: 2}}
"""
ENDINGS: dict[str, list[float]] = {}  # seconds from the Dagster run's end to MLflow's, by fault


@dataclass
class Stack:
    """dagster dev serving the steps location, the MLflow server behind the recording proxy."""

    dagster: DagsterGraphQLClient
    instance: DagsterInstance
    home: Path
    proxy: RecordingProxy
    mlflow: MlflowClient
    server: local_mlflow.LocalMlflowServer
    port: int

    def restart_server(self) -> None:
        data_dir = self.server.data_dir
        assert data_dir is not None
        self.server = mlflow_servers.launch(data_dir, [], port=self.port)
        mlflow_servers.wait_healthy(self.server)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    port = local_mlflow.free_port()
    server = mlflow_servers.launch(tmp_path_factory.mktemp("mlflow"), [], port=port)
    mlflow_servers.wait_healthy(server)
    home = tmp_path_factory.mktemp("dagster-home")
    (home / "dagster.yaml").write_text(INSTANCE)
    workspace = write_workspace(home / "workspace.yaml", {}, {"steps": LOCATION})
    stack = None
    try:
        with recording_proxy(server.url) as proxy:
            env = command_env(
                home, MLFLOW_USE_TRACKING="true", MLFLOW_TRACKING_URI=proxy.url,
                MLFLOW_EXPERIMENT=EXPERIMENT, MLFLOW_DISABLE_TELEMETRY="true",
                NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
            )  # fmt: skip
            with (
                dagster_dev(workspace, env, expected=1) as url,
                DagsterInstance.from_config(str(home)) as instance,
            ):
                assert location_statuses(url) == {"steps": "LOADED"}, location_statuses(url)
                dagster = DagsterGraphQLClient("127.0.0.1", port_number=int(url.rsplit(":")[-1]))
                mlflow = MlflowClient(server.url)
                stack = Stack(dagster, instance, home, proxy, mlflow, server, port)
                yield stack
    finally:
        (stack.server if stack is not None else server).stop()
    print_endings()


def print_endings() -> None:
    for fault, seconds in ENDINGS.items():
        print(
            f"{fault}: last MLflow run ended {statistics.median(seconds):.1f} s (median), "
            f"{max(seconds):.1f} s (max) after Dagster ended the run, {len(seconds)} tries"
        )


def launch(stack: Stack, job: str, tags: dict[str, str] | None = None) -> str:
    return stack.dagster.submit_job_execution(job, repository_location_name="steps", tags=tags)


def wait_for_dagster(stack: Stack, run_id: str, timeout: float = 300) -> DagsterRunStatus:
    deadline = time.monotonic() + timeout
    while (status := stack.dagster.get_run_status(run_id)) not in ENDED:
        assert time.monotonic() < deadline, f"Dagster run {run_id} still {status}"
        time.sleep(0.5)
    return status


def mlflow_runs(stack: Stack, dagster_run_id: str) -> list[Run]:
    experiment = stack.mlflow.get_experiment_by_name(EXPERIMENT)
    return stack.mlflow.search_runs(
        [experiment.experiment_id], f"tags.`dagster.run_id` = '{dagster_run_id}'"
    )


def settled(stack: Stack, dagster_run_id: str, fault: str) -> list[Run]:
    """The Dagster run's MLflow runs once none is RUNNING, within the issue's bound."""
    ended_at = time.monotonic()
    while True:
        runs = mlflow_runs(stack, dagster_run_id)
        if runs and all(run.info.status != "RUNNING" for run in runs):
            ENDINGS.setdefault(fault, []).append(time.monotonic() - ended_at)
            return runs
        waited = time.monotonic() - ended_at
        assert waited < ENDING_BOUND_SECONDS, (
            f"{fault}: still RUNNING {waited:.0f} s after Dagster ended the run: "
            f"{[(r.info.run_name, r.info.status) for r in runs]}"
        )
        time.sleep(0.5)


def parent_and_children(runs: list[Run]) -> tuple[Run, list[Run]]:
    [parent] = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    children = [run for run in runs if run is not parent]
    assert {run.data.tags["mlflow.parentRunId"] for run in children} == {parent.info.run_id}
    return parent, children


def step_pids(stack: Stack, run_id: str) -> tuple[int, int]:
    """The waiting step's pid and its run worker's, once it waits inside its MLflow run."""
    pids = stack.home / "control" / f"{run_id}.pids"
    deadline = time.monotonic() + 180
    while not pids.exists() or not pids.read_text():
        assert time.monotonic() < deadline, "the waiting step never started"
        time.sleep(0.3)
    step, worker = pids.read_text().split()
    return int(step), int(worker)


def test_three_steps_give_one_parent_and_three_nested_children_at_the_request_floor(
    stack: Stack,
) -> None:
    wait_for_dagster(stack, launch(stack, "three_steps"))  # the experiment exists from here on
    before = Counter(stack.proxy.counts)
    run_id = launch(stack, "three_steps")
    assert wait_for_dagster(stack, run_id) == DagsterRunStatus.SUCCESS
    parent, children = parent_and_children(settled(stack, run_id, "success"))
    time.sleep(12)  # two sensor evaluations after the run: they must ask MLflow nothing
    requests = stack.proxy.counts - before
    print(f"requests for a 3-step run (multiprocess): {dict(requests)}")

    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == "three_steps"
    assert parent.data.tags["dagster.run_id"] == run_id
    for key in ("features_a", "features_b", "model"):
        assert f"`{key}`" in parent.data.tags["mlflow.note.content"]
    assert sorted(r.data.tags["dagster.step_key"] for r in children) == [
        "features_a", "features_b", "model",
    ]  # fmt: skip
    assert all(r.info.status == "FINISHED" and r.data.params["asset"] for r in children)
    dagster_tags = stack.instance.get_run_by_id(run_id).tags  # the run links to its parent
    assert dagster_tags[PARENT_RUN_TAG] == parent.info.run_id
    assert dagster_tags[PARENT_URL_TAG].endswith(f"/runs/{parent.info.run_id}")

    assert requests["POST runs/search"] == 0
    # Parent: the experiment's lookup, create, end. Each step: create, one batch, upload, end.
    assert sum(requests.values()) <= 3 + 4 * 3, dict(requests)
    assert requests["POST runs/create"] == 4


def test_mlflow_ui_shows_the_steps_nested_under_the_parent(stack: Stack) -> None:
    """In Chromium: the experiment's runs, filtered to one Dagster run, show one parent row
    whose expander reveals the three steps' runs; the parent's page shows its note."""
    run_id = launch(stack, "three_steps")
    assert wait_for_dagster(stack, run_id) == DagsterRunStatus.SUCCESS
    parent, children = parent_and_children(settled(stack, run_id, "success"))
    runs_url = f"{stack.server.url}/#/experiments/{parent.info.experiment_id}/runs"
    only_this_run = quote(f"tags.`dagster.run_id` = '{run_id}'")
    with loopback_chromium(UI_TIMEOUT_MS) as context:
        page = context.new_page()
        page.set_viewport_size({"width": 1400, "height": 800})

        def row(name: str) -> Locator:  # the table's row whose run-name link is ``name``
            link = page.get_by_role("link", name=name, exact=True)
            return page.get_by_role("row").filter(has=link)

        open_mlflow_page(
            page, f"{runs_url}?searchFilter={only_this_run}", row(parent.info.run_name)
        )
        with suppress(PlaywrightError):  # MLflow's assistant panel, when it opens itself
            page.get_by_role("button", name="Close").click(timeout=5000)
        expect(row(parent.info.run_name)).to_have_count(1)
        for child in children:  # collapsed: only the parent is listed
            expect(row(child.info.run_name)).to_have_count(0)
        # The parent row's expander.
        row(parent.info.run_name).locator(
            'button[data-component-id*="runnamecellrenderer"]'
        ).click()
        for child in children:
            expect(row(child.info.run_name)).to_have_count(1)
        save_screenshot(page, "mlflow-nested-runs", docs=True)
        note = page.get_by_text(f"Dagster run {run_id}", exact=False).first
        open_mlflow_page(page, f"{runs_url}/{parent.info.run_id}", note)
        for child in children:  # the note lists the steps by their Dagster step keys
            step = child.data.tags["dagster.step_key"]
            expect(page.get_by_text(step, exact=True).first).to_be_visible()
        save_screenshot(page, "mlflow-parent-run", docs=True)


def test_eight_parallel_steps_share_exactly_one_parent(stack: Stack) -> None:
    run_id = launch(stack, "eight_parallel")
    assert wait_for_dagster(stack, run_id) == DagsterRunStatus.SUCCESS
    parent, children = parent_and_children(settled(stack, run_id, "success"))
    assert len(children) == 8
    starts = sorted(run.info.start_time for run in children)
    print(f"8 parallel steps started within {(starts[-1] - starts[0]) / 1000:.1f} s")
    assert parent.info.status == "FINISHED"


@pytest.mark.parametrize(
    ("job", "fault", "error"),
    [("raises_job", "asset raises", "ValueError: the features have NaNs"),
     ("allocates_job", "memory limit", "MemoryError")],
    ids=["raises", "memory-limit"],
)  # fmt: skip
def test_a_failing_asset_fails_its_run_and_the_parent_with_the_reason(
    stack: Stack, job: str, fault: str, error: str
) -> None:
    run_id = launch(stack, job)
    assert wait_for_dagster(stack, run_id) == DagsterRunStatus.FAILURE
    parent, [child] = parent_and_children(settled(stack, run_id, fault))
    assert child.info.status == "FAILED"
    assert error in child.data.tags["dagster.failure"]
    assert parent.info.status == "FAILED"
    # The parent says which step failed, and its note still lists the steps.
    step = child.data.tags["dagster.step_key"]
    assert f"step(s) {step} failed" in parent.data.tags["dagster.failure"]
    assert f"`{step}`" in parent.data.tags["mlflow.note.content"].split("Failed in Dagster")[0]


@pytest.mark.parametrize("attempt", range(TRIES))
def test_a_sigkilled_step_process_is_ended_failed_by_the_sensor(stack: Stack, attempt: int) -> None:
    run_id = launch(stack, "waits_job")
    step, _ = step_pids(stack, run_id)
    os.kill(step, signal.SIGKILL)
    assert wait_for_dagster(stack, run_id) == DagsterRunStatus.FAILURE
    parent, [child] = parent_and_children(settled(stack, run_id, "step SIGKILL"))
    assert child.info.status == "FAILED"
    reason = child.data.tags["dagma.end_reason"]
    assert "ended by dagma" in reason
    assert "ChildProcessCrashException" in reason, reason  # Dagster's error for the step
    assert "dagster.failure" in child.data.tags
    assert parent.info.status == "FAILED"


@pytest.mark.parametrize("attempt", range(TRIES))
def test_a_sigkilled_run_worker_is_ended_failed_by_the_sensor(stack: Stack, attempt: int) -> None:
    run_id = launch(stack, "waits_job")
    step, worker = step_pids(stack, run_id)
    os.kill(worker, signal.SIGKILL)  # the run worker, then its orphaned step: a lost machine
    with suppress(ProcessLookupError):
        os.kill(step, signal.SIGKILL)
    assert wait_for_dagster(stack, run_id) == DagsterRunStatus.FAILURE
    parent, [child] = parent_and_children(settled(stack, run_id, "run worker SIGKILL"))
    assert (parent.info.status, child.info.status) == ("FAILED", "FAILED")
    assert "Dagster run ended FAILURE" in parent.data.tags["dagster.failure"]


@pytest.mark.parametrize("attempt", range(TRIES))
def test_a_cancel_mid_step_kills_the_child_and_the_parent(stack: Stack, attempt: int) -> None:
    run_id = launch(stack, "waits_job")
    step_pids(stack, run_id)
    stack.dagster.terminate_run(run_id)
    assert wait_for_dagster(stack, run_id) == DagsterRunStatus.CANCELED
    parent, [child] = parent_and_children(settled(stack, run_id, "cancel"))
    assert (parent.info.status, child.info.status) == ("KILLED", "KILLED")


def test_a_retried_run_gets_its_own_parent_linked_both_ways(stack: Stack) -> None:
    first = launch(stack, "fails_once_job")
    assert wait_for_dagster(stack, first) == DagsterRunStatus.FAILURE
    deadline = time.monotonic() + 180
    retried = RunsFilter(tags={"dagster/parent_run_id": first})
    while not (retries := stack.instance.get_runs(retried)):
        assert time.monotonic() < deadline, "the daemon never retried the run"
        time.sleep(1)
    second = retries[0].run_id
    assert wait_for_dagster(stack, second) == DagsterRunStatus.SUCCESS
    old_parent, [old_child] = parent_and_children(settled(stack, first, "retried: first"))
    new_parent, [new_child] = parent_and_children(settled(stack, second, "retried: second"))

    assert old_parent.info.run_id != new_parent.info.run_id
    assert (old_parent.info.status, new_parent.info.status) == ("FAILED", "FINISHED")
    assert new_parent.data.tags[RETRY_OF_TAG] == old_parent.info.run_id
    assert old_parent.data.tags[RETRIED_BY_TAG] == new_parent.info.run_id
    assert new_parent.data.tags["dagster.parent_run_id"] == first
    assert new_parent.data.tags["dagster.root_run_id"] == first
    assert (old_child.data.params["retry_number"], new_child.data.params["retry_number"]) == (
        "0", "1",
    )  # fmt: skip


def test_runs_left_while_the_server_is_down_are_ended_once_it_is_back(stack: Stack) -> None:
    run_id = launch(stack, "waits_job")
    step, _ = step_pids(stack, run_id)
    stack.server.stop()  # down: nothing can reach it, the sensor included
    os.kill(step, signal.SIGKILL)
    assert wait_for_dagster(stack, run_id) == DagsterRunStatus.FAILURE
    time.sleep(120)
    stack.restart_server()
    searches = stack.proxy.counts["POST runs/search"]
    runs = settled(stack, run_id, "server down 2 min (timed from its return)")
    parent, [child] = parent_and_children(runs)
    assert (parent.info.status, child.info.status) == ("FAILED", "FAILED")
    assert stack.proxy.counts["POST runs/search"] == searches == 0


def test_a_run_failed_at_its_start_timeout_leaves_nothing_in_mlflow(stack: Stack) -> None:
    """The run worker held while it loads the code (as a pod stuck pulling its image):
    Dagster's run monitoring fails the run after its start timeout. The parent is created
    only by a run worker that runs the job, so MLflow gets no run for it, then or later:
    released, the worker finds the run ended and Dagster does not run it."""
    hold = stack.home / "control" / "hold-start"
    hold.parent.mkdir(exist_ok=True)
    hold.touch()
    before = Counter(stack.proxy.counts)
    try:
        run_id = launch(stack, "three_steps")
        waited = START_TIMEOUT_SECONDS + 60
        assert wait_for_dagster(stack, run_id, timeout=waited) == DagsterRunStatus.FAILURE
    finally:
        hold.unlink()

    def messages() -> list[str]:
        return [entry.message for entry in stack.instance.all_logs(run_id)]

    assert any("seconds to start" in message for message in messages()), messages()
    ignored = "Ignoring a run worker that started after the run had already finished."
    deadline = time.monotonic() + ENDING_BOUND_SECONDS
    while ignored not in messages():  # the released worker's last word
        assert time.monotonic() < deadline, messages()
        time.sleep(0.5)
    time.sleep(12)  # two sensor evaluations after the run ended
    assert mlflow_runs(stack, run_id) == []
    assert (stack.proxy.counts - before)["POST runs/create"] == 0
