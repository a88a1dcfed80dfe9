"""A local Dagster for the tests: an instance, the CLI's materialize, the webserver, dagster dev.

Everything runs as the user would run it — the ``dagster``, ``dagster-webserver`` and
``dagster dev`` commands of the project's environment — on 127.0.0.1 only; a server is
ready once every code location of its workspace has loaded (asked of its GraphQL API), and
is stopped with its whole process group (``dagster dev`` starts the webserver, the daemon
and a code server per location). The instance turns Dagster's telemetry and the UI's "join
the community" dialog off: the tests send nothing beyond loopback, and the dialog would
cover the page.
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

import yaml
from dagster import DagsterInstance

from dagma.dev.local_mlflow import free_port, stop_process_group

BIN = Path(sys.executable).parent
CODE_LOCATION_MODULE = "dagma.definitions"
INSTANCE_CONFIG = "telemetry:\n  enabled: false\nnux:\n  enabled: false\n"
LOADED, LOADING = "LOADED", "LOADING"

# Each code location of the webserver's workspace: whether it has loaded, or why it has not.
_LOCATIONS_QUERY = """
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


def write_workspace(path: Path, modules: Mapping[str, str], files: Mapping[str, Path]) -> Path:
    """A workspace.yaml loading ``modules`` and ``files`` under the given location names."""
    load_from = [
        {"python_module": {"module_name": module, "location_name": name}}
        for name, module in modules.items()
    ] + [
        {"python_file": {"relative_path": str(file), "location_name": name}}
        for name, file in files.items()
    ]
    path.write_text(yaml.safe_dump({"load_from": load_from}))
    return path


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


def location_statuses(url: str) -> dict[str, str]:
    """Each code location of the webserver at ``url``: ``LOADED``, ``LOADING`` or
    ``load error: <message>``; empty while its GraphQL API does not answer."""
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": _LOCATIONS_QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            entries = json.load(response)["data"]["workspaceOrError"]["locationEntries"]
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError):
        return {}
    statuses = {}
    for entry in entries:
        location = entry.get("locationOrLoadError") or {}
        if location.get("__typename") == "PythonError":
            statuses[entry["name"]] = f"load error: {location.get('message', '').strip()}"
        else:
            statuses[entry["name"]] = entry["loadStatus"]
    return statuses


@contextmanager
def _serving(
    name: str, command: list[str], env: Mapping[str, str], url: str, expected: int,
    timeout: float, *, load_errors_fail: bool,
) -> Iterator[Path]:  # fmt: skip
    """Run ``command``, a Dagster server at ``url``, in DAGSTER_HOME; yield its log's path
    once its ``expected`` code locations finished loading. Raises ``RuntimeError`` with the
    log's tail when it exits, ``timeout`` passes, or (``load_errors_fail``) a load fails."""
    home = Path(env["DAGSTER_HOME"])
    log_path = home / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, cwd=home, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while True:
            statuses = location_statuses(url)
            if load_errors_fail and any(s.startswith("load error") for s in statuses.values()):
                failed = "a code location failed to load"
            elif len(statuses) == expected and LOADING not in statuses.values():
                break
            elif process.poll() is not None:
                failed = f"it exited with code {process.returncode}"
            elif time.monotonic() > deadline:
                failed = f"its {expected} code location(s) did not load within {timeout:.0f} s"
            else:
                time.sleep(0.5)
                continue
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} at {url}: {failed} {statuses}; log {log_path}:\n{tail}")
        yield log_path
    finally:
        # SIGTERM to the group, as Ctrl-C would; what is left after the grace is killed.
        stop_process_group(process.pid, grace=60, child=process)


@contextmanager
def run_webserver(
    port: int, env: Mapping[str, str], timeout: float = 180
) -> Iterator[DagsterWebserver]:
    """``dagster-webserver`` serving ``dagma.definitions`` on 127.0.0.1:``port``.

    Yields once the code location has loaded; raises ``RuntimeError`` with the webserver's
    log when it exits, the location fails to load, or ``timeout`` passes.
    """
    url = f"http://127.0.0.1:{port}"
    command = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
               "-m", CODE_LOCATION_MODULE]  # fmt: skip
    with _serving("dagster-webserver", command, env, url, 1, timeout,
                  load_errors_fail=True) as log_path:  # fmt: skip
        yield DagsterWebserver(url=url, log_path=log_path)


@contextmanager
def dagster_dev(
    workspace: Path, env: Mapping[str, str], expected: int, timeout: float = 300
) -> Iterator[str]:
    """``dagster dev`` (webserver and daemon) on a free port, as ``make dev`` runs it.

    Yields its URL once all ``expected`` locations of ``workspace`` finished loading,
    those that fail to load included (a test may want one that does).
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(BIN / "dagster"), "dev", "-w", str(workspace), "-h", "127.0.0.1",
               "-p", str(port)]  # fmt: skip
    with _serving("dagster-dev", command, env, url, expected, timeout, load_errors_fail=False):
        yield url
