"""What the browser tests share about the two UIs' pages.

Small and page-level only: how to find a table row in either UI, and the MLflow UI's
stored preferences a returning user would have, so screenshots show its "Model training"
view rather than the GenAI one MLflow 3 opens with.
"""

from __future__ import annotations

import json

from playwright.sync_api import Locator, Page


def table_row(page: Page, first_cell: str) -> Locator:
    """The table row whose first cell reads exactly ``first_cell``."""
    return page.get_by_role("row").filter(has=page.get_by_role("cell", name=first_cell, exact=True))


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
