"""The MLflow servers the tests run as local processes: the chart's pods, and variants.

:func:`start` (and :func:`serving`) bring up charts/mlflow's pods exactly as the manifests
say, in the cluster's order: the server pod's ``wait-for-schema`` init container starts
first and must keep waiting, the migration Job's containers run to completion, the init
containers then finish, and the server container starts. Every command, argument and
environment variable comes from the rendered manifests (:mod:`support.container_spec`);
the only liberties are the volume, which becomes a temporary directory, and the bind
address, ``0.0.0.0`` → ``127.0.0.1`` (tests talk to 127.0.0.1 only).

:func:`launch` starts the development server (:func:`dagma.dev.local_mlflow.server_command`)
with one thing changed — a restrictive ``--allowed-hosts``, no artifact proxying, or
basic auth — for ``dagma doctor``'s tests; several start side by side (each takes
seconds to come up) and :func:`wait_healthy` waits for them all.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagma.dev import local_mlflow
from support import container_spec
from support.container_spec import Data, LocalContainer
from support.helm import Rendered
from support.tools import missing

WAITING_MARKER = "waiting for the migration Job"
# urllib without proxies: the servers are on 127.0.0.1, whatever proxy the environment sets.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
BIND_LOCALLY = {"0.0.0.0": "127.0.0.1"}
ADMIN = "dagma-admin"  # the basic-auth admin of the variants
# No telemetry; no GenAI job runner, whose ~7 worker processes import MLflow right after
# /health answers and would slow every command timed against the server.
QUIET = {"DO_NOT_TRACK": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@dataclass
class ServerPod:
    """A server started from a rendered chart, with what was observed on the way up."""

    url: str
    volume: Path
    server: LocalContainer
    process: Any
    log_path: Path
    timings: dict[str, float] = field(default_factory=dict)
    waited_for_job: bool = False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        container_spec.stop(self.process)

    def memory_bytes(self) -> int:
        """Proportional set size of the server's processes (the workers share pages)."""
        return tree_pss_bytes(self.process.pid)


def http_status(url: str, headers: Mapping[str, str] | None = None) -> int:
    """The HTTP status of a GET of ``url`` (no proxy), error statuses included."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with DIRECT.open(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def is_healthy(url: str) -> bool:
    """Whether the MLflow server at ``url`` answers ``/health``."""
    try:
        with DIRECT.open(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def require_basic_auth() -> None:
    """Skip (locally) or fail (in CI) when MLflow's basic-auth app cannot run here."""
    if importlib.util.find_spec("flask_wtf") is None:
        missing("Flask-WTF (MLflow's basic-auth app)", "install mlflow[auth] in the dev group")


def tree_pss_bytes(pid: int) -> int:
    """Sum of proportional set sizes over a process and its descendants (Linux /proc)."""
    total = 0
    for member in container_spec.process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _pod_volumes(doc: Mapping[str, Any], volume: Path) -> dict[str, Path]:
    """Every PersistentVolumeClaim volume of the pod → the directory standing in for it."""
    spec = container_spec.pod_spec(doc)
    return {v["name"]: volume for v in spec.get("volumes", []) if "persistentVolumeClaim" in v}


def _run(local: LocalContainer, what: str, timeout: float) -> None:
    result = local.run(timeout=timeout)
    assert result.returncode == 0, (
        f"{what} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )


def _wait_for(predicate: Any, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}:\n{tail}")
        time.sleep(0.3)


def localizer(
    rendered: Rendered,
    tmp: Path,
    volume: Path,
    secrets: Data,
    host_env: Mapping[str, str] | None = None,
) -> Any:
    """A function localizing any container of ``rendered`` with this release's data.

    ``host_env`` stands in for the image (default: this interpreter's environment first
    on PATH); pass another virtualenv's PATH to run the pods on its packages.
    """
    chart_secrets, config_maps = container_spec.object_data(rendered.manifests)
    all_secrets = {**chart_secrets, **secrets}

    def localize(doc: Mapping[str, Any], name: str, **kwargs: Any) -> LocalContainer:
        return container_spec.localize(
            container_spec.container(doc, name),
            container_spec.pod_spec(doc),
            scratch=tmp / f"{doc['kind'].lower()}-{doc['metadata']['name']}",
            volumes=_pod_volumes(doc, volume),
            secrets=all_secrets,
            config_maps=config_maps,
            host_env=host_env,
            **kwargs,
        )

    return localize


def start(
    rendered: Rendered,
    tmp: Path,
    *,
    secrets: Data = container_spec.EMPTY,
    host_env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> ServerPod:
    """Run the migration Job and the server pod of ``rendered`` with ``tmp/volume`` as volume."""
    volume = tmp / "volume"
    volume.mkdir(parents=True)
    localize = localizer(rendered, tmp, volume, secrets, host_env)
    deployment, job = rendered.one("Deployment"), rendered.one("Job")
    spec = container_spec.pod_spec(deployment)
    timings: dict[str, float] = {}

    # 1. The server pod comes first and must wait: the schema does not exist yet.
    init_names = [c["name"] for c in spec.get("initContainers", [])]
    wait = localize(deployment, init_names[0])
    wait_log = tmp / f"{wait.name}.log"
    with wait_log.open("w") as log:
        waiting = wait.popen(log)
    try:
        _wait_for(
            lambda: WAITING_MARKER in wait_log.read_text() or waiting.poll() is not None,
            120,
            "the schema wait",
            wait_log,
        )
        waited_for_job = waiting.poll() is None
        assert waited_for_job or waiting.returncode == 0, (
            f"wait-for-schema exited {waiting.returncode}:\n{wait_log.read_text()[-3000:]}"
        )

        # 2. The migration Job: its containers in order, each to completion.
        started = time.monotonic()
        for step in container_spec.containers(job):
            _run(localize(job, step["name"]), f"Job container {step['name']}", timeout)
        timings["migration_job_s"] = time.monotonic() - started

        # 3. Now the wait ends by itself.
        _wait_for(lambda: waiting.poll() is not None, 60, "the schema wait to end", wait_log)
    finally:
        container_spec.stop(waiting)
    assert waiting.returncode == 0, wait_log.read_text()
    for name in init_names[1:]:
        _run(localize(deployment, name), f"init container {name}", timeout)

    # 4. The server, from the main container.
    main = spec["containers"][0]
    server = localize(deployment, main["name"], replace=BIND_LOCALLY)
    port = main["ports"][0]["containerPort"]
    url = f"http://127.0.0.1:{port}"
    log_path = tmp / "server.log"
    started = time.monotonic()
    with log_path.open("w") as log:
        process = server.popen(log)
    pod = ServerPod(url, volume, server, process, log_path, timings, waited_for_job)
    try:
        _wait_for(
            lambda: is_healthy(url) or process.poll() is not None, timeout, "/health", log_path
        )
        assert process.poll() is None, f"server exited {process.returncode}:\n{pod.log()[-3000:]}"
    except BaseException:
        pod.stop()
        raise
    timings["server_start_s"] = time.monotonic() - started
    return pod


@contextmanager
def serving(
    rendered: Rendered,
    tmp: Path,
    *,
    secrets: Data = container_spec.EMPTY,
    host_env: Mapping[str, str] | None = None,
) -> Iterator[ServerPod]:
    """:func:`start`, then stop the server when the block ends; prints the startup figures."""
    pod = start(rendered, tmp, secrets=secrets, host_env=host_env)
    print(f"startup figures: {pod.timings}")  # shown with -s
    try:
        yield pod
    finally:
        pod.stop()


def without_proxying(command: list[str], artifact_root: Path) -> list[str]:
    """``command`` with artifacts written by clients to ``artifact_root`` instead of proxied."""
    at = command.index("--artifacts-destination")
    command = command[:at] + command[at + 2 :]
    command.remove("--serve-artifacts")
    return [*command, "--no-serve-artifacts", "--default-artifact-root", str(artifact_root)]


def launch(
    data_dir: Path,
    extra: list[str],
    env: Mapping[str, str] | None = None,
    proxy: bool = True,
    port: int | None = None,
) -> local_mlflow.LocalMlflowServer:
    """Start the development server (SQLite in ``data_dir``) with ``extra`` flags; no wait."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or local_mlflow.free_port()
    command = local_mlflow.server_command(data_dir, port)
    if not proxy:
        command = without_proxying(command, data_dir / "server-disk-artifacts")
    with (data_dir / "server.log").open("ab") as log:
        process = subprocess.Popen(
            [*command, *extra], stdout=log, stderr=subprocess.STDOUT, cwd=data_dir,
            env={**os.environ, **QUIET, **(env or {})},
        )  # fmt: skip
    return local_mlflow.LocalMlflowServer(f"http://127.0.0.1:{port}", data_dir, process)


def wait_healthy(*servers: local_mlflow.LocalMlflowServer, timeout: float = 180) -> None:
    """Wait until every server answers /health; stop them all and raise with a log otherwise."""
    deadline = time.monotonic() + timeout
    for server in servers:
        while not is_healthy(server.url):
            assert server.process is not None and server.data_dir is not None
            if server.process.poll() is not None or time.monotonic() > deadline:
                for each in servers:
                    each.stop()
                log = (server.data_dir / "server.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"MLflow server at {server.url} did not come up:\n{log}")
            time.sleep(0.3)
