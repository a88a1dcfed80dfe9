"""``make demo`` and ``make dev``: dagma against a local MLflow server.

``make demo`` starts a local MLflow server (SQLite, proxied artifacts under
``.mlflow-local/port-<PORT>/``) unless one already answers on the port, runs ``dagster asset
materialize`` with tracking on, then reads the run back from MLflow and prints what it holds.
The server keeps running afterwards so the printed UI link works; a second ``make demo``
reuses it and ``make demo-stop`` stops it. ``make demo STORE=sqlite`` (``--store sqlite``)
needs no server: the run goes to a local SQLite store under ``.mlflow-local/local-store/``
and is read back from it.

``make dev`` (``--dev``) runs the same server and ``dagster dev``, both owned by this
process: Ctrl-C, or a SIGINT or SIGTERM to the process group from a script, stops dagster
dev (webserver, daemon, code server) and the MLflow server it started, and says so. A server
that was already running is left up (``make demo-stop`` stops it).

Each server's data and pid are kept per port (:mod:`dagma.dev.server_state`), and each mode
has its own Dagster instance under ``.dagster-home/`` (``demo-<PORT>``, ``demo-sqlite``,
``dev-<PORT>``): an asset page only ever shows materializations of the MLflow store it links to.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from dagma import example
from dagma.cli.endpoints import DEFAULT_DAGSTER_PORT, DEFAULT_MLFLOW_PORT
from dagma.dev import hints, local_mlflow
from dagma.dev.server_state import ServerState, recorded_servers
from dagma.settings import mlflow_client_variables

PROJECT_ROOT = Path.cwd()
SERVER_DIR = PROJECT_ROOT / ".mlflow-local"
DAGSTER_HOMES = PROJECT_ROOT / ".dagster-home"
LOCAL_STORE_URI = f"sqlite:///{SERVER_DIR / 'local-store' / 'mlflow.db'}"
ASSET = example.ASSET
SERVER_START_TIMEOUT = 120.0
DAGSTER_STOP_GRACE = 30.0  # dagster dev waits for its webserver and daemon to finish
PASTE = "check this setup from another shell (each line runs as printed):"


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def fail(message: str) -> NoReturn:
    """Stop with ``message`` on stderr and exit code 1 (no traceback)."""
    sys.exit(f"error: {message}")


def dagster_home(mode: str, store: str) -> Path:
    """The Dagster instance of one mode and MLflow store: ``.dagster-home/dev-5000``, ..."""
    home = DAGSTER_HOMES / f"{mode}-{store}"
    home.mkdir(parents=True, exist_ok=True)
    return home


def _next_free_port(port: int) -> int:
    return next(
        (p for p in range(port + 1, port + 100) if not local_mlflow.port_in_use(p)),
        local_mlflow.free_port(),
    )


def _port_taken(
    port: int, variable: str, target: str, settings: Mapping[str, object], why: str = ""
) -> NoReturn:
    error = local_mlflow.PortInUseError(port, local_mlflow.port_holder(port))
    retry = hints.make_command(target, {**settings, variable: _next_free_port(port)})
    fail(f"{error}{why}. Stop that process, or use another port: {retry}")


def ensure_server(
    port: int, target: str, settings: Mapping[str, object]
) -> local_mlflow.LocalMlflowServer:
    """A healthy local MLflow server on ``port``: the one answering there, or a new one.

    A new one runs in its own session (a Ctrl-C in the terminal does not reach it) and its
    pid is recorded under ``.mlflow-local/port-<PORT>/`` for ``make demo-stop``; so is one
    answering there that was started from that directory but whose record was lost.
    ``settings`` are the make variables the user gave, for the hint when the port is taken.
    """
    state = ServerState(SERVER_DIR, port)
    if local_mlflow.is_healthy(state.url):
        ours = state.recorded_pid() is not None or state.adopt_listener() is not None
        whose = (
            "make demo-stop stops it"
            if ours
            else "not started from this directory: make demo-stop leaves it alone"
        )
        step(f"reusing the MLflow server already answering at {state.url} ({whose})")
        return local_mlflow.LocalMlflowServer(url=state.url, data_dir=None, process=None)
    if local_mlflow.port_in_use(port):  # before starting anything: fail at once
        _port_taken(port, "MLFLOW_PORT", target, settings, ", and no MLflow server answers there")
    step(f"starting a local MLflow server at {state.url} (data in {state.data_dir}; usually ~15 s)")
    started = time.monotonic()
    try:
        server = local_mlflow.start(state.data_dir, port, SERVER_START_TIMEOUT, detached=True)
    except local_mlflow.PortInUseError:  # taken in the meantime
        _port_taken(port, "MLFLOW_PORT", target, settings)
    except local_mlflow.ServerStartError as error:
        fail(str(error))
    assert server.process is not None
    state.record(server.process.pid)
    step(f"the MLflow server is up ({time.monotonic() - started:.0f} s)")
    return server


def stop_servers() -> None:
    """Stop every server a demo or dev started here (each one's whole process group)."""
    states = list(recorded_servers(SERVER_DIR))
    if not states:
        step(f"no MLflow server recorded under {SERVER_DIR}; nothing to stop")
    for state in states:
        pid = state.recorded_pid()
        if pid is None:
            step(f"the MLflow server recorded for {state.url} is no longer running")
        else:
            local_mlflow.stop_process_group(pid)
            step(f"stopped the MLflow server at {state.url} (pid {pid})")
        state.forget()


def _tracking_settings(url: str, **extra: str) -> dict[str, str]:
    """The dagma settings the runs get: what ``dagma doctor`` must be given to check them."""
    return {"MLFLOW_USE_TRACKING": "true", "MLFLOW_TRACKING_URI": url, **extra}


def _process_env(settings_env: Mapping[str, str], home: Path) -> dict[str, str]:
    return {**os.environ, **settings_env, "DAGSTER_HOME": str(home)}


def materialize(settings_env: Mapping[str, str], home: Path) -> None:
    """Run ``dagster asset materialize`` with tracking switched on."""
    step(f"materializing {ASSET} through Dagster with MLFLOW_USE_TRACKING=true (~20 s)")
    command = [sys.executable, "-m", "dagster", "asset", "materialize",
               "-m", "dagma.definitions", "--select", ASSET]  # fmt: skip
    result = subprocess.run(
        command, env=_process_env(settings_env, home), capture_output=True, text=True
    )
    if result.returncode != 0:
        fail(
            f"materialization failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}\n"
            f"To see why: {hints.doctor_command(settings_env)} --write-test"
        )


def latest_mlflow_run_id(home: Path) -> str:
    """The MLflow run id Dagster recorded on the newest materialization in instance ``home``."""
    from dagster import AssetKey, DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
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


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _print_paste_lines(*commands: str) -> None:
    step(PASTE)
    print("".join(f"      {command}\n" for command in commands), end="", flush=True)


def dev(mlflow_port: int, dagster_port: int) -> int:
    """MLflow server plus ``dagster dev`` until interrupted; then stop what this started."""
    settings = {"MLFLOW_PORT": mlflow_port, "DAGSTER_PORT": dagster_port}
    if local_mlflow.port_in_use(dagster_port):
        _port_taken(dagster_port, "DAGSTER_PORT", "dev", settings)
    server = ensure_server(mlflow_port, "dev", settings)
    dagster_url = f"http://127.0.0.1:{dagster_port}"
    settings_env = _tracking_settings(server.url, DAGSTER_UI_URL=dagster_url)
    step(f"starting dagster dev at {dagster_url} (usually ~30 s); Ctrl-C stops it")
    if server.process is None:
        step("that MLflow server was already running: it stays up (make demo-stop stops it)")
    # Before the start: a handler set in Python is reset to the default at exec, while an
    # ignored signal stays ignored. A script's background job starts with SIGINT ignored,
    # which dagster dev would inherit and then ignore SIGINT and SIGTERM both (it maps one
    # to the other), until it is killed.
    _interrupt_once()
    # Its own process group: the terminal's Ctrl-C reaches only this process, which
    # then interrupts dagster dev once (a second interrupt cuts its clean-up short).
    dagster = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-m", "dagma.definitions",
         "-p", str(dagster_port)],
        env=_process_env(settings_env, dagster_home("dev", str(mlflow_port))),
        start_new_session=True,
    )  # fmt: skip
    try:
        announced = False
        while dagster.poll() is None:
            if not announced and _answers(f"{dagster_url}/server_info"):
                announced = True
                step(f"dagster dev is up at {dagster_url}, MLflow at {server.url}")
                _print_paste_lines(
                    hints.doctor_command(settings_env),
                    hints.verify_command(dagster_url, server.url),
                )
            time.sleep(0.5)
        code = dagster.returncode
        step(f"dagster dev exited with code {code}")
    except KeyboardInterrupt:
        code = 0
    finally:
        step("stopping dagster dev (webserver, daemon, code server)")
        started = time.monotonic()
        clean = local_mlflow.stop_process_group(
            dagster.pid, signal.SIGINT, DAGSTER_STOP_GRACE, child=dagster
        )
        took = f"{time.monotonic() - started:.1f} s"
        step(f"dagster dev stopped ({took}" + (")" if clean else ", killed what was left)"))
        if server.process is not None:
            server.stop()
            ServerState(SERVER_DIR, mlflow_port).forget()
            step(f"stopped the MLflow server at {server.url}")
    return code


def _interrupt_once() -> None:
    """From now on the first SIGINT or SIGTERM raises KeyboardInterrupt; later ones are ignored.

    The terminal and ``uv run`` may both deliver one Ctrl-C, and a script's signal to the
    process group reaches this process directly and through ``uv run``; the clean-up the
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


def demo(port: int, store: str) -> None:
    """One tracked materialization, read back and printed, with the lines to check it."""
    if store == "sqlite":
        url = LOCAL_STORE_URI
        step(f"no server: runs go to the local store {url}")
    else:
        url = ensure_server(port, "demo", {"MLFLOW_PORT": port}).url
    settings_env = _tracking_settings(url)
    home = dagster_home("demo", "sqlite" if store == "sqlite" else str(port))
    materialize(settings_env, home)
    step("reading the run back from MLflow")
    show_run(url, latest_mlflow_run_id(home))
    _print_paste_lines(hints.doctor_command(settings_env))
    print("      (dagma verify needs a Dagster webserver: make dev prints its line)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--port", type=int, default=DEFAULT_MLFLOW_PORT, help="the MLflow server's port"
    )
    parser.add_argument(
        "--stop", action="store_true", help="stop every server make demo or make dev started"
    )
    parser.add_argument("--dev", action="store_true", help="run dagster dev until interrupted")
    parser.add_argument(
        "--dagster-port", type=int, default=DEFAULT_DAGSTER_PORT, help="dagster dev's port"
    )
    parser.add_argument(
        "--store", choices=["server", "sqlite"], default="server",
        help="sqlite: no server, a local SQLite store under .mlflow-local/local-store/",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.stop:
        stop_servers()
    elif args.dev:
        sys.exit(dev(args.port, args.dagster_port))
    else:
        demo(args.port, args.store)


if __name__ == "__main__":
    main()
