"""The rules every value passes before either resource records it: MLflow's own, checked early.

Both resources call these before anything is recorded, with the same errors, so
code that passes with tracking off (the stub) does not fail when it is turned on;
MLflow would refuse the same values later, at the server, or cut them silently.
"""

from __future__ import annotations

import math
import numbers
import os
import posixpath
import re
from pathlib import Path
from typing import Any

from dagma.tracking.errors import TrackingInputError

# MLflow's own rules for names (mlflow.utils.validation), so both resources refuse alike.
_VALID_NAME = re.compile(r"^[/\w.\- :]*$")
MAX_KEY_LENGTH = 250
MAX_VALUE_LENGTH = {"param": 6000, "tag": 8000}


def check_key(kind: str, key: Any) -> None:
    """Refuse a param/metric/tag name MLflow would refuse."""
    if not isinstance(key, str) or not key:
        raise TrackingInputError(f"{kind.capitalize()} name {key!r} must be a non-empty string.")
    if len(key) > MAX_KEY_LENGTH:
        raise TrackingInputError(
            f"{kind.capitalize()} name {key[:40]!r}... is {len(key)} characters; MLflow allows "
            f"at most {MAX_KEY_LENGTH}."
        )
    if not _VALID_NAME.match(key):
        raise TrackingInputError(
            f"{kind.capitalize()} name {key!r} has characters MLflow refuses: use letters, "
            "digits, underscores, dashes, periods, spaces, colons and slashes."
        )
    normalized = posixpath.normpath(key)
    if normalized != key or normalized.startswith(("..", "/")) or normalized == ".":
        raise TrackingInputError(
            f"{kind.capitalize()} name {key!r} would name another path once normalised "
            f"({normalized!r}); MLflow refuses it. Drop leading/trailing or doubled slashes "
            "and '.'/'..' parts."
        )


def check_value(kind: str, key: str, value: Any) -> str:
    """A param/tag value as text, refused when longer than MLflow keeps."""
    text = str(value)
    limit = MAX_VALUE_LENGTH[kind]
    if len(text) > limit:
        # MLflow would cut it to the limit with only a warning in the log.
        raise TrackingInputError(
            f"{kind.capitalize()} {key!r} is {len(text)} characters ({text[:40]!r}...); MLflow "
            f"keeps at most {limit} and would silently cut the rest. Log long text as a file "
            "with log_artifact() instead."
        )
    return text


def check_metric(key: str, value: Any) -> float:
    """A metric value as MLflow stores it: whatever ``float()`` takes, as MLflow's client does
    (numbers, numpy scalars, "0.5"); None, non-numeric text, NaN and +/-inf are refused."""
    check_key("metric", key)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TrackingInputError(
            f"Metric {key!r} got {value!r} ({type(value).__name__}), which is not a number; "
            "a metric value must be a number (int or float). Log text as a param or tag."
        ) from None
    if not math.isfinite(number):
        # MLflow stores them, but inf comes back as +/-1.8e308 and NaN breaks comparing runs.
        raise TrackingInputError(
            f"Metric {key!r} got {value!r}, which is not a finite number: MLflow would keep "
            "NaN (which sorts and plots as nothing) and store inf as +/-1.8e308. Log a finite "
            "value; to record that training diverged, raise, or set a tag "
            "(set_tag('diverged', 'true'))."
        )
    return number


def check_artifact_path(artifact_path: str | None) -> None:
    """Refuse a destination outside the run's artifact directory (absolute, or climbing out)."""
    if artifact_path is None:
        return
    if not isinstance(artifact_path, str):
        raise TrackingInputError(
            f"artifact_path={artifact_path!r} must be a folder name (str) inside the run's "
            "artifacts, or None for the top."
        )
    normalized = posixpath.normpath(artifact_path)
    if artifact_path.startswith(("/", "\\")) or ".." in normalized.split("/"):
        raise TrackingInputError(
            f"artifact_path={artifact_path!r} escapes the run's artifact directory "
            f"(it resolves to {normalized!r}): give a relative folder inside it, e.g. "
            "'reports', or None for the top; absolute paths and '..' are refused."
        )


def check_artifact_file(local_path: str | Path) -> Path:
    """The file (or directory) to upload, refused if missing, unreadable or not a file."""
    path = Path(local_path)
    if not path.exists():
        raise TrackingInputError(
            f"Artifact {str(local_path)!r} does not exist (resolved to {path.absolute()}): "
            "write the file before logging it."
        )
    where = f"Artifact {str(local_path)!r} (resolved to {path.absolute()})"
    if not (path.is_file() or path.is_dir()):
        # A FIFO would block the upload forever; sockets and devices cannot be uploaded.
        raise TrackingInputError(
            f"{where} is not a regular file or a directory (a FIFO, socket or device cannot be "
            "uploaded): write its contents to a file and log that."
        )
    unreadable = [p for p in (path.rglob("*") if path.is_dir() else [path]) if _unreadable(p)]
    if unreadable:
        raise TrackingInputError(
            f"{where} cannot be read ({str(unreadable[0])!r}: permission denied): make it "
            "readable by this process (e.g. chmod a+r) before logging it."
        )
    return path


def _unreadable(path: Path) -> bool:
    if path.is_dir():
        return not os.access(path, os.R_OK | os.X_OK)
    try:
        with path.open("rb"):
            return False
    except PermissionError:
        return True


def check_step(step: Any) -> int:
    """A metric step: a whole number, 0 when not given."""
    if step is None:
        return 0
    if not isinstance(step, numbers.Integral):
        raise TrackingInputError(f"step={step!r} must be a whole number (int).")
    return int(step)
