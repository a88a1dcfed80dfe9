"""A code location for materializations at once: one partition per process, each its own data.

It builds its resource the way dagma.definitions does: mlflow_resource_from_env().
"""

import tempfile
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    Definitions,
    StaticPartitionsDefinition,
    asset,
    in_process_executor,
)

from dagma import MlflowRunRecorder, mlflow_resource_from_env

MAX_PROCESSES = 64
PARTITIONS = [f"n{i}" for i in range(MAX_PROCESSES)]


@asset(partitions_def=StaticPartitionsDefinition(PARTITIONS))
def numbered_training(context: AssetExecutionContext, tracking: MlflowRunRecorder) -> str:
    index = PARTITIONS.index(context.partition_key)
    with tracking.run(context) as run_id:
        tracking.log_param("index", index)
        tracking.log_metric("index_value", index)
        with tempfile.TemporaryDirectory() as scratch:
            summary = Path(scratch, "summary.txt")
            summary.write_text(f"index={index}\n")
            tracking.log_artifact(summary)
    return run_id


defs = Definitions(
    assets=[numbered_training],
    resources={"tracking": mlflow_resource_from_env()},
    executor=in_process_executor,
)
