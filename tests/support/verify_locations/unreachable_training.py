"""train_model_stub tracking to a port where no MLflow server listens: the step fails."""

from dagster import Definitions

from dagma.defs.models.assets import train_model_stub
from dagma.defs.models.resources import MlflowTrackingResource

NOTHING_LISTENS = "http://127.0.0.1:9"  # the discard port; no test starts anything there

defs = Definitions(
    assets=[train_model_stub],
    resources={"tracking": MlflowTrackingResource(tracking_uri=NOTHING_LISTENS)},
)
