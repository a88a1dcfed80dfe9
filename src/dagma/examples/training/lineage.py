"""Which materialization a step used, read from Dagster's event log, and named in MLflow.

Steps pass no values to each other (each may run in its own pod, with no shared disk):
a step finds the upstream partition's latest materialization in the event log, takes
from it what it needs (a model version, a data version), and records it. A data step's
rows are recomputed from the package and must hash to the version its materialization
recorded, so MLflow's dataset input names exactly the rows that were used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, Failure

from dagma.examples.training import contract, data

DATA_VERSION_TAG = "dagster/data_version"  # where Dagster stores a materialization's version


@dataclass(frozen=True)
class Materialization:
    """One recorded materialization of an asset partition."""

    asset: str
    partition: str
    run_id: str
    data_version: str | None
    metadata: dict[str, Any]  # plain values


def latest(instance: DagsterInstance, asset: str, partition: str | None) -> Materialization:
    """The latest materialization of ``asset`` for ``partition`` (None: of any partition);
    a Failure if there is none."""
    partitions = None if partition is None else [partition]
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=partitions), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        which = "any partition" if partition is None else f"partition {partition!r}"
        raise Failure(
            f"{asset} has no materialization for {which}: materialize it first (the job "
            f"{contract.JOB} for that day does it all)."
        )
    event = records[0].asset_materialization
    return Materialization(
        asset=asset,
        partition=event.partition or "",
        run_id=records[0].run_id,
        data_version=event.tags.get(DATA_VERSION_TAG) if event.tags else None,
        metadata={key: value.value for key, value in event.metadata.items()},
    )


def same_rows(recorded: Materialization, frame: pd.DataFrame) -> str:
    """The frame's data version, refused unless it is the one ``recorded`` stored."""
    version = data.data_version(frame)
    if version != recorded.data_version:
        raise Failure(
            f"{recorded.asset}[{recorded.partition}] was recorded with data version "
            f"{recorded.data_version} (Dagster run {recorded.run_id}), but its rows hash to "
            f"{version} here: the data changed since. Materialize {recorded.asset} for "
            f"{recorded.partition} again, then this asset."
        )
    return version


def digest(recorded: Materialization) -> str:
    """The recorded data version (every slice asset records one)."""
    return recorded.data_version or "unversioned"


def identity(recorded: Materialization) -> dict[str, str]:
    """Tags naming the materialization: asset key, partition, data version, Dagster run."""
    return {
        "dagster.asset_key": recorded.asset,
        "dagster.partition_key": recorded.partition,
        "dagster.data_version": digest(recorded),
        "dagster.run_id": recorded.run_id,
    }


def log_dataset(recorded: Materialization, frame: pd.DataFrame, context: str) -> None:
    """``mlflow.log_input`` of ``frame`` in the active run, named for the Dagster asset.

    The dataset's name is the asset key and its digest the data version, so MLflow's
    Datasets column reads ``visit_history (<version>)``; the input's tags add the partition
    and the Dagster run that materialized it.
    """
    import mlflow
    from mlflow.data.code_dataset_source import CodeDatasetSource

    tags = identity(recorded)
    # MLflow keeps one dataset per name and digest, with the source first logged: the
    # source names what the digest pins (asset, partition, version), not a run.
    source = {key: tags[key] for key in ("dagster.asset_key", "dagster.partition_key")}
    dataset = mlflow.data.from_pandas(
        frame,
        source=CodeDatasetSource(tags={**source, "dagster.data_version": digest(recorded)}),
        targets=data.TARGET,
        name=recorded.asset,
        digest=digest(recorded),
    )
    mlflow.log_input(dataset, context=context, tags=tags)
