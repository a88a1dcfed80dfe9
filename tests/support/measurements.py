"""Figures a test session measures (never asserts): printed as they come, summed up at the end.

One set per session, recorded through the ``cluster_measure`` fixture (tests/cluster's
conftest), shown in the terminal summary under "local cluster measurements" and written
to ``test-artifacts/cluster-measurements.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
NAME, TITLE = "cluster-measurements", "local cluster measurements"
Measure = Callable[[str, str], None]
_FIGURES = pytest.StashKey[dict[str, str]]()


def recorder(config: pytest.Config) -> Measure:
    """``record(name, value)`` keeps a figure in the session's stash and prints it at once."""
    figures = config.stash.setdefault(_FIGURES, {})

    def record(name: str, value: str) -> None:
        figures[name] = value
        print(f"[measure] {name}: {value}", flush=True)

    return record


def summarize(reporter: pytest.TerminalReporter) -> None:
    """The session's figures in the terminal summary and in test-artifacts/."""
    figures = reporter.config.stash.get(_FIGURES, {})
    if not figures:
        return
    reporter.section(TITLE)
    for name, value in figures.items():
        reporter.write_line(f"{name}: {value}")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"{NAME}.json").write_text(json.dumps(figures, indent=2) + "\n")
