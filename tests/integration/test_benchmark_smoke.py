"""`make bench` code, run once on a small loop: every part works; request counts hold.

No timing is asserted (timings go to `make bench`); request counts are exact facts.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
FLOOR = {
    "POST runs/create": 1,
    "POST runs/log-batch": 1,
    "PUT mlflow-artifacts/artifacts/<path>": 1,
    "POST runs/update": 1,
}


def test_benchmark_smoke_run_measures_every_contender(mlflow_server: str, tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    command = [sys.executable, "-m", "benchmarks", "--smoke", "--tracking-uri", mlflow_server,
               "--output", str(output)]  # fmt: skip
    result = subprocess.run(
        command, cwd=ROOT, env=os.environ, capture_output=True, text=True, timeout=540
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| requests, first materialization in a process |" in result.stdout
    results = json.loads(output.read_text())

    requests = results["requests_per_materialization"]
    # Once per process: the experiment lookup (also the reachability check); no search.
    assert requests["dagma"]["first"] == {"GET experiments/get-by-name": 1, **FLOOR}
    assert requests["dagma"]["later"] == FLOOR
    # The others make one request per logged value and look things up again every time.
    assert requests["raw_client"]["later_total"] > 4
    assert requests["dagster_mlflow"]["later_total"] > 4

    loop = results["metric_loop"]
    assert loop["points"] == 50
    assert loop["requests"]["dagma"] == 3  # create, one batch, end
    assert loop["requests"]["raw_client"] >= 50

    for contender in ("nothing", "stub", "dagma", "dagster_mlflow", "raw_client"):
        assert results["materialization"]["seconds"][contender]["median"] > 0
    assert results["cold_start"]["mlflow_imported_by_dagma_definitions"] is False
    assert results["unreachable_failure_seconds"]["dagma"] > 0
