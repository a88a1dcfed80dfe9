"""``dagster dev`` (webserver + daemon) on 127.0.0.1 with a workspace of several code locations.

As ``make dev`` runs it: the daemon dequeues the runs the webserver queues. The
instance comes from :func:`support.dagster_local.init_instance` (no telemetry).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import yaml

from dagma.devserver import free_port
from support.dagster_local import BIN

_LOAD_STATUS = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"


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


def _load_statuses(url: str) -> dict[str, str]:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": _LOAD_STATUS}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            entries = json.load(response)["data"]["workspaceOrError"]["locationEntries"]
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError):
        return {}
    return {entry["name"]: entry["loadStatus"] for entry in entries}


@contextmanager
def dagster_dev(
    workspace: Path, env: Mapping[str, str], expected: int, timeout: float = 300
) -> Iterator[str]:
    """Run ``dagster dev``; yield its URL once all ``expected`` locations finished loading."""
    home = Path(env["DAGSTER_HOME"])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = home / "dagster-dev.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(BIN / "dagster"), "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)],
            cwd=home, env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while True:
            statuses = _load_statuses(url)
            if len(statuses) == expected and "LOADING" not in statuses.values():
                break
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"dagster dev at {url} did not load ({statuses}):\n{tail}")
            time.sleep(1)
        yield url
    finally:
        # dagster dev stops its webserver, daemon and code servers on SIGTERM.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):  # members of its group left behind
            os.killpg(process.pid, signal.SIGKILL)
