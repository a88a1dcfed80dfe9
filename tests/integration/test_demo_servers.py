"""``make demo`` and ``make dev`` in one directory: every server stays stoppable, none share.

The sequence of issue 18: a ``make demo STORE=sqlite``, a ``make demo`` on one port, then a
``make dev`` on another, stopped by a signal; ``make demo-stop`` must still stop the demo's
server, after a lost record too, and no two servers may write one database. Each mode
keeps its own Dagster instance, so ``make dev``'s asset page starts empty instead of showing
the SQLite demo's materialization (which has no URL). Everything runs for real: the demo
module as ``make`` runs it, ``dagster dev``, MLflow servers, and the lines the commands
print, pasted as printed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from support.mlflow_servers import is_healthy
from support.pasted_commands import printed_lines, run_as_printed

from dagma.dev import local_mlflow
from dagma.dev.demo import PASTE

READY_TIMEOUT = 300
STOP_LIMIT = 15.0
ASSET_QUERY = """
{ assetOrError(assetKey: {path: ["train_model_stub"]}) {
    ... on Asset { assetMaterializations(limit: 5) { runId } } } }
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DAGSTER_"))}
    return {**env, "DO_NOT_TRACK": "true"}


def _demo(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "dagma.dev.demo", *args],
        cwd=cwd, env=_env(), capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _store_of(port: int) -> str:
    """The --backend-store-uri of the MLflow server answering on ``port``."""
    holder = local_mlflow.port_holder_pid(port)
    assert holder is not None, f"nothing listens on {port}"
    words = (local_mlflow.command_line(os.getpgid(holder)) or "").split()
    return words[words.index("--backend-store-uri") + 1]


def _materializations(dagster_url: str) -> list[dict]:
    request = urllib.request.Request(
        f"{dagster_url}/graphql",
        data=json.dumps({"query": ASSET_QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        asset = json.load(response)["data"]["assetOrError"]
    return asset.get("assetMaterializations", [])


def _start_dev(cwd: Path, mlflow_port: int, dagster_port: int) -> tuple[subprocess.Popen, Path]:
    log = cwd / "dev.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dagma.dev.demo", "--dev", "--port", str(mlflow_port),
             "--dagster-port", str(dagster_port)],
            cwd=cwd, env=_env(), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + READY_TIMEOUT
    while PASTE not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(f"make dev did not come up:\n{log.read_text()[-4000:]}")
        time.sleep(1)
    time.sleep(1)  # the two lines after the marker
    return process, log


def test_demo_and_dev_servers_stay_stoppable_and_never_share_a_database(tmp_path: Path) -> None:
    demo_port, dev_port, dagster_port = (local_mlflow.free_port() for _ in range(3))
    dagster_url = f"http://127.0.0.1:{dagster_port}"
    demo_record = tmp_path / ".mlflow-local" / f"port-{demo_port}" / "server.pid"
    try:
        _demo(tmp_path, "--store", "sqlite")
        _demo(tmp_path, "--port", str(demo_port))
        assert demo_record.exists()

        dev, log = _start_dev(tmp_path, dev_port, dagster_port)
        try:
            # Two servers, two databases, each in its port's directory.
            stores = {port: _store_of(port) for port in (demo_port, dev_port)}
            assert stores[demo_port] != stores[dev_port], stores
            for port, store in stores.items():
                assert store.endswith(f"/.mlflow-local/port-{port}/mlflow.db"), store
            # make dev's Dagster instance has none of the demos' materializations.
            assert _materializations(dagster_url) == []
            # The lines make dev printed check this very setup, pasted as printed.
            doctor, verify = printed_lines(log.read_text(), PASTE)
            checked = run_as_printed(doctor, tmp_path)
            assert checked.returncode == 0, checked.stdout + checked.stderr
            assert f"{dev_port}" in doctor and f"DAGSTER_UI_URL={dagster_url}" in doctor
            verified = run_as_printed(verify, tmp_path)
            assert verified.returncode == 0, verified.stdout + verified.stderr
            assert len(_materializations(dagster_url)) == 1
        finally:
            started = time.monotonic()
            os.killpg(dev.pid, signal.SIGINT)
            dev.wait(timeout=120)
        assert time.monotonic() - started < STOP_LIMIT, log.read_text()[-3000:]
        assert not local_mlflow.port_in_use(dev_port)
        # The demo's server and its record are untouched by make dev.
        assert is_healthy(f"http://127.0.0.1:{demo_port}") and demo_record.exists()

        # A lost record (as an older make dev deleted it): the next demo on that port records
        # the server again, since it serves that port's own database.
        demo_record.unlink()
        again = _demo(tmp_path, "--port", str(demo_port))
        assert (
            "reusing the MLflow server" in again.stdout
            and "make demo-stop stops it" in again.stdout
        )
        assert demo_record.exists()
    finally:
        stopped = _demo(tmp_path, "--stop")
    assert f"stopped the MLflow server at http://127.0.0.1:{demo_port}" in stopped.stdout
    assert not is_healthy(f"http://127.0.0.1:{demo_port}")
    assert not demo_record.exists()
    nothing_left = _demo(tmp_path, "--stop")
    assert "no MLflow server recorded" in nothing_left.stdout
