"""Checks of a local MLflow store (``file://`` or ``sqlite://``): the path and its permissions."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from dagma.cli.report import Check, Status
from dagma.settings import TrackingSettings, local_store_path


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK) if path.is_dir() else os.access(path, os.W_OK)


def check_local_store(settings: TrackingSettings) -> list[Check]:
    """MLflow's file-store opt-in, then the path: exists (or can be made), and is writable."""
    uri, source = settings.tracking_uri, settings.tracking_uri_source
    path = Path(local_store_path(uri))
    if urlparse(uri).scheme == "sqlite":
        return [_sqlite_path(path, source)]
    if not settings.allow_file_store:
        # Settings refuse this only while tracking is on; say it before it is switched on.
        return [
            Check(
                "file-store",
                Status.FAIL,
                f"{uri} is MLflow's file store, which MLflow 3 refuses without its opt-in",
                f"set MLFLOW_ALLOW_FILE_STORE=true, or use a SQLite store: "
                f"sqlite:///{path.parent / 'mlflow.db'}",
            )
        ]
    opt_in = Check(
        "file-store",
        Status.OK,
        "MLFLOW_ALLOW_FILE_STORE=true opts in to MLflow's file store (sqlite:// is the store "
        "MLflow recommends)",
    )
    return [opt_in, _file_store_path(path, source)]


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
