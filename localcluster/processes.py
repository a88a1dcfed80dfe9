"""Host processes of the cluster, each started in its own session with a pid file and a log.

Every component is stopped by the pid it was started with (recorded in
``.cluster/run/<name>.pid`` together with its start time, so a recycled pid is never
signalled), never by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (field 22 of /proc/<pid>/stat), if it runs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


@dataclass(frozen=True)
class Process:
    """One component: its name, command line and where its pid and log live."""

    name: str
    argv: Sequence[str]
    run_dir: Path
    log_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The recorded pid, if that very process still runs."""
        try:
            pid_text, started = self.pid_file.read_text().split()
            pid = int(pid_text)
        except (FileNotFoundError, ValueError):
            return None
        return pid if _start_time(pid) == started else None

    def start(self, pass_fds: Sequence[int] = ()) -> int:
        """Start it in the background unless it already runs; return its pid."""
        running = self.pid()
        if running:
            return running
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives `make cluster-up`; stopped by cluster-down
                pass_fds=tuple(pass_fds),
            )
        self.pid_file.write_text(f"{process.pid} {_start_time(process.pid)}\n")
        return process.pid

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s; forget the pid."""
        pid = self.pid()
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            if pid is None or self.pid() is None:
                break
            os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while self.pid() is not None and time.monotonic() < deadline:
                time.sleep(0.2)
        self.pid_file.unlink(missing_ok=True)

    def log_tail(self, lines: int = 25) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def wait_until(
    what: str, check: Callable[[], bool], process: Process | None, timeout: float = 120.0
) -> float:
    """Poll ``check`` until true; fail with the process's log when it dies or time runs out."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if check():
            return time.monotonic() - began
        if process is not None and process.pid() is None:
            raise RuntimeError(
                f"{process.name} exited while waiting for {what}; "
                f"last lines of {process.log_file}:\n{process.log_tail()}"
            )
        time.sleep(0.5)
    tail = f"; last lines of {process.log_file}:\n{process.log_tail()}" if process else ""
    raise TimeoutError(f"{what} not reached within {timeout:.0f} s{tail}")
