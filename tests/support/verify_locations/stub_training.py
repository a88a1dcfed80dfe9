"""train_model_stub with the in-memory stub: the run succeeds and nothing reaches MLflow."""

from dagster import Definitions

from dagma.defs.models.assets import train_model_stub
from dagma.defs.models.resources import MlflowStubResource

defs = Definitions(
    assets=[train_model_stub],
    resources={"tracking": MlflowStubResource()},
)
