"""`from dagma import mlflow_resource_from_env`: cheap to import, used by the code location."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import dagma
from dagma import MlflowStubResource, MlflowTrackingResource, SettingsError


def _python(code: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True, text=True)


def test_import_dagma_loads_neither_dagster_nor_mlflow_nor_the_example_definitions() -> None:
    result = _python(
        "import sys, dagma\n"
        "loaded = [m for m in ('dagster', 'mlflow', 'dagma.definitions') if m in sys.modules]\n"
        "assert not loaded, loaded"
    )
    assert result.returncode == 0, result.stderr


def test_entry_point_import_does_not_import_mlflow_or_build_dagmas_definitions() -> None:
    result = _python(
        "import sys\n"
        "from dagma import mlflow_resource_from_env\n"
        "mlflow_resource_from_env()\n"
        "loaded = [m for m in ('mlflow', 'dagma.definitions') if m in sys.modules]\n"
        "assert not loaded, loaded"
    )
    assert result.returncode == 0, result.stderr


def test_entry_point_builds_the_resource_the_environment_asks_for() -> None:
    assert type(dagma.mlflow_resource_from_env({})) is MlflowStubResource
    tracking = dagma.mlflow_resource_from_env(
        {"MLFLOW_USE_TRACKING": "on", "MLFLOW_TRACKING_URI": "http://127.0.0.1:5999/"}
    )
    assert type(tracking) is MlflowTrackingResource
    assert (tracking.tracking_uri, tracking.tracking_uri_source) == (
        "http://127.0.0.1:5999",
        "MLFLOW_TRACKING_URI",
    )


def test_entry_point_refuses_bad_settings_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="MLFLOW_USE_TRACKING='maybe'"):
        dagma.mlflow_resource_from_env({"MLFLOW_USE_TRACKING": "maybe"})


def test_code_location_uses_the_public_entry_point() -> None:
    result = _python(
        "from dagma.definitions import defs\nprint(type(defs.resources['tracking']).__name__)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "MlflowStubResource"


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'mlflow_resource'"):
        dagma.mlflow_resource  # noqa: B018
    assert set(dagma.__all__) == set(dagma._PUBLIC)
    assert set(dagma.__all__) <= set(dir(dagma))
