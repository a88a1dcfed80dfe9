"""``dagma doctor`` against real servers, each cause of "no run in MLflow" made real.

Every case runs the installed ``dagma`` command in a fresh process, as a user would, and
asserts the failing check's line, the exit code, and the issue's 15 s bound on the whole
command (interpreter start included).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType
from support import mlflow_servers
from support.html_server import CONTENT_TYPE, PAGE, html_server
from support.mlflow_servers import require_basic_auth
from support.silent_server import silent_server

from dagma.dev import local_mlflow
from dagma.mlflow_server import Outcome, came_back, probe

DAGMA = Path(sys.executable).parent / "dagma"
BOUND_SECONDS = 15.0  # the bound on the whole command
PASSWORD = f"pw-{uuid.uuid4().hex}"


def doctor(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """Run ``dagma doctor`` with only ``variables`` as MLFLOW_* settings; assert the bound."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DAGSTER_"))}
    started = time.monotonic()
    result = subprocess.run(
        [str(DAGMA), "doctor", *args],
        env={**env, "DO_NOT_TRACK": "true", **variables},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    duration = time.monotonic() - started
    print(f"dagma doctor {' '.join(args)} took {duration:.1f} s:\n{result.stdout}")  # shown with -s
    assert duration <= BOUND_SECONDS, f"took {duration:.1f} s:\n{result.stdout}{result.stderr}"
    return result


def line(result: subprocess.CompletedProcess[str], check: str) -> str:
    """The report line of ``check`` (mark, name, what was found)."""
    [found] = [row for row in result.stdout.splitlines() if row[2:].split(" ")[0] == check]
    return found


def tracking(uri: str, **more: str) -> dict[str, str]:
    return {"MLFLOW_USE_TRACKING": "true", "MLFLOW_TRACKING_URI": uri, **more}


@pytest.fixture(scope="module")
def variant_servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, local_mlflow.LocalMlflowServer]]:
    """Two servers at once: one admitting only Host localhost:<port> and not proxying
    artifacts, one with basic auth."""
    require_basic_auth()
    port = local_mlflow.free_port()
    restricted = mlflow_servers.launch(
        tmp_path_factory.mktemp("restricted"),
        ["--allowed-hosts", f"localhost:{port}"],
        proxy=False,
        port=port,
    )
    auth = mlflow_servers.launch(
        tmp_path_factory.mktemp("basic-auth"),
        ["--app-name", "basic-auth"],
        env={
            "MLFLOW_AUTH_ADMIN_USERNAME": mlflow_servers.ADMIN,
            "MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": uuid.uuid4().hex,
        },
    )
    servers = {"restricted": restricted, "auth": auth}
    try:
        mlflow_servers.wait_healthy(*servers.values())
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def test_json_report_lists_every_check(mlflow_server: str) -> None:
    result = doctor("--json", **tracking(mlflow_server))
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["ok"] is True
    statuses = {check["name"]: check["status"] for check in report["checks"]}
    assert statuses["experiment"] == "ok" and statuses["artifacts"] == "ok"


def test_misspelled_switch_is_named_with_the_accepted_values() -> None:
    result = doctor(**tracking("http://127.0.0.1:9", MLFLOW_USE_TRACKING="ture"))
    assert result.returncode == 1
    assert line(result, "switch").startswith("✘ switch")
    assert "MLFLOW_USE_TRACKING='ture'" in result.stdout
    assert "1/true/yes/on" in result.stdout and "0/false/no/off" in result.stdout


@pytest.mark.parametrize("switch", [None, "false"])
def test_switch_off_fails_naming_the_variable_and_the_server_is_still_checked(
    mlflow_server: str, switch: str | None
) -> None:
    variables = {"MLFLOW_TRACKING_URI": mlflow_server}
    if switch is not None:
        variables["MLFLOW_USE_TRACKING"] = switch
    result = doctor(**variables)
    assert result.returncode == 1, result.stdout
    assert line(result, "switch").startswith("✘ switch")
    assert "MLFLOW_USE_TRACKING is off (or unset)" in line(result, "switch")
    assert "nothing reaches MLflow" in result.stdout
    assert "set MLFLOW_USE_TRACKING=true" in result.stdout
    assert line(result, "health").startswith("✔")
    assert line(result, "experiment").startswith("✔")  # turning it on would work
    assert result.stdout.endswith("dagma doctor: some checks failed\n")


def test_server_only_passes_with_the_switch_off(mlflow_server: str) -> None:
    result = doctor("--server-only", **tracking(mlflow_server, MLFLOW_USE_TRACKING="false"))
    assert result.returncode == 0, result.stdout
    assert line(result, "switch").startswith("! switch")
    assert "in-memory stub" in result.stdout
    assert line(result, "health").startswith("✔")
    assert result.stdout.endswith("dagma doctor: all checks passed\n")


def test_misspelt_variables_are_named_with_the_right_spelling(mlflow_server: str) -> None:
    result = doctor(
        MLFLOW_USE_TRACKNG="true",
        MLFLOW_TRACKING_URL=mlflow_server,
        MLFLOW_EXPERIMENT_ID="0",
    )
    assert result.returncode == 1, result.stdout
    assert line(result, "switch").startswith("✘ switch")
    out = result.stdout
    assert "MLFLOW_USE_TRACKNG is set, but dagma reads MLFLOW_USE_TRACKING" in out
    assert "fix: rename it to MLFLOW_USE_TRACKING" in out
    assert "MLFLOW_TRACKING_URL is set, but dagma reads MLFLOW_TRACKING_URI" in out
    assert mlflow_server not in out  # a URI may hold a login: values stay out of the report
    assert "MLFLOW_EXPERIMENT_ID is set, but dagma reads MLFLOW_EXPERIMENT" in out


def test_uri_pasted_from_the_ui_is_refused_saying_what_to_drop() -> None:
    result = doctor(**tracking("http://127.0.0.1:5100/#/experiments/0"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert line(result, "uri").startswith("✘ uri")
    pasted = "MLFLOW_TRACKING_URI='http://127.0.0.1:5100/#/experiments/0' has a fragment"
    assert pasted in line(result, "uri")
    assert "Drop the fragment: MLFLOW_TRACKING_URI=http://127.0.0.1:5100\n" in result.stdout


def test_a_web_page_instead_of_mlflow_is_a_failed_check_not_a_traceback() -> None:
    with html_server() as port:
        result = doctor(**tracking(f"http://127.0.0.1:{port}"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == "", result.stderr
    assert line(result, "tcp").startswith("✔")
    health = line(result, "health")
    assert health.startswith("✘ health")
    assert f"answered HTTP 200, {CONTENT_TYPE}, starting '<!doctype html><html>" in health
    assert "not another web server or a proxy's page" in result.stdout
    assert line(result, "experiment").startswith("- experiment   not checked: fix health first")
    assert result.stdout.endswith("dagma doctor: some checks failed\n")


def test_uri_without_scheme_is_refused_with_the_variable() -> None:
    result = doctor(**tracking("127.0.0.1:5000"))
    assert result.returncode == 1
    assert line(result, "uri").startswith("✘ uri")
    assert "MLFLOW_TRACKING_URI='127.0.0.1:5000'" in result.stdout


def test_closed_port_fails_at_tcp_and_skips_the_rest() -> None:
    port = local_mlflow.free_port()  # nothing listens: a stopped server
    result = doctor(**tracking(f"http://127.0.0.1:{port}"))
    assert result.returncode == 1
    assert line(result, "tcp") == f"✘ tcp          cannot connect to 127.0.0.1:{port}: " + (
        "[Errno 111] Connection refused"
    )
    assert "start the MLflow server (or its port-forward)" in result.stdout
    assert line(result, "experiment").startswith("- experiment   not checked: fix tcp first")


def test_silent_host_fails_at_health_within_the_bound() -> None:
    with silent_server() as port:
        result = doctor(**tracking(f"http://127.0.0.1:{port}"))
    assert result.returncode == 1
    assert line(result, "tcp").startswith("✔")
    assert "no answer within" in line(result, "health")
    assert "the connection was accepted, then nothing came back" in line(result, "health")
    assert line(result, "health").startswith("✘")


def test_deleted_experiment_is_named_with_the_restore_command(mlflow_server: str) -> None:
    name = f"doctor-deleted-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment_id = client.create_experiment(name)
    client.delete_experiment(experiment_id)
    result = doctor(**tracking(mlflow_server, MLFLOW_EXPERIMENT=name))
    assert result.returncode == 1
    assert line(result, "experiment").startswith("✘")
    assert f"experiment {name!r} (id {experiment_id}) is deleted" in result.stdout
    assert f"mlflow experiments restore --experiment-id {experiment_id}" in result.stdout


def test_missing_experiment_is_fine_and_new_ones_would_be_proxied(mlflow_server: str) -> None:
    result = doctor(**tracking(mlflow_server, MLFLOW_EXPERIMENT=f"new-{uuid.uuid4().hex}"))
    assert result.returncode == 0, result.stdout
    assert "does not exist yet; the first run creates it" in line(result, "experiment")
    assert "mlflow-artifacts:" in line(result, "artifacts")


def test_all_checks_pass_and_the_write_test_leaves_a_deleted_run(mlflow_server: str) -> None:
    experiment = f"doctor-{uuid.uuid4().hex[:8]}"
    result = doctor("--write-test", **tracking(mlflow_server, MLFLOW_EXPERIMENT=experiment))
    assert result.returncode == 0, result.stdout + result.stderr
    for check in ("switch", "dns", "tcp", "health", "version", "host-header", "credentials"):
        assert line(result, check).startswith("✔"), result.stdout
    assert "mlflow-artifacts:" in line(result, "artifacts")
    assert line(result, "write-test").startswith("✔")
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    [run] = client.search_runs([experiment_id], run_view_type=ViewType.ALL)
    assert run.info.lifecycle_stage == "deleted"
    assert run.data.params == {"dagma_doctor_param": "42"}
    assert run.data.metrics == {"dagma_doctor_metric": 0.5}


def test_refused_host_header_prints_the_allowed_hosts_entry(variant_servers) -> None:
    url = variant_servers["restricted"].url
    host = url.removeprefix("http://")
    result = doctor(**tracking(url))
    assert result.returncode == 1
    assert line(result, "health").startswith("✔")  # /health is exempt from the check
    assert line(result, "host-header").startswith("✘")
    assert f"--allowed-hosts including {host!r}" in result.stdout
    assert f"server.extraAllowedHosts: [{host!r}]" in result.stdout


def test_local_artifact_root_fails_the_artifacts_check(variant_servers) -> None:
    # The same server admits Host localhost:<port>, so the API call passes and shows the
    # experiment's artifact location: a directory on the server's disk.
    url = variant_servers["restricted"].url.replace("127.0.0.1", "localhost")
    result = doctor(**tracking(url))
    assert result.returncode == 1
    assert line(result, "host-header").startswith("✔")
    assert line(result, "artifacts").startswith("✘")
    assert "server-disk-artifacts" in line(result, "artifacts")
    assert "a path on the server's disk" in result.stdout
    assert "--serve-artifacts --artifacts-destination" in result.stdout


def test_auth_without_credentials_says_what_to_set(variant_servers) -> None:
    result = doctor(**tracking(variant_servers["auth"].url))
    assert result.returncode == 1
    assert line(result, "credentials").startswith("✘")
    assert "asks for a login (HTTP 401) and the environment supplies none" in result.stdout
    assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in result.stdout


def test_auth_with_wrong_password_is_refused_without_printing_it(variant_servers) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    login = {"MLFLOW_TRACKING_USERNAME": mlflow_servers.ADMIN, "MLFLOW_TRACKING_PASSWORD": wrong}
    result = doctor(**tracking(variant_servers["auth"].url, **login))
    assert result.returncode == 1
    assert "refused the login" in line(result, "credentials")
    assert wrong not in result.stdout + result.stderr


def test_auth_with_credentials_passes_and_never_prints_the_password(variant_servers) -> None:
    login = {
        "MLFLOW_TRACKING_USERNAME": mlflow_servers.ADMIN,
        "MLFLOW_TRACKING_PASSWORD": PASSWORD,
    }
    result = doctor("--write-test", **tracking(variant_servers["auth"].url, **login))
    assert result.returncode == 0, result.stdout
    assert "asks for a login" in line(result, "credentials")
    assert line(result, "write-test").startswith("✔")
    assert PASSWORD not in result.stdout + result.stderr


def test_missing_local_store_directory_says_to_create_it(tmp_path: Path) -> None:
    missing = tmp_path / "not-made-yet" / "mlflow.db"
    result = doctor(**tracking(f"sqlite:///{missing}"))
    assert result.returncode == 1
    assert line(result, "store-path") == (
        f"✘ store-path  directory {missing.parent} of the SQLite database does not exist "
        "(SQLite creates the file, never its directory)"
    )
    assert f"mkdir -p {missing.parent}" in result.stdout
    assert not missing.parent.exists()  # doctor only looks


def test_sqlite_store_passes_the_write_test(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = doctor("--write-test", **tracking(uri))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "will be created on the first run" in line(result, "store-path")
    [run] = MlflowClient(tracking_uri=uri).search_runs(["0"], run_view_type=ViewType.ALL)
    assert run.info.lifecycle_stage == "deleted"
    assert run.data.params == {"dagma_doctor_param": "42"}
    # Beside the database, as runs keep them; never ./mlruns of the directory doctor ran in.
    assert run.info.artifact_uri.startswith(str(tmp_path / "mlartifacts")), run.info.artifact_uri


def test_file_store_without_the_opt_in_names_both_choices(tmp_path: Path) -> None:
    uri = f"file://{tmp_path / 'mlruns'}"
    switched_off = doctor(**tracking(uri, MLFLOW_USE_TRACKING="false"))
    assert switched_off.returncode == 1
    assert line(switched_off, "file-store").startswith("✘ file-store")
    assert "set MLFLOW_ALLOW_FILE_STORE=true, or use a SQLite store" in switched_off.stdout
    opted_in = doctor(**tracking(uri, MLFLOW_ALLOW_FILE_STORE="true"))
    assert opted_in.returncode == 0, opted_in.stdout
    assert line(opted_in, "file-store").startswith("✔ file-store")


def test_python_m_dagma_is_the_same_command() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    result = subprocess.run(
        [sys.executable, "-m", "dagma", "doctor", "--json"],
        env={**env, "MLFLOW_USE_TRACKING": "maybe"}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    [check] = json.loads(result.stdout)["checks"]
    assert (check["name"], check["status"]) == ("switch", "fail")


def test_the_probe_says_what_a_web_page_answered() -> None:
    # The API check's words for a page that is not MLflow's JSON (doctor stops at /health
    # before it; the resource's NotAnMlflowServerError words the same answer).
    with html_server() as port:
        answer = probe(f"http://127.0.0.1:{port}", "Default", timeout=5)
    assert (answer.outcome, answer.status_code) == (Outcome.NOT_MLFLOW, 200)
    assert answer.content_type == CONTENT_TYPE
    assert came_back(answer.status_code, answer.content_type, answer.text) == (
        f"HTTP 200, {CONTENT_TYPE}, starting {PAGE.decode()[:120]!r}"
    )
