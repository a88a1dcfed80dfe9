"""One directory per port for each local MLflow server ``make demo`` and ``make dev`` start.

``.mlflow-local/port-<PORT>/`` holds that server's SQLite database, its artifacts, its log and
its pid (``server.pid``). Two servers therefore never share a database, and starting or
stopping one never touches another's record: ``make demo-stop`` stops every server recorded
here, whatever ran in between. A recorded pid is only acted on while that process is still
the MLflow server of its directory (a pid the system reused is forgotten, not killed).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dagma.dev import local_mlflow

PORT_DIR_PREFIX = "port-"
PID_FILE_NAME = "server.pid"


@dataclass(frozen=True)
class ServerState:
    """The data and the pid record of the local MLflow server on one port."""

    root: Path  # .mlflow-local/
    port: int

    @property
    def data_dir(self) -> Path:
        """Where this port's server keeps its database, artifacts and log."""
        return self.root / f"{PORT_DIR_PREFIX}{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / PID_FILE_NAME

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def record(self, pid: int) -> None:
        """Remember ``pid`` (the server's process group leader) for ``make demo-stop``."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{pid}\n")

    def forget(self) -> None:
        self.pid_file.unlink(missing_ok=True)

    def recorded_pid(self) -> int | None:
        """The recorded pid while it is still this directory's MLflow server, else None."""
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        return pid if self.is_ours(pid) else None

    def is_ours(self, pid: int) -> bool:
        """Whether ``pid`` is an ``mlflow server`` whose store lies in this port's directory."""
        command = local_mlflow.command_line(pid)
        store = f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"
        return command is not None and "mlflow" in command and store in command

    def adopt_listener(self) -> int | None:
        """Record the server answering on the port when it is this directory's, e.g. after an
        older ``make dev`` deleted the record; its pid, or None when it is someone else's."""
        holder = local_mlflow.port_holder_pid(self.port)
        if holder is None:
            return None
        try:
            leader = os.getpgid(holder)  # servers run detached: the group is the server
        except ProcessLookupError:
            return None
        if not self.is_ours(leader):
            return None
        self.record(leader)
        return leader


def recorded_servers(root: Path) -> Iterator[ServerState]:
    """Each port with a pid record under ``root`` (``.mlflow-local/``), by port."""
    if not root.is_dir():
        return
    ports = (path.parent.name.removeprefix(PORT_DIR_PREFIX)
             for path in root.glob(f"{PORT_DIR_PREFIX}*/{PID_FILE_NAME}"))  # fmt: skip
    for port in sorted(int(port) for port in ports if port.isdigit()):
        yield ServerState(root, port)
