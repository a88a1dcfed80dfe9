"""How a command that loads a code location ends when dagma's settings cannot be used.

``dagster asset materialize``, ``dg launch`` and ``dagster dev`` import the code location,
and :func:`dagma.mlflow_resource_from_env` raises :class:`~dagma.settings.SettingsError`
there. Left alone, the message is followed by some 75 lines of frames (Dagster's CLI, click,
importlib), and a user who scrolls to the end finds the frames, not the fix. So:

- the message goes to stderr at once, before anything Dagster prints;
- a command that ends on it (the error reaches the interpreter's top level uncaught) prints
  no frames after it: the message stays the last thing printed, and the exit code is 1;
- where Dagster catches the load error and logs it (``dagster dev``'s code server, the UI's
  code location page), it logs an exception's frames after its message and then its cause:
  the exception raised has the same message as a cause without frames, so that log ends
  with the message too, followed only by Dagster's one-line "Error loading repository
  location" summary.
"""

from __future__ import annotations

import sys
from types import TracebackType

from dagma.settings import SettingsError

PREFIX = "dagma: the MLflow settings cannot be used: "


def _is_settings_error(error: BaseException | None) -> bool:
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, SettingsError):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _end_without_frames() -> None:
    """An uncaught settings error prints nothing more: its message was printed already."""
    previous = sys.excepthook
    if getattr(previous, "dagma_settings_hook", False):
        return

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if not _is_settings_error(value):
            previous(kind, value, tb)

    hook.dagma_settings_hook = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def settings_error_at_load(error: SettingsError) -> SettingsError:
    """Print ``error``'s message now, and return the exception to raise in its place.

    Raise it ``from`` the original with its frames dropped, so that Dagster's log of the
    load error ends with the message (see the module's docstring).
    """
    print(f"{PREFIX}{error}", file=sys.stderr, flush=True)
    _end_without_frames()
    error.with_traceback(None)
    return SettingsError(str(error))
