"""A code location whose asset stops inside its MLflow run until the test lets it go on.

The asset starts its run, logs a param (flushed at once, so the test sees the run on the
server), then waits for the file ``resume`` in the instance's directory (DAGSTER_HOME) before
logging a metric and ending the run. The test kills the server in between.
"""

import time
from pathlib import Path

from dagster import AssetExecutionContext, Definitions, asset, in_process_executor

from dagma import MlflowRunRecorder, mlflow_resource_from_env

WAIT_LIMIT_SECONDS = 300


@asset
def paused_training(context: AssetExecutionContext, tracking: MlflowRunRecorder) -> str:
    resume = Path(context.instance.root_directory) / "resume"
    with tracking.run(context) as run_id:
        tracking.log_param("stage", "started")
        tracking.flush(run_id)
        deadline = time.monotonic() + WAIT_LIMIT_SECONDS
        while not resume.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        tracking.log_metric("after_pause", 1.0)
    return run_id


defs = Definitions(
    assets=[paused_training],
    resources={"tracking": mlflow_resource_from_env()},
    executor=in_process_executor,
)
