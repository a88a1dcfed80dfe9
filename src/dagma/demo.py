"""``make demo``: materialize ``train_model_stub`` through Dagster against a local MLflow server.

Starts a local MLflow server (SQLite, proxied artifacts under ``.mlflow-local/``)
unless one already answers on the port, runs ``dagster asset materialize`` with
tracking on, then reads the run back from MLflow and prints what it holds.
The server keeps running afterwards so the printed UI link works; a second
``make demo`` reuses it.
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

from dagma import devserver

PROJECT_ROOT = Path.cwd()
SERVER_DIR = PROJECT_ROOT / ".mlflow-local"
DAGSTER_HOME = PROJECT_ROOT / ".dagster-home"
PID_FILE = SERVER_DIR / "server.pid"
ASSET = "train_model_stub"


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def ensure_server(port: int) -> str:
    """URL of a healthy local MLflow server, starting a detached one if none answers."""
    url = f"http://127.0.0.1:{port}"
    if devserver.is_healthy(url):
        step(f"reusing the MLflow server already answering at {url}")
        return url
    step(f"starting a local MLflow server at {url} (data in {SERVER_DIR}; takes ~15 s)")
    SERVER_DIR.mkdir(exist_ok=True)
    log = (SERVER_DIR / "server.log").open("ab")
    # Detached: it outlives the demo so the run's UI link keeps working.
    server = subprocess.Popen(
        devserver.server_command(SERVER_DIR, port),
        stdout=log, stderr=subprocess.STDOUT, cwd=SERVER_DIR, start_new_session=True,
    )  # fmt: skip
    PID_FILE.write_text(str(server.pid))
    deadline = time.monotonic() + 120
    while not devserver.is_healthy(url):
        if time.monotonic() > deadline:
            sys.exit(f"MLflow server did not start; see {SERVER_DIR / 'server.log'}")
        time.sleep(0.5)
    return url


def stop_server() -> None:
    """Stop the server a previous demo started (its whole process group)."""
    if not PID_FILE.exists():
        step("no demo MLflow server recorded; nothing to stop")
        return
    pid = int(PID_FILE.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # wait until the whole group has exited
            os.killpg(pid, 0)
            time.sleep(0.2)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    step(f"stopped the demo MLflow server (pid {pid})")
    PID_FILE.unlink()


def materialize(url: str) -> None:
    """Run ``dagster asset materialize`` with tracking switched on."""
    step(f"materializing {ASSET} through Dagster with MLFLOW_USE_TRACKING=true")
    DAGSTER_HOME.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "MLFLOW_USE_TRACKING": "true",
        "MLFLOW_TRACKING_URI": url,
        "DAGSTER_HOME": str(DAGSTER_HOME),
    }
    command = [sys.executable, "-m", "dagster", "asset", "materialize",
               "-m", "dagma.definitions", "--select", ASSET]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"materialization failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")


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
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # keep the demo's output tidy
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    run = client.get_run(run_id)
    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(client.download_artifacts(run_id, "train_summary.txt", tmp)).read_text()
    print(f"\nMLflow run   {run_id}  ({run.info.status})")
    print(f"params       {run.data.params}")
    print(f"metrics      {run.data.metrics}")
    print("artifact     train_summary.txt:")
    print("".join(f"               {line}\n" for line in artifact.splitlines()), end="")
    print(f"UI           {url}/#/experiments/{run.info.experiment_id}/runs/{run_id}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--serve-only", action="store_true", help="only start the server")
    parser.add_argument("--stop", action="store_true", help="stop the server a demo started")
    args = parser.parse_args(argv)
    if args.stop:
        stop_server()
        return
    url = ensure_server(args.port)
    if args.serve_only:
        return
    materialize(url)
    step("reading the run back from MLflow")
    show_run(url, latest_mlflow_run_id())


if __name__ == "__main__":
    main()
