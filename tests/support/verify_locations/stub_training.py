"""train_model_stub with the in-memory stub: the run succeeds and nothing reaches MLflow."""

from dagster import Definitions

from dagma import MlflowStubResource
from dagma.defs.train_model import train_model_stub

defs = Definitions(
    assets=[train_model_stub],
    resources={"tracking": MlflowStubResource()},
)
