"""A Docker engine for the tests: the one already answering, or a ``dockerd`` the tests start.

When no engine answers and we are root, the session starts ``dockerd`` as its
own child (log in a temp file) and stops it by its pid at the end. Test
sessions may run concurrently on one machine (several checkouts, several
people); they share that dockerd instead of racing to start it or stopping it
under each other: every session holds a shared lock on a "users" file while
it uses the engine, and the last one out stops it (pid in /run/dagma-tests).
An engine the tests did not start is never stopped.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.container.cli import DEFAULT_HOST, HOW_TO_GET_DOCKER, Docker, pick_client
from support.tools import missing, require_executable

# Flags for the dockerd the tests start. Every container the tests run (and every
# build) uses --network host and talks to 127.0.0.1 only, so the engine needs no
# network of its own:
#   --bridge=none          no docker0 bridge and no 172.17.x address to send traffic to;
#   --iptables=false ...   leave the host's firewall and sysctls alone (by default dockerd
#                          sets the FORWARD policy to DROP and adds NAT rules).
# The storage driver is left to dockerd's own detection: overlay2 works on this
# machine's ext4, and dockerd falls back to vfs by itself where overlay is missing.
# Default data root (/var/lib/docker): images and build cache survive between runs.
DOCKERD_FLAGS = (
    f"--host={DEFAULT_HOST}",
    "--bridge=none",
    "--iptables=false",
    "--ip6tables=false",
    "--ip-masq=false",
    "--ip-forward=false",
)
STATE_DIR = Path("/run/dagma-tests")
START_LOCK = STATE_DIR / "dockerd-start.lock"  # held while checking/starting/stopping
USERS_LOCK = STATE_DIR / "dockerd-users.lock"  # shared by every session using it
PID_FILE = STATE_DIR / "dockerd.pid"  # "<pid>\n<log path>\n" of the test-started dockerd


@contextmanager
def exclusive_lock(path: Path, timeout: float = 300.0) -> Iterator[None]:
    """Hold an exclusive flock on ``path``, waiting at most ``timeout`` seconds."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} stayed locked for {timeout:.0f} s") from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _recorded_dockerd() -> tuple[int, Path] | None:
    """The pid and log of the dockerd a test session started, if it still runs."""
    try:
        pid_text, log_text = (PID_FILE.read_text().splitlines() + ["", ""])[:2]
        pid = int(pid_text)
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ValueError):
        return None
    return (pid, Path(log_text)) if comm == "dockerd" and _alive(pid) else None


def _terminate(pid: int, process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM ``pid``, SIGKILL it after ``timeout`` s; reap it if it is our child."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        if not _alive(pid):
            break
        os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while _alive(pid) and time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                break
            time.sleep(0.2)
    if process is not None:
        process.poll()


@dataclass
class Lease:
    """This session's share of a dockerd the tests started (here or in another session)."""

    users_fd: int
    pid: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None  # set in the session that started it

    def release(self, timeout: float = 30.0) -> None:
        """Leave; as the last session out, stop the dockerd by its pid."""
        with exclusive_lock(START_LOCK):  # nobody joins while we decide
            try:
                fcntl.flock(self.users_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self.users_fd)  # another session still uses it: it stops it
                return
            try:
                _terminate(self.pid, self.process, timeout)
                PID_FILE.unlink(missing_ok=True)
                self.log_path.unlink(missing_ok=True)
            finally:
                os.close(self.users_fd)


@dataclass
class Engine:
    """The engine the tests use; ``lease`` is set when it is a dockerd the tests started."""

    docker: Docker
    version: str
    started_in: float | None = None  # seconds, when this session started dockerd
    lease: Lease | None = None

    @property
    def started_by_tests(self) -> bool:
        """Whether the engine is a dockerd started by the tests (with DOCKERD_FLAGS)."""
        return self.lease is not None

    def stop(self) -> None:
        """Release the engine: the last session using a test-started dockerd stops it."""
        if self.lease is not None:
            self.lease.release()
            self.lease = None


def _log_tail(path: Path, lines: int = 30) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def start_dockerd(docker: Docker, timeout: float = 60.0) -> tuple[subprocess.Popen[bytes], Path]:
    """Start dockerd in the background and wait until it answers; fail with its log if not."""
    dockerd = require_executable("dockerd", HOW_TO_GET_DOCKER)
    fd, log_name = tempfile.mkstemp(prefix="dagma-dockerd-", suffix=".log")
    log_path = Path(log_name)
    with os.fdopen(fd, "wb") as log:
        # Own session: a Ctrl-C reaches pytest, whose teardown then stops dockerd cleanly.
        process = subprocess.Popen(
            [dockerd, *DOCKERD_FLAGS],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if docker.server_version(timeout=5):
            return process, log_path
        time.sleep(0.5)
    exit_code = process.poll()
    _terminate(process.pid, process, 10.0)
    if exit_code is None:
        state = f"did not answer within {timeout:.0f} s"
    else:
        state = f"exited with code {exit_code}"
    pytest.fail(
        f"Could not start a Docker engine: `{dockerd} {' '.join(DOCKERD_FLAGS)}` {state}.\n"
        f"Last lines of its log ({log_path}):\n{_log_tail(log_path)}",
        pytrace=False,
    )


def _join_or_start(docker: Docker) -> Engine:
    """As root on the default socket: share a test-started dockerd, or start one."""
    STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    with exclusive_lock(START_LOCK):
        users_fd = os.open(USERS_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(users_fd, fcntl.LOCK_SH)
            version = docker.server_version()
            recorded = _recorded_dockerd()
            if version and recorded is None:
                os.close(users_fd)  # an engine the tests did not start: never ours to stop
                return Engine(docker, version)
            if version and recorded is not None:
                return Engine(docker, version, lease=Lease(users_fd, *recorded))
            began = time.monotonic()
            process, log_path = start_dockerd(docker)
            PID_FILE.write_text(f"{process.pid}\n{log_path}\n")
            lease = Lease(users_fd, process.pid, log_path, process)
            version = docker.server_version() or "unknown"
            return Engine(docker, version, time.monotonic() - began, lease)
        except BaseException:
            os.close(users_fd)
            raise


def ensure_engine() -> Engine:
    """The engine at $DOCKER_HOST (default socket) if it answers; else one we start (root only)."""
    host = os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    docker = Docker(pick_client(), host)
    if host == DEFAULT_HOST and os.geteuid() == 0:
        return _join_or_start(docker)
    version = docker.server_version()
    if version:
        return Engine(docker, version)
    if host != DEFAULT_HOST:
        pytest.fail(
            f"No Docker engine answers at DOCKER_HOST={host}: start it, or unset DOCKER_HOST "
            "to let the tests start dockerd on the default socket.",
            pytrace=False,
        )
    missing(
        "a running Docker engine",
        "start dockerd (e.g. `sudo systemctl start docker`) or run the tests as root, "
        "which lets them start dockerd themselves",
    )
    raise AssertionError("unreachable: missing() skips or fails")
