"""A real browser for the tests: Debian's Chromium driven by Playwright for Python.

Playwright's own browser download (``playwright install``) is never used: the
tests launch /usr/bin/chromium from Debian's ``chromium`` package, headless,
with a fresh profile (user-data-dir) that is deleted afterwards. The flags
keep Chromium from reaching anything but the pages the tests open.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import BrowserContext, sync_playwright

from support.tools import missing

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@contextmanager
def chromium_context(timeout_ms: float = 30_000) -> Iterator[BrowserContext]:
    """A Playwright browser context on Debian's Chromium with a fresh, temporary profile."""
    if not CHROMIUM.is_file():
        missing(
            f"Debian's Chromium ({CHROMIUM})",
            "apt-get install chromium (the tests never run `playwright install`)",
        )
    with (
        tempfile.TemporaryDirectory(prefix="dagma-chromium-") as profile,
        sync_playwright() as playwright,
    ):
        # launch_persistent_context is how Playwright takes a --user-data-dir.
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=list(CHROMIUM_ARGS),
            timeout=timeout_ms,
        )
        context.set_default_timeout(timeout_ms)
        try:
            yield context
        finally:
            context.close()
