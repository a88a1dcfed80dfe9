"""The example asset's contract: what ``train_model_stub`` records, in one place.

The asset (:mod:`dagma.defs.train_model`) logs these values; ``dagma verify``
checks them in the MLflow run it finds; ``make demo`` and the ``dagma`` help text
name them. Importing this module imports nothing else (the CLI reads it at start).
"""

from __future__ import annotations

ASSET = "train_model_stub"  # the asset's name and key
GROUP = "models"  # its asset group
N_ESTIMATORS = 10  # logged as the param n_estimators
RMSE = 0.123  # logged as the metric rmse
SUMMARY_FILE = "train_summary.txt"  # the artifact, with one "key=value" line per value

# What the MLflow run holds afterwards: params as text, as MLflow stores them.
PARAMS = {"n_estimators": str(N_ESTIMATORS)}
METRICS = {"rmse": RMSE}
SUMMARY_LINES = (f"n_estimators={N_ESTIMATORS}", f"rmse={RMSE}")


def describe() -> str:
    """The contract in a few words, for help texts: ``n_estimators=10, rmse=0.123 and ...``."""
    return f"{', '.join(SUMMARY_LINES)} and {SUMMARY_FILE}"
