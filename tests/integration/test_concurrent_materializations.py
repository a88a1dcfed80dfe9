"""Eight materializations at once, in separate processes, never lose or mix a run."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from mlflow import MlflowClient

LOCATIONS = Path(__file__).parent / "locations"
PROCESSES = 8


def test_eight_processes_at_once_get_eight_runs_each_with_only_its_own_data(
    mlflow_server: str, client: MlflowClient, tmp_path: Path
) -> None:
    experiment = f"concurrency-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "MLFLOW_USE_TRACKING": "true",
        "MLFLOW_TRACKING_URI": mlflow_server,
        "MLFLOW_EXPERIMENT": experiment,
        "PYTHONPATH": str(LOCATIONS),
    }
    processes = []
    for i in range(PROCESSES):
        home = tmp_path / f"dagster-home-{i}"
        home.mkdir()
        command = [
            sys.executable, "-m", "dagster", "asset", "materialize",
            "-m", "partitioned_training", "--select", "partitioned_training",
            "--partition", f"p{i}",
        ]  # fmt: skip
        processes.append(
            subprocess.Popen(
                command,
                env={**env, "DAGSTER_HOME": str(home)},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )  # fmt: skip
        )
    for process in processes:
        output, _ = process.communicate(timeout=400)
        assert process.returncode == 0, output[-3000:]

    # Reading back is allowed to search; the resource itself never does.
    [found] = [e for e in client.search_experiments() if e.name == experiment]
    runs = client.search_runs([found.experiment_id], max_results=100)
    assert len(runs) == PROCESSES
    by_partition = {run.data.tags["dagster.partition_key"]: run for run in runs}
    assert sorted(by_partition) == [f"p{i}" for i in range(PROCESSES)]
    for partition, run in by_partition.items():
        index = int(partition[1:])
        assert run.info.status == "FINISHED"
        assert run.data.params == {"partition": partition}
        assert run.data.metrics == {"index": float(index)}
    assert len({run.data.tags["dagster.run_id"] for run in runs}) == PROCESSES
