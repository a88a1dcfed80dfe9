"""Checks of a local MLflow store (``file://`` or ``sqlite://``): the path and its permissions."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from dagma.cli.report import Check, Status

LOCAL_SCHEMES = ("file", "sqlite")


def is_local_store(uri: str) -> bool:
    """Whether ``uri`` names a store on this machine's disk rather than a server."""
    return urlparse(uri).scheme in LOCAL_SCHEMES


def store_path(uri: str) -> Path:
    """The file system path a ``file://`` directory or ``sqlite://`` database URI names."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        # SQLAlchemy: sqlite:///relative.db, sqlite:////absolute.db
        return Path(unquote(uri.split(":///", 1)[1]))
    return Path(unquote(parsed.path))


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK) if path.is_dir() else os.access(path, os.W_OK)


def check_local_store(uri: str, source: str) -> list[Check]:
    """The path exists (or can be made), is the right kind, and this process may write it."""
    path = store_path(uri)
    kind = "SQLite database" if urlparse(uri).scheme == "sqlite" else "file store directory"
    opt_in = []
    if urlparse(uri).scheme == "file":
        # Settings refuse a file:// URI unless MLFLOW_ALLOW_FILE_STORE opts in, so it is on.
        opt_in = [
            Check(
                "file-store",
                Status.OK,
                "MLFLOW_ALLOW_FILE_STORE opts in to MLflow's file store (deprecated in MLflow 3; "
                "sqlite:// is the supported local store)",
            )
        ]
    if not path.is_absolute():
        return [
            Check(
                "store-path",
                Status.FAIL,
                f"{kind} {path} is relative: it moves with the working directory",
                f"use an absolute path in {source}",
            )
        ]
    if urlparse(uri).scheme == "sqlite":
        return [*opt_in, _sqlite_path(path, source)]
    return [*opt_in, _file_store_path(path, source)]


def _sqlite_path(path: Path, source: str) -> Check:
    if path.exists():
        if path.is_dir():
            return Check(
                "store-path", Status.FAIL, f"{path} is a directory, not a SQLite file", source
            )
        if not _writable(path) or not _writable(path.parent):
            return Check(
                "store-path",
                Status.FAIL,
                f"SQLite database {path} is not writable by this user (uid {os.getuid()})",
                f"fix its permissions and its directory's: chmod u+w {path} {path.parent}",
            )
        return Check("store-path", Status.OK, f"SQLite database {path} exists and is writable")
    if not path.parent.is_dir():
        return Check(
            "store-path",
            Status.FAIL,
            f"directory {path.parent} of the SQLite database does not exist "
            "(SQLite creates the file, never its directory)",
            f"mkdir -p {path.parent}, or correct {source}",
        )
    if not _writable(path.parent):
        return Check(
            "store-path",
            Status.FAIL,
            f"directory {path.parent} is not writable by this user (uid {os.getuid()})",
            f"chmod u+w {path.parent}, or use a directory you own in {source}",
        )
    return Check(
        "store-path", Status.OK, f"SQLite database {path} will be created on the first run"
    )


def _file_store_path(path: Path, source: str) -> Check:
    if path.exists() and not path.is_dir():
        return Check("store-path", Status.FAIL, f"{path} is a file, not a directory", source)
    existing = _nearest_existing(path)
    if not existing.is_dir() or not _writable(existing):
        return Check(
            "store-path",
            Status.FAIL,
            f"{existing} is not a directory this user (uid {os.getuid()}) can write: "
            f"the file store {path} cannot be created there",
            f"create {path} with write access for this user, or correct {source}",
        )
    if existing == path:
        return Check("store-path", Status.OK, f"file store {path} exists and is writable")
    return Check("store-path", Status.OK, f"file store {path} will be created on the first run")
