"""Session fixtures of the container harness: engine, base image, PostgreSQL, browser.

Each starts once per session and is stopped at its end. Timings and sizes the
tests measure (never assert) are printed in the terminal summary and written
to test-artifacts/container-measurements.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext
from support.browser import chromium_context
from support.container.base_image import BaseImage, ensure_base_image
from support.container.build import image_size
from support.container.cli import Docker
from support.container.engine import Engine, ensure_engine
from support.container.loopback import LoopbackPage, serve_page
from support.postgres import PostgresServer, start_postgres

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
MEASUREMENTS = pytest.StashKey[dict[str, str]]()

Measure = Callable[[str, str], None]


@pytest.fixture(scope="session")
def measure(pytestconfig: pytest.Config) -> Measure:
    """``measure(name, value)`` records a figure for the session's summary."""
    figures = pytestconfig.stash.setdefault(MEASUREMENTS, {})

    def record(name: str, value: str) -> None:
        figures[name] = value
        print(f"[measure] {name}: {value}", flush=True)

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    figures = terminalreporter.config.stash.get(MEASUREMENTS, {})
    if not figures:
        return
    terminalreporter.section("container harness measurements")
    for name, value in figures.items():
        terminalreporter.write_line(f"{name}: {value}")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "container-measurements.json").write_text(json.dumps(figures, indent=2) + "\n")


def megabytes(size: int) -> str:
    """A byte count as the MB figure ``docker images`` shows."""
    return f"{size / 1e6:.0f} MB"


@pytest.fixture(scope="session")
def docker_engine(measure: Measure) -> Iterator[Engine]:
    """A Docker engine that answers: the running one, or a dockerd this session starts."""
    engine = ensure_engine()
    if engine.started_in is not None:
        measure("dockerd start", f"{engine.started_in:.1f} s")
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def docker(docker_engine: Engine) -> Docker:
    """The docker CLI bound to the session's engine."""
    return docker_engine.docker


@pytest.fixture(scope="session")
def base_image(docker: Docker, measure: Measure) -> BaseImage:
    """The ``BASE_IMAGE`` for builds: public slim Python, or the local debootstrapped one."""
    image = ensure_base_image(docker)
    measure("base image", f"{image.tag} ({image.source})")
    for step, seconds in image.seconds.items():
        measure(f"base image {step}", f"{seconds:.1f} s")
    measure("base image size", megabytes(image_size(docker, image.tag)))
    return image


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL on 127.0.0.1 with an empty ``dagster`` database."""
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[BrowserContext]:
    """Debian's Chromium under Playwright, headless, with a fresh profile."""
    with chromium_context() as context:
        yield context


@pytest.fixture
def loopback_page(tmp_path: Path) -> Iterator[LoopbackPage]:
    """An HTML page with a unique text, served on 127.0.0.1 for the test's duration."""
    with serve_page(tmp_path) as page:
        yield page
