"""A real PostgreSQL server for the tests, standing in for the Dagster chart's database.

``initdb`` and ``pg_ctl`` come from PATH (this machine has them in
/usr/local/bin) or from Debian's postgresql package (/usr/lib/postgresql/*/bin).
The cluster lives in a fresh temp dir, listens on 127.0.0.1 on a free port
only, uses password authentication, and is stopped and deleted at the end.
PostgreSQL refuses to run as root, so as root the server runs as ``nobody``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from dagma.dev.local_mlflow import free_port
from support.tools import missing

HOW_TO_GET = "install Debian's postgresql package (apt-get install postgresql)"
UNPRIVILEGED_USER = "nobody"


def find_bin_dir() -> Path:
    """The directory holding initdb, pg_ctl and postgres (newest Debian version if not on PATH)."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: [int(n) for n in re.findall(r"\d+", p.parent.parent.name)],
    )
    if debian:
        return debian[-1].parent
    missing("PostgreSQL's initdb", HOW_TO_GET)
    raise AssertionError("unreachable: missing() skips or fails")


@dataclass
class PostgresServer:
    """A running PostgreSQL cluster and the database the tests use."""

    port: int
    user: str
    password: str
    database: str
    base_dir: Path
    bin_dir: Path
    run_as: str | None
    host: str = "127.0.0.1"

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        """The server log (pg_ctl -l)."""
        return self.base_dir / "postgres.log"

    @property
    def url(self) -> str:
        """A ``postgresql://`` URL for the test database (password included)."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    @property
    def psycopg2_url(self) -> str:
        """The URL as MLflow's image must be given it: SQLAlchemy 2.1 maps a bare
        ``postgresql://`` to psycopg 3, and the image has psycopg2."""
        return self.url.replace("postgresql://", "postgresql+psycopg2://", 1)

    def connect(self, database: str | None = None) -> psycopg2.extensions.connection:
        """A new psycopg2 connection to ``database`` (default: the test database)."""
        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database or self.database,
            connect_timeout=10,
        )

    def pg_ctl(self, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
        """Run ``pg_ctl -D <data> <args>`` as the cluster's owner."""
        command = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args]
        return _as_owner(command, self.run_as, timeout)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its files."""
        if (self.data_dir / "postmaster.pid").exists():
            self.pg_ctl("stop", "-m", "fast", "-w", "-t", "60")
        shutil.rmtree(self.base_dir, ignore_errors=True)


def _as_owner(
    command: list[str], run_as: str | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    if run_as is not None:
        command = ["runuser", "-u", run_as, "--", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def _fail(what: str, result: subprocess.CompletedProcess[str], log: Path | None) -> None:
    detail = (result.stderr or result.stdout).strip()
    if log is not None and log.exists():
        detail += "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    raise RuntimeError(f"{what} exited {result.returncode}:\n{detail}")


def start_postgres(database: str = "dagster", user: str = "dagster") -> PostgresServer:
    """initdb a fresh cluster, start it on 127.0.0.1:<free port>, create ``database``."""
    bin_dir = find_bin_dir()
    run_as = UNPRIVILEGED_USER if os.geteuid() == 0 else None
    base_dir = Path(tempfile.mkdtemp(prefix="dagma-postgres-"))
    server = PostgresServer(0, user, secrets.token_hex(12), database, base_dir, bin_dir, run_as)
    try:
        password_file = base_dir / "password"
        password_file.write_text(server.password + "\n")
        if run_as is not None:
            shutil.chown(base_dir, user=run_as)
            shutil.chown(password_file, user=run_as)
        initdb = _as_owner(
            [str(bin_dir / "initdb"), "--pgdata", str(server.data_dir), "--username", user,
             "--pwfile", str(password_file), "--auth", "scram-sha-256",
             "--encoding", "UTF8", "--locale", "C", "--no-sync"],
            run_as, timeout=120,
        )  # fmt: skip
        password_file.unlink()
        if initdb.returncode != 0:
            _fail("initdb", initdb, None)
        # A port can be taken between choosing and binding it: a few tries, each a new port.
        for _attempt in range(3):
            server.port = free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={server.port} "
                f"-c unix_socket_directories={base_dir} -c fsync=off"
            )
            started = server.pg_ctl("start", "-w", "-t", "60", "-l", str(server.log_path),
                                    "-o", options)  # fmt: skip
            if started.returncode == 0:
                break
        else:
            _fail("pg_ctl start", started, server.log_path)
        connection = server.connect("postgres")
        try:
            connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{database}"')
        finally:
            connection.close()
    except BaseException:
        server.stop()
        raise
    return server
