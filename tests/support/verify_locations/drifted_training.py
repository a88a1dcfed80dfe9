"""A train_model_stub that records other values than the acceptance check expects."""

import tempfile
from pathlib import Path

from dagster import AssetExecutionContext, Definitions, asset

from dagma import MlflowRunRecorder, MlflowTrackingResource
from dagma.settings import load_settings


@asset(name="train_model_stub")
def drifted_training(context: AssetExecutionContext, tracking: MlflowRunRecorder) -> None:
    with tracking.run(context):
        tracking.log_param("n_estimators", 11)
        tracking.log_metric("rmse", 0.5)
        with tempfile.TemporaryDirectory() as tmp:
            summary = Path(tmp) / "train_summary.txt"
            summary.write_text("n_estimators=11\nrmse=0.5\n")
            tracking.log_artifact(summary)


settings = load_settings()
defs = Definitions(
    assets=[drifted_training],
    resources={
        "tracking": MlflowTrackingResource(
            tracking_uri=settings.tracking_uri, experiment=settings.experiment
        )
    },
)
