"""How long importing the code location takes in a fresh interpreter, against Dagster alone."""

import os
import statistics
import subprocess
import sys

# `import dagma.definitions` with tracking on: the code location as a run pod loads it.
TRACKING_ON = {"MLFLOW_USE_TRACKING": "true", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
_TIMED = (
    "import sys, time; t = time.perf_counter(); import {module}; "
    "print(time.perf_counter() - t, 'mlflow' in sys.modules)"
)


def import_seconds(module: str) -> tuple[float, bool]:
    """Seconds to import ``module`` in a fresh interpreter, and whether mlflow got imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(TRACKING_ON)
    out = subprocess.run(
        [sys.executable, "-c", _TIMED.format(module=module)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    seconds, mlflow_imported = out.stdout.split()
    return float(seconds), mlflow_imported == "True"


def measure(repeats: int) -> dict[str, object]:
    """Both imports, alternating, ``repeats`` times each; medians and their ratio."""
    samples: dict[str, list[float]] = {"dagster": [], "dagma.definitions": []}
    mlflow_imported = False
    for _ in range(repeats):
        for module in samples:
            seconds, imported = import_seconds(module)
            samples[module].append(seconds)
            mlflow_imported |= module == "dagma.definitions" and imported
    medians = {module: statistics.median(times) for module, times in samples.items()}
    return {
        "seconds": {
            m: {"median": medians[m], "min": min(t), "max": max(t)} for m, t in samples.items()
        },  # fmt: skip
        "ratio": medians["dagma.definitions"] / medians["dagster"],
        "mlflow_imported_by_dagma_definitions": mlflow_imported,
        "repeats": repeats,
    }
