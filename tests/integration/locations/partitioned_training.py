"""A code location for the concurrency test: one partition per process, each logging its own data.

It builds its resource the way dagma.definitions does: mlflow_resource_from_env().
"""

from dagster import (
    AssetExecutionContext,
    Definitions,
    StaticPartitionsDefinition,
    asset,
    in_process_executor,
)

from dagma import MlflowRunRecorder, mlflow_resource_from_env

PARTITIONS = [f"p{i}" for i in range(8)]


@asset(partitions_def=StaticPartitionsDefinition(PARTITIONS))
def partitioned_training(context: AssetExecutionContext, tracking: MlflowRunRecorder) -> str:
    index = PARTITIONS.index(context.partition_key)
    with tracking.run(context) as run_id:
        tracking.log_param("partition", context.partition_key)
        tracking.log_metric("index", index)
    return run_id


defs = Definitions(
    assets=[partitioned_training],
    resources={"tracking": mlflow_resource_from_env()},
    executor=in_process_executor,
)
