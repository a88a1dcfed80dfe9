"""Build the MLflow resource your Definitions need from the environment, in one call.

    from dagma import mlflow_resource_from_env

    defs = Definitions(assets=[...], resources={"tracking": mlflow_resource_from_env()})

The environment is read through :func:`dagma.settings.load_settings` (the one
place that parses ``MLFLOW_*``): tracking on gives the official-client
:class:`MlflowTrackingResource`, off the in-memory :class:`MlflowStubResource`.
Importing this module does not import mlflow; the tracking resource does so
when a run starts.
"""

from __future__ import annotations

from collections.abc import Mapping

from dagma.settings import SettingsError, TrackingSettings, load_settings
from dagma.tracking.resource import MlflowTrackingResource
from dagma.tracking.stub import MlflowStubResource


def mlflow_resource_for(settings: TrackingSettings) -> MlflowTrackingResource | MlflowStubResource:
    """The resource ``settings`` ask for: the real MLflow client or the in-memory stub."""
    if not settings.tracking_enabled:
        return MlflowStubResource(experiment=settings.experiment)
    return MlflowTrackingResource(
        experiment=settings.experiment,
        tracking_uri=settings.tracking_uri,
        tracking_uri_source=settings.tracking_uri_source,
        mlflow_ui_url=settings.mlflow_ui_url,
        dagster_ui_url=settings.dagster_ui_url,
        http_max_retries=settings.http.max_retries,
        http_backoff_factor=settings.http.backoff_factor,
        http_timeout_seconds=settings.http.timeout_seconds,
        server_wait_seconds=settings.server_wait_seconds,
        parent_runs=settings.parent_runs,
    )


def mlflow_resource_from_env(
    env: Mapping[str, str] | None = None,
) -> MlflowTrackingResource | MlflowStubResource:
    """The resource the environment (default: ``os.environ``) asks for.

    Raises :class:`dagma.settings.SettingsError` naming the variable, its value
    and the fix when a value cannot be used. The message also goes to stderr
    first, and a Dagster command ends with it (:mod:`dagma.tracking.load_errors`).
    """
    try:
        settings = load_settings(env)
    except SettingsError as error:
        from dagma.tracking.load_errors import settings_error_at_load

        raise settings_error_at_load(error) from error
    return mlflow_resource_for(settings)
