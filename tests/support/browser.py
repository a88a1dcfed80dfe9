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
from urllib.parse import urlsplit

from playwright.sync_api import BrowserContext, Page, Route, sync_playwright

from support.settings import TEST_SETTINGS
from support.tools import missing

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
DOCS_IMAGES = ROOT / "docs" / "images"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

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


def keep_to_loopback(context: BrowserContext) -> list[str]:
    """Abort every request the pages make beyond loopback; return the list of those URLs.

    The UIs under test may reference outside resources (fonts, telemetry); the
    tests talk to 127.0.0.1 only, whatever a page asks for.
    """
    blocked: list[str] = []

    def route(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK_HOSTS:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("blockedbyclient")

    context.route("**/*", route)
    return blocked


@contextmanager
def loopback_chromium(timeout_ms: float) -> Iterator[BrowserContext]:
    """:func:`chromium_context` kept to loopback; prints what it blocked, if anything."""
    with chromium_context(timeout_ms=timeout_ms) as context:
        blocked = keep_to_loopback(context)
        yield context
    if blocked:
        print(f"[browser] blocked requests beyond loopback: {sorted(set(blocked))}")


def save_screenshot(page: Page, name: str, *, docs: bool = False) -> Path:
    """Save ``page`` as test-artifacts/screenshots/``name``.png and return that path.

    A ``docs`` screenshot is one the README shows: with ``DAGMA_UPDATE_SCREENSHOTS=1``
    it is also written to docs/images/``name``.png.
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    image = page.screenshot(path=path)
    if docs and TEST_SETTINGS.update_screenshots:
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        (DOCS_IMAGES / f"{name}.png").write_bytes(image)
    return path
