"""A code location of many steps, for parent and child runs under ``dagster dev``.

Jobs: ``three_steps`` (dagma.examples.steps' assets: two features, then a model that
depends on both), ``eight_parallel`` (eight independent steps the multiprocess executor
starts at once), ``waits`` (a step that records its pid and its run worker's, then waits
inside its MLflow run for the test),
``raises``, ``allocates`` (past a memory limit) and ``fails_once`` (fails unless it is
Dagster's retry). While the test's ``control/hold-start`` file exists, a run worker loading
this module waits: a run stuck starting, as a pod pulling its image is. Every step records
its run through dagma's resource, as users' assets do; the Definitions use dagma's executor
and sensor, as users' Definitions do.
"""

import os
import resource
import tempfile
import time
from pathlib import Path

from dagster import AssetExecutionContext, Definitions, asset, define_asset_job

from dagma import (
    MlflowRunRecorder,
    mlflow_parent_runs,
    mlflow_resource_from_env,
    mlflow_run_endings_sensor,
)
from dagma.examples.steps import features_a, features_b, model, record_step

# (No `from __future__ import annotations`: Dagster reads the context annotations.)
# Where the waiting step writes its pids and waits for the go-ahead (the test's directory).
CONTROL = Path(os.environ.get("DAGSTER_HOME", tempfile.gettempdir())) / "control"
WAIT_SECONDS = 240
ALL_AT_ONCE = {"execution": {"config": {"multiprocess": {"max_concurrent": 8}}}}


def _hold_start() -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while (CONTROL / "hold-start").exists() and time.monotonic() < deadline:
        time.sleep(0.2)


_hold_start()


def _part(index: int):  # noqa: ANN202
    @asset(name=f"part_{index}")
    def part(context: AssetExecutionContext, tracking: MlflowRunRecorder) -> None:
        record_step(context, tracking)

    return part


PARTS = [_part(i) for i in range(8)]


@asset
def waits(context: AssetExecutionContext, tracking: MlflowRunRecorder) -> None:
    with tracking.run(context):
        tracking.log_param("stage", "started")
        tracking.flush()
        CONTROL.mkdir(exist_ok=True)
        pids = CONTROL / f"{context.run.run_id}.pids"
        pids.write_text(f"{os.getpid()} {os.getppid()}")
        deadline = time.monotonic() + WAIT_SECONDS
        while not (CONTROL / f"{context.run.run_id}.go").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the test never said go")
            time.sleep(0.2)


@asset
def raises(context: AssetExecutionContext, tracking: MlflowRunRecorder) -> None:
    with tracking.run(context):
        tracking.log_param("stage", "started")
        raise ValueError("the features have NaNs")


@asset
def allocates(context: AssetExecutionContext, tracking: MlflowRunRecorder) -> None:
    with tracking.run(context):
        # The step's memory limit: what it uses now plus 256 MiB; then 2 GiB is asked for.
        used = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (used + 256 * 2**20, resource.RLIM_INFINITY))
        tracking.log_param("limit_bytes", used + 256 * 2**20)
        bytearray(2 * 2**30)


@asset
def fails_once(context: AssetExecutionContext, tracking: MlflowRunRecorder) -> None:
    with tracking.run(context):
        retry = context.run.tags.get("dagster/retry_number", "0")
        tracking.log_param("retry_number", retry)
        if retry == "0":
            raise RuntimeError("first try fails")


tracking = mlflow_resource_from_env()
defs = Definitions(
    assets=[features_a, features_b, model, *PARTS, waits, raises, allocates, fails_once],
    jobs=[
        define_asset_job("three_steps", [features_a, features_b, model]),
        define_asset_job("eight_parallel", PARTS, config=ALL_AT_ONCE),
        define_asset_job("waits_job", [waits]),
        define_asset_job("raises_job", [raises]),
        define_asset_job("allocates_job", [allocates]),
        define_asset_job("fails_once_job", [fails_once], tags={"dagster/max_retries": "1"}),
    ],
    resources={"tracking": tracking},
    executor=mlflow_parent_runs(tracking),
    sensors=[mlflow_run_endings_sensor(tracking, minimum_interval_seconds=5)],
)
