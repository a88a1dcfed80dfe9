"""The environment switch, as a table: every accepted and rejected form of each variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dagma.defs.models.resources import MlflowStubResource, MlflowTrackingResource
from dagma.resource_from_env import mlflow_resource_for
from dagma.settings import DEFAULT_TRACKING_URI, SettingsError, load_settings

URI = "MLFLOW_TRACKING_URI"
SWITCH_ROWS = [
    # (MLFLOW_USE_TRACKING or None for unset, resource class)
    (None, MlflowStubResource),
    ("", MlflowStubResource),
    ("   ", MlflowStubResource),
    ("0", MlflowStubResource),
    ("false", MlflowStubResource),
    ("FALSE", MlflowStubResource),
    ("no", MlflowStubResource),
    ("off", MlflowStubResource),
    (" Off ", MlflowStubResource),
    ("1", MlflowTrackingResource),
    ("true", MlflowTrackingResource),
    ("True", MlflowTrackingResource),
    ("YES", MlflowTrackingResource),
    ("on", MlflowTrackingResource),
    ("  true\n", MlflowTrackingResource),
]


@pytest.mark.parametrize(("raw", "expected"), SWITCH_ROWS)
def test_use_tracking_switch_selects_resource(raw: str | None, expected: type) -> None:
    env = {} if raw is None else {"MLFLOW_USE_TRACKING": raw}
    assert type(mlflow_resource_for(load_settings(env))) is expected


@pytest.mark.parametrize("raw", ["ture", "2", "enabled", "y", "-1", "truee"])
def test_unrecognised_switch_names_variable_and_accepted_values(raw: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({"MLFLOW_USE_TRACKING": raw})
    message = str(error.value)
    assert f"MLFLOW_USE_TRACKING={raw!r}" in message
    for word in ("1/true/yes/on", "0/false/no/off"):
        assert word in message


def test_defaults_point_at_in_cluster_service() -> None:
    settings = load_settings({})
    assert settings.tracking_uri == DEFAULT_TRACKING_URI == "http://mlflow:5000"
    assert settings.experiment == "Default"
    assert settings.tracking_enabled is False
    assert "MLFLOW_TRACKING_URI is unset" in settings.tracking_uri_source


@pytest.mark.parametrize(
    ("env", "uri", "source"),
    [
        ({URI: "http://127.0.0.1:5000"}, "http://127.0.0.1:5000", URI),
        ({URI: " https://mlflow.example.org/ "}, "https://mlflow.example.org", URI),
        ({URI: ""}, DEFAULT_TRACKING_URI, "the default, as MLFLOW_TRACKING_URI is unset"),
    ],
)
def test_tracking_uri_is_read_and_normalised(env: dict[str, str], uri: str, source: str) -> None:
    settings = load_settings(env)
    assert (settings.tracking_uri, settings.tracking_uri_source) == (uri, source)
    assert settings.mlflow_ui_url == uri  # links default to the tracking URI


@pytest.mark.parametrize(
    "bad_uri",
    [
        "mlflow:5000",
        "localhost",
        "ftp://mlflow:21",
        "file:///tmp/mlruns",
        "http://",
        "sqlite:///x.db",
    ],
)
def test_malformed_tracking_uri_is_rejected_at_load(bad_uri: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({"MLFLOW_TRACKING_URI": bad_uri, "MLFLOW_USE_TRACKING": "true"})
    assert f"MLFLOW_TRACKING_URI={bad_uri!r}" in str(error.value)
    assert "http://mlflow:5000" in str(error.value)


@pytest.mark.parametrize(
    ("env", "experiment"),
    [
        ({}, "Default"),
        ({"MLFLOW_EXPERIMENT": "churn"}, "churn"),
        ({"MLFLOW_EXPERIMENT_NAME": "churn"}, "churn"),
        ({"MLFLOW_EXPERIMENT": "churn", "MLFLOW_EXPERIMENT_NAME": "churn"}, "churn"),
        ({"MLFLOW_EXPERIMENT": " churn "}, "churn"),
    ],
)
def test_experiment_from_either_variable(env: dict[str, str], experiment: str) -> None:
    assert load_settings(env).experiment == experiment


def test_conflicting_experiment_variables_are_an_error() -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({"MLFLOW_EXPERIMENT": "a", "MLFLOW_EXPERIMENT_NAME": "b"})
    assert "MLFLOW_EXPERIMENT='a'" in str(error.value)
    assert "MLFLOW_EXPERIMENT_NAME='b'" in str(error.value)


def test_ui_links_can_point_elsewhere_than_the_tracking_uri() -> None:
    settings = load_settings(
        {"MLFLOW_UI_URL": "http://localhost:5000/", "DAGSTER_UI_URL": "http://localhost:3000"}
    )
    assert settings.mlflow_ui_url == "http://localhost:5000"
    assert settings.dagster_ui_url == "http://localhost:3000"
    with pytest.raises(SettingsError, match="DAGSTER_UI_URL='localhost:3000'"):
        load_settings({"DAGSTER_UI_URL": "localhost:3000"})


def test_tracking_resource_carries_settings() -> None:
    resource = mlflow_resource_for(
        load_settings(
            {
                "MLFLOW_USE_TRACKING": "yes",
                "MLFLOW_TRACKING_URI": "http://127.0.0.1:1234",
                "MLFLOW_EXPERIMENT": "exp",
            }
        )
    )
    assert isinstance(resource, MlflowTrackingResource)
    assert (resource.tracking_uri, resource.experiment) == ("http://127.0.0.1:1234", "exp")
    assert resource.tracking_uri_source == "MLFLOW_TRACKING_URI"


def _import_definitions(env: dict[str, str], code: str = "") -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    script = f"import sys\nimport dagma.definitions\n{code}"
    return subprocess.run(
        [sys.executable, "-c", script], env={**clean, **env}, capture_output=True, text=True
    )


def test_code_location_refuses_to_load_with_bad_switch() -> None:
    result = _import_definitions({"MLFLOW_USE_TRACKING": "ture"})
    assert result.returncode != 0
    assert "MLFLOW_USE_TRACKING='ture' is not a recognised value" in result.stderr


def test_stub_code_location_does_not_import_mlflow() -> None:
    result = _import_definitions({}, "assert 'mlflow' not in sys.modules, 'mlflow imported'")
    assert result.returncode == 0, result.stderr
