"""Both UIs of the installed release, opened as its NOTES tell a user to open them.

``helm get notes`` of the release prints, under "1. Dagster UI" and "2. MLflow UI", a
``kubectl … port-forward …`` line and a "then open http://localhost:<port>" line each.
Those commands are run exactly as printed (``kubectl`` and the kubeconfig of the local
cluster from the environment, as the ``export`` lines of ``make cluster-up`` set them),
and Debian's Chromium opens the pages behind them: the Dagster asset page of
``train_model_stub`` and the MLflow run it links to.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from playwright.sync_api import Page, expect

from localcluster.components import Layout
from support.browser import save_screenshot
from support.ui_pages import open_mlflow_page, table_row

DAGSTER_UI, MLFLOW_UI = "Dagster UI", "MLflow UI"


@dataclass(frozen=True)
class NotesForward:
    """One UI as the NOTES give it: the port-forward command and the address to open."""

    title: str
    command: str
    url: str

    @property
    def local_port(self) -> int:
        """The local side of the command's ``<local>:<remote>`` port pair."""
        [pair] = [arg for arg in shlex.split(self.command) if re.fullmatch(r"\d+:\d+", arg)]
        return int(pair.split(":")[0])


def notes_forwards(notes: str) -> dict[str, NotesForward]:
    """The port-forward command and URL under each numbered heading of the NOTES."""
    found: dict[str, NotesForward] = {}
    title, command = None, None
    for line in notes.splitlines():
        text = line.strip()
        if heading := re.fullmatch(r"\d+\. (.+)", text):
            title, command = heading.group(1), None
        elif text.startswith("kubectl ") and " port-forward " in text:
            command = text
        elif (url := re.fullmatch(r"then open (http://\S+)", text)) and title and command:
            found[title] = NotesForward(title, command, url.group(1))
    missing = {DAGSTER_UI, MLFLOW_UI} - found.keys()
    assert not missing, f"the release's NOTES give no port-forward for {missing}:\n{notes}"
    return found


def _port_holder(port: int) -> str:
    """Who listens on ``port`` (``ss`` when the machine has it), for the error message."""
    if shutil.which("ss") is None:
        return "another process"
    result = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True)
    return result.stdout.strip() or "another process"


def _require_free(forward: NotesForward) -> None:
    port = forward.local_port
    with socket.socket() as probe:
        # As kubectl listens (SO_REUSEADDR): connections of an earlier forward still in
        # TIME_WAIT do not make the port busy, a listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            raise AssertionError(
                f"local port {port} is taken ({error.strerror}), and the NOTES' {forward.title} "
                f"line `{forward.command}` needs it. Stop what listens there ({_port_holder(port)}"
                "; e.g. an earlier `kubectl port-forward` of a dagma release, `make dev` or "
                f"`make demo`), then rerun."
            ) from None


@contextmanager
def forwarding(forward: NotesForward, layout: Layout) -> Iterator[str]:
    """Run the NOTES' command as printed until the block ends; yields the URL to open."""
    _require_free(forward)
    env = dict(os.environ, KUBECONFIG=str(layout.kubeconfig),
               PATH=f"{layout.bin}{os.pathsep}{os.environ.get('PATH', '')}")  # fmt: skip
    process = subprocess.Popen(shlex.split(forward.command), env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if f":{forward.local_port} ->" not in line:
            process.kill()
            rest = process.stdout.read()
            raise AssertionError(f"`{forward.command}` did not forward:\n{line}{rest}")
        yield forward.url
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def both_uis(notes: str, layout: Layout) -> Iterator[dict[str, str]]:
    """Both NOTES port-forwards running; yields each UI's URL by title."""
    forwards = notes_forwards(notes)
    with ExitStack() as stack:
        yield {title: stack.enter_context(forwarding(forwards[title], layout))
               for title in (DAGSTER_UI, MLFLOW_UI)}  # fmt: skip


PAGE_LOAD_MS = 30_000


@dataclass(frozen=True)
class ShownRun:
    """What the pages must show: the asset, its Dagster run and the MLflow run it made."""

    asset: str
    dagster_url: str
    mlflow_url: str
    dagster_run_id: str
    mlflow_run_id: str
    mlflow_experiment_id: str

    @property
    def mlflow_run_url(self) -> str:
        experiment, run = self.mlflow_experiment_id, self.mlflow_run_id
        return f"{self.mlflow_url}/#/experiments/{experiment}/runs/{run}"


def check_dagster_asset_page(page: Page, run: ShownRun) -> str:
    """The asset page shows the run's materialization; returns its ``mlflow_run_url`` link."""
    # A new instance greets the first visitor with "Join the Dagster community" (the chart
    # has no value to turn it off); the visitor's answer is "Skip".
    greeting = page.get_by_text("Join the Dagster community")
    page.add_locator_handler(greeting, lambda _: page.get_by_role("button", name="Skip").click())
    page.goto(f"{run.dagster_url}/assets/{run.asset}")
    # The first look waits for the page's scripts to load through the port-forward (slow on
    # two busy cores); what it shows is then checked at Playwright's default pace.
    expect(page.get_by_text(run.asset).first).to_be_visible(timeout=PAGE_LOAD_MS)
    latest = page.get_by_text("Latest materialization").locator("..")
    expect(latest.get_by_role("link")).to_have_attribute(
        "href", re.compile(rf"^/runs/{run.dagster_run_id}\b")
    )
    expect(table_row(page, "mlflow_run_id")).to_contain_text(run.mlflow_run_id)
    # Dagster shows a URL as a shortened link, followed by a "…" link to the same address.
    link = table_row(page, "mlflow_run_url").get_by_role("link").first
    expect(link).to_have_attribute("href", run.mlflow_run_url)
    expect(greeting).to_be_hidden()
    save_screenshot(page, "dagster-asset", docs=True)
    href = link.get_attribute("href")
    assert href is not None
    return href


def check_mlflow_run_page(page: Page, href: str, run: ShownRun) -> None:
    """The link opens the MLflow run: its param, metric, way back to Dagster, and artifact."""
    # The link opens a new tab; following its href is the same page.
    open_mlflow_page(page, href, page.get_by_role("heading", name=run.asset), PAGE_LOAD_MS)
    expect(page.get_by_text(run.mlflow_run_id).first).to_be_visible()
    expect(table_row(page, "n_estimators").get_by_role("cell").nth(1)).to_have_text("10")
    expect(table_row(page, "rmse").get_by_role("cell").nth(1)).to_have_text("0.123")
    expect(page.get_by_text(f"{run.dagster_url}/runs/{run.dagster_run_id}")).to_be_attached()
    save_screenshot(page, "mlflow-run", docs=True)

    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_label("train_summary.txt", exact=True).click()
    content = page.locator("pre").filter(has_text="n_estimators=10")
    expect(content).to_have_text(re.compile(r"^\s*n_estimators=10\s+rmse=0\.123\s*$"))
    save_screenshot(page, "mlflow-artifact", docs=True)
