"""dagma against a server with MLflow's basic auth, beside the same server without it.

Production turns on ``--app-name basic-auth``: every request then carries a login, and the
server checks it (and the user's permission) before answering. Two local servers started
here, one plain and one with basic auth (the run's login is its admin, as production's run
pods log in with the admin Secret), and for each: the requests of dagma's first and later
materialization in a fresh process, by endpoint, and the wall time per materialization in
this process, the two servers alternating.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.contenders import EXPERIMENT, build_job, materialize_once
from dagma.dev import local_mlflow
from dagma.settings import mlflow_client_variables

ROOT = Path(__file__).parent.parent
ADMIN = "dagma-bench-admin"
LOGIN_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
START_TIMEOUT = 180.0


def _start(data_dir: Path, extra: list[str], env: dict[str, str]) -> local_mlflow.LocalMlflowServer:
    """The development server with ``extra`` flags, healthy."""
    port = local_mlflow.free_port()
    log = (data_dir / "server.log").open("ab")
    process = subprocess.Popen(
        [*local_mlflow.server_command(data_dir, port), *extra],
        stdout=log, stderr=subprocess.STDOUT, cwd=data_dir,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **env},
    )  # fmt: skip
    server = local_mlflow.LocalMlflowServer(f"http://127.0.0.1:{port}", data_dir, process)
    deadline = time.monotonic() + START_TIMEOUT
    while not local_mlflow.is_healthy(server.url):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            tail = (data_dir / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"MLflow server ({' '.join(extra)}) did not come up:\n{tail}")
        time.sleep(0.3)
    return server


def _requests(url: str) -> dict:
    """dagma's first and later materialization in a fresh process, by endpoint."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.first_in_process", "dagma", url],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    return {**counts, "first_total": sum(counts["first"].values()),
            "later_total": sum(counts["later"].values())}  # fmt: skip


def measure(repeats: int) -> dict:
    """Requests and wall time per materialization with basic auth on and off."""
    from mlflow import MlflowClient

    password = uuid.uuid4().hex
    logins = {"off": {}, "on": dict(zip(LOGIN_VARIABLES, (ADMIN, password), strict=True))}
    auth_env = {"MLFLOW_AUTH_ADMIN_USERNAME": ADMIN, "MLFLOW_AUTH_ADMIN_PASSWORD": password,
                "MLFLOW_FLASK_SERVER_SECRET_KEY": uuid.uuid4().hex}  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="dagma-bench-auth-"))
    servers = {}
    try:
        for name, extra, env in (("off", [], {}), ("on", ["--app-name", "basic-auth"], auth_env)):
            (root / name).mkdir()
            servers[name] = _start(root / name, extra, env)
        results: dict = {"requests": {}, "seconds": {}, "repeats": repeats}
        jobs = {}
        for name, server in servers.items():
            with mlflow_client_variables(logins[name], replace=True):
                MlflowClient(server.url).create_experiment(EXPERIMENT)
                results["requests"][name] = _requests(server.url)
                jobs[name] = build_job("dagma", server.url)
                materialize_once(jobs[name])  # warm: the experiment lookup, first-run caches
        samples: dict[str, list[float]] = {name: [] for name in servers}
        for round_ in range(repeats):
            for name in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
                with mlflow_client_variables(logins[name], replace=True):
                    started = time.perf_counter()
                    materialize_once(jobs[name])
                    samples[name].append(time.perf_counter() - started)
        results["seconds"] = {
            name: {"median": statistics.median(s), "min": min(s), "max": max(s)}
            for name, s in samples.items()
        }
        on, off = (results["seconds"][n]["median"] for n in ("on", "off"))
        results["on_over_off"] = on / off
        return results
    finally:
        for server in servers.values():
            server.stop()
