"""The example asset: a stand-in training step that records its run through the resource.

What it records is its contract with ``dagma verify`` and ``make demo``
(:mod:`dagma.example`).
"""

import tempfile
from pathlib import Path

from dagster import AssetExecutionContext, asset

from dagma import MlflowRunRecorder, example


@asset(name=example.ASSET, group_name=example.GROUP)
def train_model_stub(context: AssetExecutionContext, tracking: MlflowRunRecorder) -> dict[str, str]:
    """Pretend to train a model: log a param, a metric and a summary file as an artifact."""
    n_estimators, rmse = example.N_ESTIMATORS, example.RMSE
    with tracking.run(context) as run_id:
        tracking.log_param("n_estimators", n_estimators)
        tracking.log_metric("rmse", rmse)
        # A temporary directory, never the working directory: run pods may be read-only.
        with tempfile.TemporaryDirectory(prefix="dagma-") as tmp:
            summary = Path(tmp) / example.SUMMARY_FILE
            summary.write_text(f"n_estimators={n_estimators}\nrmse={rmse}\n")
            tracking.log_artifact(summary)
    return {"run_id": run_id, "status": "FINISHED", "artifact": example.SUMMARY_FILE}
