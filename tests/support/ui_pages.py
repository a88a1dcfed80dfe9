"""What the browser tests share about the two UIs' pages.

Small and page-level only: how to find a table row in either UI, and the MLflow UI's
stored preferences a returning user would have, so screenshots show its "Model training"
view rather than the GenAI one MLflow 3 opens with.
"""

from __future__ import annotations

import json

from playwright.sync_api import ConsoleMessage, Locator, Page, expect

MLFLOW_ERROR_PAGE = "Something went wrong"


def table_row(page: Page, first_cell: str) -> Locator:
    """The table row whose first cell reads exactly ``first_cell``."""
    return page.get_by_role("row").filter(has=page.get_by_role("cell", name=first_cell, exact=True))


def open_mlflow_page(page: Page, url: str, shown: Locator, timeout_ms: float = 30_000) -> None:
    """Open ``url`` in the MLflow UI and wait until ``shown`` is visible.

    On a loaded machine the MLflow UI now and then renders its "Something went wrong"
    page when one of its lazily loaded scripts arrives too late (a ``ChunkLoadError`` in
    the console; mlflow#23370, #24143), and a reload clears it.
    That page gets one reload, printed with the page's script errors; a second one fails.
    """
    errors: list[str] = []

    def record(message: ConsoleMessage) -> None:  # React logs what its error page caught
        if message.type == "error":
            errors.append(message.text[:300])

    page.on("console", record)
    try:
        page.goto(url)
        error_page = page.get_by_role("heading", name=MLFLOW_ERROR_PAGE)
        expect(shown.or_(error_page).first).to_be_visible(timeout=timeout_ms)
    finally:
        page.remove_listener("console", record)
    if error_page.is_visible():
        print(f"[browser] MLflow UI: {MLFLOW_ERROR_PAGE!r} on {url} ({errors}); reloading once")
        page.reload()
    expect(shown).to_be_visible(timeout=timeout_ms)


def mlflow_preferences_script(mlflow_url: str) -> str:
    """An init script giving the MLflow UI at ``mlflow_url`` a returning user's choices.

    The "Model training" view (MLflow 3 opens in its GenAI view) and the assistant
    panel closed; these only change what the screenshots show, not what is asserted.
    """
    preferences = {
        "mlflow.workflowType_v1": json.dumps("machine_learning"),
        "mlflow.assistant.panelOpen_v1": "false",
        "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
    }
    return (
        f"if (location.origin === {json.dumps(mlflow_url)}) {{"
        f" for (const [key, value] of Object.entries({json.dumps(preferences)}))"
        " { if (localStorage.getItem(key) === null) localStorage.setItem(key, value); } }"
    )
