"""The code location Dagster loads: ``dagster dev -m dagma.definitions``.

The environment is read once, here, through :mod:`dagma.settings`; a bad value
stops the location from loading with a message that names the variable.
"""

from __future__ import annotations

from dagster import Definitions

from dagma.defs.models.assets import train_model_stub
from dagma.defs.models.resources import MlflowStubResource, MlflowTrackingResource
from dagma.settings import TrackingSettings, load_settings


def tracking_resource(settings: TrackingSettings) -> MlflowTrackingResource | MlflowStubResource:
    """The MLflow resource the settings ask for: the real client or the in-memory stub."""
    if not settings.tracking_enabled:
        return MlflowStubResource(experiment=settings.experiment)
    return MlflowTrackingResource(
        experiment=settings.experiment,
        tracking_uri=settings.tracking_uri,
        tracking_uri_source=settings.tracking_uri_source,
        mlflow_ui_url=settings.mlflow_ui_url,
        dagster_ui_url=settings.dagster_ui_url,
    )


defs = Definitions(
    assets=[train_model_stub],
    resources={"tracking": tracking_resource(load_settings())},
)
