"""A local Dagster for the tests: a temporary instance, the CLI's materialize, the webserver.

Everything runs as the user would run it — the ``dagster`` and
``dagster-webserver`` commands of the project's environment, loading the code
location ``dagma.definitions`` — on 127.0.0.1 only. The instance turns
Dagster's telemetry and the UI's "join the community" dialog off: the tests
send nothing beyond loopback, and the dialog would cover the page.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dagster import DagsterInstance

BIN = Path(sys.executable).parent
CODE_LOCATION_MODULE = "dagma.definitions"
INSTANCE_CONFIG = "telemetry:\n  enabled: false\nnux:\n  enabled: false\n"

# Asks the webserver whether its code location has loaded (or why it has not).
_LOCATION_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


def init_instance(dagster_home: Path) -> Path:
    """Make ``dagster_home`` a Dagster instance: local storage, no telemetry, no dialog."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(INSTANCE_CONFIG)
    return dagster_home


def command_env(dagster_home: Path, **variables: str) -> dict[str, str]:
    """This process's environment without MLFLOW_*/DAGSTER_* settings, plus ``variables``."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MLFLOW_", "DAGSTER_"))
    }
    # DO_NOT_TRACK switches off MLflow's client telemetry too.
    return {**inherited, "DO_NOT_TRACK": "true", "DAGSTER_HOME": str(dagster_home), **variables}


def materialize(selection: str, env: Mapping[str, str], timeout: float = 300) -> str:
    """Run ``dagster asset materialize`` for ``selection``; return the Dagster run id.

    Raises ``AssertionError`` with the command's output when it fails.
    """
    home = Path(env["DAGSTER_HOME"])
    result = subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize",
         "-m", CODE_LOCATION_MODULE, "--select", selection],
        cwd=home, env=dict(env), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, f"dagster asset materialize failed:\n{result.stderr[-4000:]}"
    with DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs(limit=1)
    return run.run_id


@dataclass(frozen=True)
class TrackedMaterialization:
    """A materialization recorded in MLflow, with the Dagster webserver serving its instance."""

    asset: str
    dagster_url: str
    dagster_run_id: str
    mlflow_url: str
    mlflow_run_id: str
    mlflow_run_url: str


@dataclass(frozen=True)
class DagsterWebserver:
    """A running ``dagster-webserver`` with its code location loaded."""

    url: str
    log_path: Path


@contextmanager
def run_webserver(
    port: int, env: Mapping[str, str], timeout: float = 180
) -> Iterator[DagsterWebserver]:
    """Start ``dagster-webserver`` on 127.0.0.1:``port``; stop it (by its pid) on exit.

    Yields once the code location has loaded. Raises ``RuntimeError`` with the
    webserver's log when it exits, the location fails to load, or ``timeout`` passes.
    """
    home = Path(env["DAGSTER_HOME"])
    url = f"http://127.0.0.1:{port}"
    log_path = home / "dagster-webserver.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
             "-m", CODE_LOCATION_MODULE],
            cwd=home, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_until_loaded(url, process, log_path, timeout)
        yield DagsterWebserver(url=url, log_path=log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def _wait_until_loaded(
    url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            last = f"dagster-webserver exited with code {process.returncode}"
            break
        last = _location_status(url)
        if last == "LOADED":
            return
        if last.startswith("load error"):
            break
        time.sleep(0.5)
    tail = log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(
        f"Dagster webserver at {url} did not load {CODE_LOCATION_MODULE} "
        f"within {timeout:.0f} s ({last}); log {log_path}:\n{tail}"
    )


def _location_status(url: str) -> str:
    """``LOADED``, ``load error: …``, or what is still missing."""
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": _LOCATION_QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            workspace = json.load(response)["data"]["workspaceOrError"]
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as exc:
        return f"GraphQL not answering: {exc}"
    entries = workspace.get("locationEntries") or []
    if not entries:
        return f"no code location yet ({workspace.get('__typename')})"
    [entry] = entries
    location = entry.get("locationOrLoadError") or {}
    if location.get("__typename") == "PythonError":
        return f"load error: {location.get('message', '').strip()}"
    if entry["loadStatus"] == "LOADED" and location.get("__typename") == "RepositoryLocation":
        return "LOADED"
    return f"location {entry['name']} is {entry['loadStatus']}"
