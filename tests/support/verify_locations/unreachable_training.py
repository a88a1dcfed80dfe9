"""train_model_stub tracking to a port where no MLflow server listens: the step fails."""

from dagster import Definitions

from dagma import MlflowTrackingResource
from dagma.defs.train_model import train_model_stub

NOTHING_LISTENS = "http://127.0.0.1:9"  # the discard port; no test starts anything there

defs = Definitions(
    assets=[train_model_stub],
    resources={"tracking": MlflowTrackingResource(tracking_uri=NOTHING_LISTENS)},
)
