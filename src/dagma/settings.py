"""The one place that turns the environment into typed, validated settings.

Nothing else in dagma reads ``MLFLOW_*`` (or any other) variables: the code
location calls :func:`load_settings` once and passes the result on. Bad values
fail here, at load time, with a message that names the variable and the fix,
instead of a stack trace in the middle of a run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
DEFAULT_TRACKING_URI = "http://mlflow:5000"  # the in-cluster Service of charts/mlflow
DEFAULT_EXPERIMENT = "Default"
DEFAULT_URI_SOURCE = "the default, as MLFLOW_TRACKING_URI is unset"
SUPPORTED_URI_SCHEMES = ("http", "https")


class SettingsError(ValueError):
    """A variable in the environment has a value dagma cannot use."""


class TrackingSettings(BaseModel):
    """Where and whether assets record their runs in MLflow."""

    model_config = ConfigDict(frozen=True)

    tracking_enabled: bool = False
    tracking_uri: str = DEFAULT_TRACKING_URI
    # Which variable the URI came from, so errors can point at it.
    tracking_uri_source: str = DEFAULT_URI_SOURCE
    experiment: str = DEFAULT_EXPERIMENT
    # Base URL people open the MLflow UI at (e.g. a port-forward); links use it.
    mlflow_ui_url: str = DEFAULT_TRACKING_URI
    # Base URL of the Dagster UI, for a link from the MLflow run back to the Dagster run.
    dagster_ui_url: str | None = None


def _parse_switch(raw: str | None) -> bool:
    value = (raw or "").strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS or value == "":
        return False
    raise SettingsError(
        f"MLFLOW_USE_TRACKING={raw!r} is not a recognised value. Use one of "
        f"{'/'.join(TRUE_WORDS)} to record runs in MLflow, or one of {'/'.join(FALSE_WORDS)} "
        "(or leave it unset) to use the stub that needs no server."
    )


def _check_url(variable: str, raw: str) -> str:
    url = raw.strip().rstrip("/")
    parsed = urlparse(url)
    if parsed.scheme not in SUPPORTED_URI_SCHEMES or not parsed.netloc:
        raise SettingsError(
            f"{variable}={raw!r} is not an MLflow Tracking server URL: it needs an "
            f"{' or '.join(SUPPORTED_URI_SCHEMES)} scheme and a host, "
            f"e.g. {DEFAULT_TRACKING_URI} in the cluster or http://127.0.0.1:5000 locally."
        )
    return url


def _experiment(env: Mapping[str, str]) -> str:
    ours = env.get("MLFLOW_EXPERIMENT", "").strip()
    mlflows = env.get("MLFLOW_EXPERIMENT_NAME", "").strip()
    if ours and mlflows and ours != mlflows:
        raise SettingsError(
            f"MLFLOW_EXPERIMENT={ours!r} and MLFLOW_EXPERIMENT_NAME={mlflows!r} disagree. "
            "Set only one of them (MLFLOW_EXPERIMENT is dagma's; MLFLOW_EXPERIMENT_NAME is "
            "MLflow's own and is accepted too)."
        )
    return ours or mlflows or DEFAULT_EXPERIMENT


def load_settings(env: Mapping[str, str] | None = None) -> TrackingSettings:
    """Read tracking settings from ``env`` (default: the process environment).

    Raises :class:`SettingsError` naming the variable, its value and the fix.
    """
    env = os.environ if env is None else env
    raw_uri = env.get("MLFLOW_TRACKING_URI", "").strip()
    tracking_uri = _check_url("MLFLOW_TRACKING_URI", raw_uri or DEFAULT_TRACKING_URI)
    ui_url = env.get("MLFLOW_UI_URL", "").strip()
    dagster_ui_url = env.get("DAGSTER_UI_URL", "").strip()
    return TrackingSettings(
        tracking_enabled=_parse_switch(env.get("MLFLOW_USE_TRACKING")),
        tracking_uri=tracking_uri,
        tracking_uri_source="MLFLOW_TRACKING_URI" if raw_uri else DEFAULT_URI_SOURCE,
        experiment=_experiment(env),
        mlflow_ui_url=_check_url("MLFLOW_UI_URL", ui_url) if ui_url else tracking_uri,
        dagster_ui_url=_check_url("DAGSTER_UI_URL", dagster_ui_url) if dagster_ui_url else None,
    )
