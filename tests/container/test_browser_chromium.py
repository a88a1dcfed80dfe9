"""Debian's Chromium under Playwright reads a page served on 127.0.0.1."""

from __future__ import annotations

import subprocess

from playwright.sync_api import BrowserContext
from support.browser import CHROMIUM
from support.container.loopback import LoopbackPage


def test_browser_reads_the_text_of_a_page_served_on_loopback(
    browser: BrowserContext, loopback_page: LoopbackPage
) -> None:
    page = browser.new_page()
    try:
        response = page.goto(loopback_page.url)
        assert response is not None and response.status == 200
        assert page.title() == "harness"
        assert page.locator("#greeting").inner_text() == loopback_page.text
    finally:
        page.close()


def test_browser_is_debians_chromium(browser: BrowserContext) -> None:
    installed = subprocess.run(
        [str(CHROMIUM), "--version"], capture_output=True, text=True, timeout=60, check=True
    ).stdout  # "Chromium 156.0.8078.108 built on Debian …"
    page = browser.new_page()
    try:
        product = browser.new_cdp_session(page).send("Browser.getVersion")["product"]
    finally:
        page.close()
    assert product.split("/")[1] in installed.split()
