"""Local MLflow stores (``file://``, ``sqlite://``): every rule dagma applies to them, in one place.

A local store is written by the MLflow client itself, with no server. Its rules:
the URI names an absolute path (run pods and ``dagster dev`` work in different
directories); ``file://`` needs MLflow 3's opt-in (``sqlite://`` needs SQLAlchemy and
Alembic, which Dagster, a dependency of dagma, always installs); a SQLite store keeps its
artifacts beside the database; the path must exist or be creatable, and be writable.
:mod:`dagma.settings` refuses a bad URI with :func:`uri_problem` and
:func:`setup_problem`, the tracking resource and ``dagma doctor --write-test`` open a
SQLite store with :func:`open_sqlite_store`, and ``dagma doctor`` reports :func:`path_findings`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

SCHEMES = ("file", "sqlite")
SQLITE_FORM = "sqlite:////ABSOLUTE/PATH/mlflow.db (four slashes before an absolute path)"
FILE_FORM = "file:///ABSOLUTE/PATH/mlruns"
ARTIFACTS_DIR = "mlartifacts"  # beside the SQLite database


def is_local_store(uri: str) -> bool:
    """Whether ``uri`` is a ``file://`` or ``sqlite://`` store."""
    return urlparse(uri).scheme in SCHEMES


def is_sqlite(uri: str) -> bool:
    """Whether ``uri`` is a SQLite database store."""
    return urlparse(uri).scheme == "sqlite"


def store_path(uri: str) -> PurePosixPath:
    """The directory (``file://``) or database file (``sqlite://``) a local store URI names."""
    if is_sqlite(uri):
        # SQLAlchemy's form: sqlite:/// then the path, so an absolute one has four slashes.
        return PurePosixPath(unquote(uri.split(":///", 1)[1].split("?", 1)[0]))
    return PurePosixPath(unquote(urlparse(uri).path))


def uri_problem(uri: str, alternatives: str) -> str | None:
    """Why a local store URI names no usable store (None when it does); ``alternatives``
    lists the other forms, for a URI that reads as something else."""
    parsed = urlparse(uri)
    if parsed.scheme == "file" and parsed.netloc:
        return (
            f"{parsed.netloc!r} after file:// is read as a host name, not a path. "
            f"Write file:///ABSOLUTE/PATH (three slashes), or use {alternatives}."
        )
    path = store_path(uri)
    if not path.is_absolute() or str(path) == "/":
        example = SQLITE_FORM if is_sqlite(uri) else FILE_FORM
        return (
            f"{str(path)!r} is not an absolute path to a store, and run pods and "
            f"`dagster dev` work in different directories. Write it as {example}."
        )
    return None


def setup_problem(uri: str, variable: str, allow_file_store: bool) -> str | None:
    """What the store needs before its first run and lacks: MLflow's opt-in for ``file://``.
    None when nothing is missing."""
    if not is_sqlite(uri) and not allow_file_store:
        database = store_path(uri).parent / "mlflow.db"
        return (
            f"{variable}={uri!r} is MLflow's file store, which MLflow 3 refuses unless "
            "MLFLOW_ALLOW_FILE_STORE=true. Either set MLFLOW_ALLOW_FILE_STORE=true, or use "
            f"the SQLite store MLflow recommends: {variable}=sqlite:///{database}."
        )
    return None


def open_sqlite_store(uri: str) -> Any:
    """MLflow's database store for ``sqlite:///…``, with artifacts kept next to the database file.

    MLflow's client would put them under ./mlruns of whatever directory the
    process happens to run in (and record that path for the Default experiment
    when it creates the database), which differs between run pods and `dagster dev`.
    Opening it creates the database (and its Default experiment) on first use.
    """
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    database = Path(store_path(uri))
    database.parent.mkdir(parents=True, exist_ok=True)
    return SqlAlchemyStore(uri, str(database.parent / ARTIFACTS_DIR))


@dataclass(frozen=True)
class Finding:
    """One rule checked on this machine: ``name`` is doctor's check, ``found`` what was seen."""

    name: str
    ok: bool
    found: str
    fix: str = ""


def path_findings(uri: str, source: str, allow_file_store: bool) -> list[Finding]:
    """MLflow's file-store opt-in, then the path: exists (or can be made), and is writable.

    Only looks: nothing is created. ``source`` names where the URI came from, for fixes.
    """
    path = Path(store_path(uri))
    if is_sqlite(uri):
        return [_sqlite_path(path, source)]
    if not allow_file_store:
        # Settings refuse this only while tracking is on; say it before it is switched on.
        return [
            Finding(
                "file-store",
                False,
                f"{uri} is MLflow's file store, which MLflow 3 refuses without its opt-in",
                f"set MLFLOW_ALLOW_FILE_STORE=true, or use a SQLite store: "
                f"sqlite:///{path.parent / 'mlflow.db'}",
            )
        ]
    opt_in = Finding(
        "file-store",
        True,
        "MLFLOW_ALLOW_FILE_STORE=true opts in to MLflow's file store (sqlite:// is the store "
        "MLflow recommends)",
    )
    return [opt_in, _file_store_path(path, source)]


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK) if path.is_dir() else os.access(path, os.W_OK)


def _sqlite_path(path: Path, source: str) -> Finding:
    if path.exists():
        if path.is_dir():
            return Finding("store-path", False, f"{path} is a directory, not a SQLite file", source)
        if not _writable(path) or not _writable(path.parent):
            return Finding(
                "store-path",
                False,
                f"SQLite database {path} is not writable by this user (uid {os.getuid()})",
                f"fix its permissions and its directory's: chmod u+w {path} {path.parent}",
            )
        return Finding("store-path", True, f"SQLite database {path} exists and is writable")
    if not path.parent.is_dir():
        return Finding(
            "store-path",
            False,
            f"directory {path.parent} of the SQLite database does not exist "
            "(SQLite creates the file, never its directory)",
            f"mkdir -p {path.parent}, or correct {source}",
        )
    if not _writable(path.parent):
        return Finding(
            "store-path",
            False,
            f"directory {path.parent} is not writable by this user (uid {os.getuid()})",
            f"chmod u+w {path.parent}, or use a directory you own in {source}",
        )
    return Finding("store-path", True, f"SQLite database {path} will be created on the first run")


def _file_store_path(path: Path, source: str) -> Finding:
    if path.exists() and not path.is_dir():
        return Finding("store-path", False, f"{path} is a file, not a directory", source)
    existing = _nearest_existing(path)
    if not existing.is_dir() or not _writable(existing):
        return Finding(
            "store-path",
            False,
            f"{existing} is not a directory this user (uid {os.getuid()}) can write: "
            f"the file store {path} cannot be created there",
            f"create {path} with write access for this user, or correct {source}",
        )
    if existing == path:
        return Finding("store-path", True, f"file store {path} exists and is writable")
    return Finding("store-path", True, f"file store {path} will be created on the first run")
