"""Fixtures for the browser check: a real materialization, the Dagster webserver, Chromium.

``train_model_stub`` is materialized once per module with tracking on, through
the ``dagster`` CLI, against the session's MLflow server and a temporary
DAGSTER_HOME; then ``dagster-webserver`` serves that instance. Everything
listens on 127.0.0.1, and the browser is kept to loopback.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest
from mlflow import MlflowClient
from playwright.sync_api import BrowserContext, Page
from support.browser import loopback_chromium, save_screenshot
from support.dagster_local import (
    TrackedMaterialization,
    command_env,
    init_instance,
    materialize,
    run_webserver,
)
from support.example_runs import example_run_filter
from support.ui_pages import mlflow_preferences_script

from dagma.dev.local_mlflow import free_port

ASSET = "train_model_stub"
EXPERIMENT = "Default"
# Under load (2 cores, other suites) the Dagster UI's first render takes 10-30 s.
UI_TIMEOUT_MS = 60_000
VIEWPORT = {"width": 1400, "height": 1000}
FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="module")
def materialization(
    mlflow_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrackedMaterialization]:
    """``train_model_stub`` materialized with tracking on, and the webserver showing it."""
    dagster_home = init_instance(tmp_path_factory.mktemp("dagster-home"))
    port = free_port()
    dagster_url = f"http://127.0.0.1:{port}"
    env = command_env(
        dagster_home,
        MLFLOW_USE_TRACKING="true",
        MLFLOW_TRACKING_URI=mlflow_server,
        MLFLOW_EXPERIMENT=EXPERIMENT,
        DAGSTER_UI_URL=dagster_url,
    )
    # Materialize first: two processes creating a fresh SQLite instance at once collide.
    dagster_run_id = materialize(ASSET, env)
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None, f"no MLflow experiment {EXPERIMENT!r} after materializing"
    [run] = client.search_runs(
        [experiment.experiment_id], filter_string=example_run_filter(dagster_run_id)
    )
    with run_webserver(port, env):
        yield TrackedMaterialization(
            asset=ASSET,
            dagster_url=dagster_url,
            mlflow_url=mlflow_server,
            dagster_run_id=dagster_run_id,
            mlflow_run_id=run.info.run_id,
            mlflow_run_url=(
                f"{mlflow_server}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
            ),
        )


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserContext]:
    """Debian's Chromium under Playwright, kept to loopback."""
    with loopback_chromium(UI_TIMEOUT_MS) as context:
        yield context


@pytest.fixture
def page(
    browser: BrowserContext, materialization: TrackedMaterialization, request: pytest.FixtureRequest
) -> Iterator[Page]:
    """A fresh tab; if the test fails, its last state is saved as a screenshot."""
    page = browser.new_page()
    page.set_viewport_size(VIEWPORT)
    page.add_init_script(mlflow_preferences_script(materialization.mlflow_url))
    yield page
    if request.node.stash.get(FAILED, False):
        save_screenshot(page, f"failed-{request.node.name}")
    page.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember on the test item whether any phase failed, for the ``page`` fixture."""
    report = yield
    if report.failed:
        item.stash[FAILED] = True
    return report
