"""In a real browser: the Dagster asset page links the materialization to its MLflow run.

Debian's Chromium (Playwright) opens the Dagster webserver's page for
``train_model_stub`` after a real materialization with tracking on, follows the
``mlflow_run_url`` link in the materialization's metadata, and reads the run's
param, metric and artifact in the MLflow UI. Screenshots of the pages go to
test-artifacts/screenshots/ (docs/images/ shows the same pages on the local cluster:
tests/cluster/test_dagma_release.py).
The browser is Debian's, never one Playwright downloaded.
"""

from __future__ import annotations

import re
import subprocess

from playwright.sync_api import BrowserContext, Locator, Page, expect
from support.browser import CHROMIUM, save_screenshot
from support.dagster_local import TrackedMaterialization
from support.ui_pages import open_mlflow_page, table_row


def _open_asset_page(page: Page, materialization: TrackedMaterialization) -> Locator:
    """Open the asset's page in the Dagster UI; return the ``mlflow_run_url`` metadata link."""
    page.goto(f"{materialization.dagster_url}/assets/{materialization.asset}")
    # Dagster shows a URL as a shortened link, followed by a "…" link to the same address.
    return table_row(page, "mlflow_run_url").get_by_role("link").first


def test_dagster_asset_page_shows_the_materialization_with_its_mlflow_run_link(
    page: Page, materialization: TrackedMaterialization
) -> None:
    link = _open_asset_page(page, materialization)

    expect(link).to_have_attribute("href", materialization.mlflow_run_url)
    expect(link).to_contain_text(f"{materialization.mlflow_url}/#/experiments/")
    hrefs = (
        table_row(page, "mlflow_run_url")
        .get_by_role("link")
        .evaluate_all("links => links.map(link => link.href)")
    )
    assert set(hrefs) == {materialization.mlflow_run_url}
    expect(table_row(page, "mlflow_run_id")).to_contain_text(materialization.mlflow_run_id)
    expect(table_row(page, "mlflow_experiment")).to_contain_text("Default")
    # "Latest materialization" links the run the CLI launched, so the metadata is that run's.
    latest = page.get_by_text("Latest materialization").locator("..")
    expect(latest.get_by_role("link")).to_have_attribute(
        "href", re.compile(rf"^/runs/{materialization.dagster_run_id}\b")
    )
    save_screenshot(page, "dagster-asset")


def test_mlflow_run_link_opens_the_run_with_its_param_metric_and_artifact(
    page: Page, materialization: TrackedMaterialization
) -> None:
    href = _open_asset_page(page, materialization).get_attribute("href")
    assert href is not None

    # The link opens a new tab; following its href is the same page.
    open_mlflow_page(page, href, page.get_by_role("heading", name=materialization.asset))
    expect(page.get_by_text(materialization.mlflow_run_id).first).to_be_visible()
    expect(table_row(page, "n_estimators").get_by_role("cell").nth(1)).to_have_text("10")
    expect(table_row(page, "rmse").get_by_role("cell").nth(1)).to_have_text("0.123")
    # The way back: the run's tag links the Dagster run that produced it.
    dagster_run_url = f"{materialization.dagster_url}/runs/{materialization.dagster_run_id}"
    expect(page.get_by_text(dagster_run_url)).to_be_attached()
    save_screenshot(page, "mlflow-run")

    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_label("train_summary.txt", exact=True).click()

    content = page.locator("pre").filter(has_text="n_estimators=10")
    expect(content).to_have_text(re.compile(r"^\s*n_estimators=10\s+rmse=0\.123\s*$"))
    save_screenshot(page, "mlflow-artifact")


def test_the_browser_is_debians_chromium(browser: BrowserContext) -> None:
    installed = subprocess.run(
        [str(CHROMIUM), "--version"], capture_output=True, text=True, timeout=60, check=True
    ).stdout  # "Chromium 156.0.8078.108 built on Debian …"
    page = browser.new_page()
    try:
        product = browser.new_cdp_session(page).send("Browser.getVersion")["product"]
    finally:
        page.close()
    assert product.split("/")[1] in installed.split()
