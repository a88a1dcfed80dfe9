"""Requests per Dagster run of three steps, by endpoint: dagma's parent and nested runs against
dagster-mlflow grouping the steps into one run, in process and with the multiprocess executor.

Each run is ``dagster job execute`` of :mod:`benchmarks.pipeline` in a fresh process, against
the benchmark's real server through a recording proxy (every process's requests are counted:
the run worker's and each step subprocess's). The first run of each pair creates the
experiment and is not counted. ``k8s_job_executor`` needs the cluster and is not measured here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

from benchmarks.http_count import recording_proxy

PIPELINE = Path(__file__).parent / "pipeline.py"
EXECUTORS = {"in_process": {"in_process": {}}, "multiprocess": {"multiprocess": {}}}
CONTENDERS = ("dagma", "dagster_mlflow")
STEPS = 3


def _execute(job: str, executor: str, env: dict[str, str], home: Path) -> float:
    config = home / f"{executor}.yaml"
    config.write_text(yaml.safe_dump({"execution": {"config": EXECUTORS[executor]}}))
    command = [sys.executable, "-m", "dagster", "job", "execute", "-f", str(PIPELINE),
               "-j", job, "-c", str(config)]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=home, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{job} ({executor}) failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def measure(tracking_uri: str, repeats: int) -> dict:
    """Requests by endpoint per Dagster run, and seconds, for each contender and executor."""
    results: dict = {}
    with recording_proxy(tracking_uri) as proxy, tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
        for executor in EXECUTORS:
            for contender in CONTENDERS:
                env = {
                    **os.environ, "DAGSTER_HOME": str(home), "MLFLOW_USE_TRACKING": "true",
                    "MLFLOW_TRACKING_URI": proxy.url, "NO_PROXY": "127.0.0.1",
                    "MLFLOW_EXPERIMENT": f"parent-runs-{contender}",
                }  # fmt: skip
                _execute(contender, executor, env, home)  # the experiment exists from here on
                seconds, counts = [], Counter()
                for _ in range(repeats):
                    before = Counter(proxy.counts)
                    seconds.append(_execute(contender, executor, env, home))
                    counts = proxy.counts - before
                results.setdefault(executor, {})[contender] = {
                    "requests": dict(sorted(counts.items())),
                    "total": sum(counts.values()),
                    "per_step": sum(counts.values()) / STEPS,
                    "seconds_median": sorted(seconds)[len(seconds) // 2],
                }
    return results


def table(results: dict) -> list[str]:
    """Markdown rows: requests per Dagster run by endpoint, contenders side by side."""
    columns = [(e, c) for e in EXECUTORS for c in CONTENDERS]
    endpoints = sorted({k for e, c in columns for k in results[e][c]["requests"]})
    rows = [
        "| requests per Dagster run of 3 steps | "
        + " | ".join(f"{c.replace('_', '-')}, {e.replace('_', '-')}" for e, c in columns)
        + " |",
        "|---|" + "---|" * len(columns),
    ]
    rows += [
        f"| `{k}` | " + " | ".join(str(results[e][c]["requests"].get(k, 0)) for e, c in columns)
        + " |"
        for k in endpoints
    ]  # fmt: skip
    rows.append("| **total** (per step) | " + " | ".join(
        f"**{results[e][c]['total']}** ({results[e][c]['per_step']:.1f})" for e, c in columns
    ) + " |")  # fmt: skip
    rows.append("| wall time per run, median | " + " | ".join(
        f"{results[e][c]['seconds_median']:.1f} s" for e, c in columns
    ) + " |")  # fmt: skip
    return rows
