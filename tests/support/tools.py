"""Finding the external tools a test needs, with CI's no-skip rule.

Outside CI a missing tool skips the test with a message saying how to get it.
Under ``CI=true`` the same situation fails: CI installs every tool the suite
needs, so a missing one is a broken pipeline, not a reason to pass quietly.
"""

from __future__ import annotations

import shutil

import pytest

from support.settings import TEST_SETTINGS

IN_CI = TEST_SETTINGS.in_ci


def missing(what: str, how_to_get: str) -> None:
    """Skip (locally) or fail (in CI) because ``what`` is not available."""
    message = f"{what} is not available: {how_to_get}"
    if IN_CI:
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


def require_executable(name: str, how_to_get: str) -> str:
    """The full path of executable ``name``, or skip/fail via :func:`missing`."""
    path = shutil.which(name)
    if path is None:
        missing(f"executable {name!r}", how_to_get)
    return path
