"""MLflow's client retries and the wait for a server not up yet: bounded, bad values refused."""

from __future__ import annotations

import os

import pytest
from dagster import asset, materialize

from dagma import MlflowRunRecorder, mlflow_resource_from_env
from dagma.settings import HttpRequestSettings, SettingsError, load_settings

RETRIES, BACKOFF, TIMEOUT = (
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
)
WAIT = "MLFLOW_SERVER_WAIT_SECONDS"
# A closed port: no test here sends a request.
TRACKING_ON = {"MLFLOW_USE_TRACKING": "true", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}


def test_unset_variables_get_the_charts_bounded_defaults() -> None:
    assert load_settings({}).http.as_env() == {RETRIES: "5", BACKOFF: "2", TIMEOUT: "60"}


def test_a_users_values_win() -> None:
    http = load_settings({TIMEOUT: "300", RETRIES: " 0 "}).http
    assert http == HttpRequestSettings(max_retries=0, backoff_factor=2, timeout_seconds=300)


@pytest.mark.parametrize(
    ("variable", "raw", "allowed"),
    [
        (RETRIES, "11", "from 0 to 10"),  # MLflow's own limit
        (RETRIES, "-1", "from 0 to 10"),
        (RETRIES, "five", "from 0 to 10"),
        (BACKOFF, "2.5", "from 0 to 120"),  # MLflow reads it with int()
        (BACKOFF, "121", "from 0 to 120"),
        (TIMEOUT, "0", "of at least 1"),
        (TIMEOUT, "1m", "of at least 1"),
        (TIMEOUT, "60s", "of at least 1"),
    ],
)
def test_bad_values_name_the_variable_and_the_fix(variable: str, raw: str, allowed: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({variable: raw})
    message = str(error.value)
    assert f"{variable}={raw!r}" in message
    assert f"a whole number {allowed}" in message and "leave it unset" in message


def test_the_resource_applies_them_only_while_it_runs_and_a_users_value_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (RETRIES, BACKOFF, TIMEOUT):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(TIMEOUT, "300")
    resource = mlflow_resource_from_env({**TRACKING_ON, **os.environ})

    @asset
    def reads_the_environment(tracking: MlflowRunRecorder) -> dict[str, str | None]:
        return {name: os.environ.get(name) for name in (RETRIES, BACKOFF, TIMEOUT)}

    result = materialize([reads_the_environment], resources={"tracking": resource})
    seen = result.output_for_node("reads_the_environment")
    assert seen == {RETRIES: "5", BACKOFF: "2", TIMEOUT: "300"}  # what MLflow's client reads
    assert RETRIES not in os.environ and BACKOFF not in os.environ  # removed afterwards
    assert os.environ[TIMEOUT] == "300"


def test_the_wait_for_a_server_not_up_yet_is_zero_unless_set() -> None:
    assert load_settings({}).server_wait_seconds == 0  # `dagster dev`: a wrong URI fails at once
    assert load_settings({WAIT: " 60 "}).server_wait_seconds == 60
    resource = mlflow_resource_from_env({**TRACKING_ON, WAIT: "45"})
    assert resource.server_wait_seconds == 45


@pytest.mark.parametrize("raw", ["-1", "2.5", "1m", "sixty", "3601"])
def test_a_bad_wait_names_the_variable_the_value_and_the_range(raw: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({WAIT: raw})
    message = str(error.value)
    assert f"{WAIT}={raw!r}" in message
    assert "a whole number of seconds from 0 to 3600" in message and "leave it unset" in message
