"""``make demo`` and ``make dev``: dagma against a local MLflow server.

``make demo`` starts a local MLflow server (SQLite, proxied artifacts under
``.mlflow-local/``) unless one already answers on the port, runs ``dagster asset
materialize`` with tracking on, then reads the run back from MLflow and prints
what it holds. The server keeps running afterwards so the printed UI link works;
a second ``make demo`` reuses it and ``make demo-stop`` stops it. ``make demo
STORE=sqlite`` (``--store sqlite``) needs no server: the run goes to a local SQLite
store under ``.mlflow-local/local-store/`` and is read back from it.

``make dev`` (``--dev``) runs the same server and ``dagster dev``, both owned by
this process: Ctrl-C stops dagster dev (webserver, daemon, code server) and the
MLflow server it started, and says so. A server that was already running is left
up (``make demo-stop`` stops it).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

from dagma import example
from dagma.dev import local_mlflow
from dagma.settings import mlflow_client_variables

PROJECT_ROOT = Path.cwd()
SERVER_DIR = PROJECT_ROOT / ".mlflow-local"
DAGSTER_HOME = PROJECT_ROOT / ".dagster-home"
PID_FILE = SERVER_DIR / "server.pid"
ASSET = example.ASSET
SERVER_START_TIMEOUT = 120.0
DAGSTER_STOP_GRACE = 60.0  # dagster dev waits for its webserver and daemon to finish


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def fail(message: str) -> NoReturn:
    """Stop with ``message`` on stderr and exit code 1 (no traceback)."""
    sys.exit(f"error: {message}")


def _next_free_port(port: int) -> int:
    return next(
        (p for p in range(port + 1, port + 100) if not local_mlflow.port_in_use(p)),
        local_mlflow.free_port(),
    )


def _port_taken(port: int, variable: str, target: str, why: str = "") -> NoReturn:
    error = local_mlflow.PortInUseError(port, local_mlflow.port_holder(port))
    fail(
        f"{error}{why}. Stop that process, or use another port: "
        f"make {target} {variable}={_next_free_port(port)}"
    )


def ensure_server(port: int, target: str = "demo") -> local_mlflow.LocalMlflowServer:
    """A healthy local MLflow server on ``port``: the one answering there, or a new one.

    A new one runs in its own session (a Ctrl-C in the terminal does not reach it)
    and its pid goes to ``.mlflow-local/server.pid`` for ``make demo-stop``.
    """
    url = f"http://127.0.0.1:{port}"
    if local_mlflow.is_healthy(url):
        step(f"reusing the MLflow server already answering at {url}")
        return local_mlflow.LocalMlflowServer(url=url, data_dir=None, process=None)
    if local_mlflow.port_in_use(port):  # before starting anything: fail at once
        _port_taken(port, "MLFLOW_PORT", target, ", and no MLflow server answers there")
    step(f"starting a local MLflow server at {url} (data in {SERVER_DIR}; usually ~15 s)")
    started = time.monotonic()
    try:
        server = local_mlflow.start(SERVER_DIR, port, SERVER_START_TIMEOUT, detached=True)
    except local_mlflow.PortInUseError:  # taken in the meantime
        _port_taken(port, "MLFLOW_PORT", target)
    except local_mlflow.ServerStartError as error:
        fail(str(error))
    assert server.process is not None
    PID_FILE.write_text(str(server.process.pid))
    step(f"the MLflow server is up ({time.monotonic() - started:.0f} s)")
    return server


def stop_server() -> None:
    """Stop the server a previous demo started (its whole process group)."""
    if not PID_FILE.exists():
        step("no demo MLflow server recorded; nothing to stop")
        return
    pid = int(PID_FILE.read_text())
    local_mlflow.stop_process_group(pid)
    step(f"stopped the demo MLflow server (pid {pid})")
    PID_FILE.unlink()


def _tracking_env(url: str, **extra: str) -> dict[str, str]:
    DAGSTER_HOME.mkdir(exist_ok=True)
    return {
        **os.environ,
        "MLFLOW_USE_TRACKING": "true",
        "MLFLOW_TRACKING_URI": url,
        "DAGSTER_HOME": str(DAGSTER_HOME),
        **extra,
    }


def materialize(url: str) -> None:
    """Run ``dagster asset materialize`` with tracking switched on."""
    step(f"materializing {ASSET} through Dagster with MLFLOW_USE_TRACKING=true (~20 s)")
    command = [sys.executable, "-m", "dagster", "asset", "materialize",
               "-m", "dagma.definitions", "--select", ASSET]  # fmt: skip
    result = subprocess.run(command, env=_tracking_env(url), capture_output=True, text=True)
    if result.returncode != 0:
        fail(
            f"materialization failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}\n"
            f"To see why: MLFLOW_USE_TRACKING=true MLFLOW_TRACKING_URI={url} "
            "uv run dagma doctor --write-test"
        )


def latest_mlflow_run_id() -> str:
    """The MLflow run id Dagster recorded on the newest materialization."""
    from dagster import AssetKey, DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(DAGSTER_HOME))) as instance:
        event = instance.get_latest_materialization_event(AssetKey(ASSET))
    assert event is not None and event.asset_materialization is not None
    return str(event.asset_materialization.metadata["mlflow_run_id"].value)


def show_run(url: str, run_id: str) -> None:
    """Print the run as MLflow stores it: params, metrics, the artifact, the UI link."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    run = client.get_run(run_id)
    quiet = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}  # keep the demo's output tidy
    with mlflow_client_variables(quiet, replace=True), tempfile.TemporaryDirectory() as tmp:
        summary = client.download_artifacts(run_id, example.SUMMARY_FILE, tmp)
        artifact = Path(summary).read_text()
    print(f"\nMLflow run   {run_id}  ({run.info.status})")
    print(f"params       {run.data.params}")
    print(f"metrics      {run.data.metrics}")
    print(f"artifact     {example.SUMMARY_FILE}:")
    print("".join(f"               {line}\n" for line in artifact.splitlines()), end="")
    if url.startswith("sqlite:"):  # no server: MLflow's UI opens the store itself
        print(f"UI           {local_mlflow.ui_command(url)}")
    else:
        print(f"UI           {url}/#/experiments/{run.info.experiment_id}/runs/{run_id}")


def dev(mlflow_port: int, dagster_port: int) -> int:
    """MLflow server plus ``dagster dev`` until Ctrl-C; then stop what this started."""
    if local_mlflow.port_in_use(dagster_port):
        _port_taken(dagster_port, "DAGSTER_PORT", "dev")
    server = ensure_server(mlflow_port, target="dev")
    dagster_url = f"http://127.0.0.1:{dagster_port}"
    step(f"starting dagster dev at {dagster_url} (usually ~30 s); Ctrl-C stops it")
    if server.process is None:
        step("that MLflow server was already running: it stays up (make demo-stop stops it)")
    # Its own process group: the terminal's Ctrl-C reaches only this process, which
    # then interrupts dagster dev once (a second interrupt cuts its clean-up short).
    dagster = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-m", "dagma.definitions",
         "-p", str(dagster_port)],
        env=_tracking_env(server.url, DAGSTER_UI_URL=dagster_url), start_new_session=True,
    )  # fmt: skip
    _interrupt_once()
    try:
        code = dagster.wait()
        step(f"dagster dev exited with code {code}")
    except KeyboardInterrupt:
        code = 0
    finally:
        step("stopping dagster dev (webserver, daemon, code server)")
        clean = local_mlflow.stop_process_group(
            dagster.pid, signal.SIGINT, DAGSTER_STOP_GRACE, child=dagster
        )
        step("dagster dev stopped" + ("" if clean else " (killed what was left)"))
        if server.process is not None:
            server.stop()
            PID_FILE.unlink(missing_ok=True)
            step(f"stopped the MLflow server at {server.url}")
    return code


def _interrupt_once() -> None:
    """From now on the first SIGINT or SIGTERM raises KeyboardInterrupt; later ones are ignored.

    The terminal and ``uv run`` may both deliver one Ctrl-C; the clean-up the
    first one starts must not be cut short by the second.
    """
    interrupted = False

    def handler(signum: int, frame: object) -> None:
        nonlocal interrupted
        if not interrupted:
            interrupted = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=5000, help="the MLflow server's port")
    parser.add_argument("--stop", action="store_true", help="stop the server a demo started")
    parser.add_argument("--dev", action="store_true", help="run dagster dev until Ctrl-C")
    parser.add_argument("--dagster-port", type=int, default=3000, help="dagster dev's port")
    parser.add_argument(
        "--store", choices=["server", "sqlite"], default="server",
        help="sqlite: no server, a local SQLite store under .mlflow-local/local-store/",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.stop:
        stop_server()
        return
    if args.dev:
        sys.exit(dev(args.port, args.dagster_port))
    if args.store == "sqlite":
        url = f"sqlite:///{SERVER_DIR / 'local-store' / 'mlflow.db'}"
        step(f"no server: runs go to the local store {url}")
    else:
        url = ensure_server(args.port).url
    materialize(url)
    step("reading the run back from MLflow")
    show_run(url, latest_mlflow_run_id())


if __name__ == "__main__":
    main()
