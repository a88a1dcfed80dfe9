"""The environment switch, as a table: every accepted and rejected form of each variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dagma import MlflowStubResource, MlflowTrackingResource, mlflow_resource_from_env
from dagma.settings import DEFAULT_TRACKING_URI, SettingsError, load_settings, near_misses

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
    assert type(mlflow_resource_from_env(env)) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, True), ("", True), ("true", True), (" ON ", True), ("0", False), ("false", False),
     ("No", False)],
)  # fmt: skip
def test_parent_runs_switch_reaches_the_resource(raw: str | None, expected: bool) -> None:
    env = {"MLFLOW_USE_TRACKING": "true", **({} if raw is None else {"MLFLOW_PARENT_RUNS": raw})}
    resource = mlflow_resource_from_env(env)
    assert isinstance(resource, MlflowTrackingResource)
    assert resource.parent_runs is expected


def test_unrecognised_parent_runs_value_names_the_variable_and_the_choices() -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({"MLFLOW_PARENT_RUNS": "flat"})
    message = str(error.value)
    assert "MLFLOW_PARENT_RUNS='flat'" in message
    assert "1/true/yes/on" in message and "one flat run per materialization" in message


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
    ("bad_uri", "accepted_form"),
    [
        ("mlflow:5000", "http://mlflow:5000"),
        ("localhost", "http://mlflow:5000"),
        ("ftp://mlflow:21", "http://mlflow:5000"),
        ("http://", "http://mlflow:5000"),
        ("/tmp/mlruns", "file:///ABSOLUTE/PATH/mlruns"),  # a bare path: MLflow's file store
        ("file://mlruns", "file:///ABSOLUTE/PATH"),  # "mlruns" would be a host name
        ("file:mlruns", "file:///ABSOLUTE/PATH/mlruns"),
        ("file:///", "file:///ABSOLUTE/PATH/mlruns"),
        ("sqlite:///x.db", "sqlite:////ABSOLUTE/PATH/mlflow.db"),  # relative to the cwd
        ("sqlite:///data/mlflow.db", "sqlite:////ABSOLUTE/PATH/mlflow.db"),
        ("postgresql://db/mlflow", "sqlite:////ABSOLUTE/PATH/mlflow.db"),
    ],
)
def test_unusable_tracking_uri_is_rejected_at_load(bad_uri: str, accepted_form: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({"MLFLOW_TRACKING_URI": bad_uri, "MLFLOW_USE_TRACKING": "true"})
    assert f"MLFLOW_TRACKING_URI={bad_uri!r}" in str(error.value)
    assert accepted_form in str(error.value)


@pytest.mark.parametrize(
    ("env", "local_store"),
    [
        ({URI: "sqlite:////srv/mlflow/mlflow.db"}, True),
        ({URI: "file:///srv/mlflow/mlruns", "MLFLOW_ALLOW_FILE_STORE": "true"}, True),
        ({URI: "file:///srv/mlflow/mlruns", "MLFLOW_ALLOW_FILE_STORE": "1"}, True),
        ({URI: "http://127.0.0.1:5000"}, False),
    ],
)
def test_local_stores_are_accepted_with_absolute_paths(
    env: dict[str, str], local_store: bool
) -> None:
    settings = load_settings({**env, "MLFLOW_USE_TRACKING": "true"})
    assert settings.tracking_uri == env[URI]
    assert settings.local_store is local_store
    # A local store has no server to link to unless MLFLOW_UI_URL names one.
    assert settings.mlflow_ui_url == (None if local_store else env[URI])
    with_ui = load_settings(
        {**env, "MLFLOW_USE_TRACKING": "true", "MLFLOW_UI_URL": "http://ui:5000"}
    )
    assert with_ui.mlflow_ui_url == "http://ui:5000"


@pytest.mark.parametrize("opt_in", [None, "", "false", "0"])
def test_file_store_without_mlflows_opt_in_fails_at_load_with_both_choices(
    opt_in: str | None,
) -> None:
    env = {URI: "file:///srv/mlflow/mlruns", "MLFLOW_USE_TRACKING": "true"}
    if opt_in is not None:
        env["MLFLOW_ALLOW_FILE_STORE"] = opt_in
    with pytest.raises(SettingsError) as error:
        load_settings(env)
    message = str(error.value)
    assert "MLFLOW_TRACKING_URI='file:///srv/mlflow/mlruns'" in message
    assert "set MLFLOW_ALLOW_FILE_STORE=true" in message
    assert "MLFLOW_TRACKING_URI=sqlite:////srv/mlflow/mlflow.db" in message


def test_file_store_opt_in_takes_only_the_words_mlflow_accepts() -> None:
    with pytest.raises(SettingsError, match="MLFLOW_ALLOW_FILE_STORE='yes'.*true or 1"):
        load_settings({"MLFLOW_ALLOW_FILE_STORE": "yes"})


def test_tracking_off_does_not_ask_for_local_store_requirements() -> None:
    # The stub writes nowhere: no opt-in needed, but the URI must still be well formed.
    settings = load_settings({URI: "file:///srv/mlflow/mlruns"})
    assert settings.local_store and not settings.tracking_enabled


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
    resource = mlflow_resource_from_env(
        {
            "MLFLOW_USE_TRACKING": "yes",
            "MLFLOW_TRACKING_URI": "http://127.0.0.1:1234",
            "MLFLOW_EXPERIMENT": "exp",
        }
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


def test_tracking_code_location_does_not_import_mlflow_at_load() -> None:
    # Cold start: mlflow (~1 s to import) is loaded when the first run starts, not before.
    env = {"MLFLOW_USE_TRACKING": "true", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    result = _import_definitions(env, "assert 'mlflow' not in sys.modules, 'mlflow imported'")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("pasted", "drop", "fixed"),
    [
        ("http://127.0.0.1:5100/#/experiments/0", "fragment '#/experiments/0'", "http://127.0.0.1:5100"),
        ("http://mlflow:5000/?o=1", "query '?o=1'", "http://mlflow:5000"),
        ("https://h/mlflow/?a=b#/c", "query '?a=b' and the fragment '#/c'", "https://h/mlflow"),
    ],
)  # fmt: skip
def test_uri_pasted_from_the_ui_is_refused_naming_the_part_and_the_fixed_uri(
    pasted: str, drop: str, fixed: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"MLFLOW_TRACKING_URI": pasted})
    message = str(raised.value)
    assert message.startswith(f"MLFLOW_TRACKING_URI={pasted!r} has a {drop}")
    assert message.endswith(f": MLFLOW_TRACKING_URI={fixed}")
    assert load_settings({"MLFLOW_TRACKING_URI": fixed}).tracking_uri == fixed  # the fix works


def test_ui_url_with_a_fragment_is_refused_too() -> None:
    with pytest.raises(SettingsError, match=r"^MLFLOW_UI_URL='http://h:5000/#/x' has a fragment"):
        load_settings({"MLFLOW_UI_URL": "http://h:5000/#/x"})


def test_near_misses_name_the_variable_dagma_reads() -> None:
    env = {
        "MLFLOW_USE_TRACKNG": "true",
        "MLFLOW_TRACKING_URL": "http://127.0.0.1:5100",
        "MLFLOW_EXPERIMENT_ID": "0",
        "mlflow_use_tracking": "true",
        # Right as they are: dagma's own, MLflow's, Dagster's, the Makefile's, unrelated.
        "MLFLOW_USE_TRACKING": "true",
        "MLFLOW_TRACKING_TOKEN": "t",
        "MLFLOW_TRACKING_USERNAM": "a",  # MLflow's name misspelt: not one of dagma's
        "DAGSTER_HOME": "/tmp",
        "MLFLOW_PORT": "5100",
        "HOME": "/root",
    }
    assert near_misses(env) == [
        ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT"),
        ("MLFLOW_TRACKING_URL", "MLFLOW_TRACKING_URI"),
        ("MLFLOW_USE_TRACKNG", "MLFLOW_USE_TRACKING"),
        ("mlflow_use_tracking", "MLFLOW_USE_TRACKING"),
    ]
    assert near_misses({"MLFLOW_USE_TRACKING": "1", "PATH": "/bin"}) == []
