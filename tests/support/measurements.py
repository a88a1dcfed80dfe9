"""Figures a test session measures (never asserts): printed as they come, summed up at the end.

The container harness and the local cluster each keep their own set, shown in the terminal
summary under their own title and written to ``test-artifacts/<name>.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
Measure = Callable[[str, str], None]


class Measurements:
    """One named set of figures kept in the pytest config's stash."""

    def __init__(self, name: str, title: str) -> None:
        self.name, self.title = name, title
        self.key = pytest.StashKey[dict[str, str]]()

    def recorder(self, config: pytest.Config) -> Measure:
        """``record(name, value)`` keeps a figure and prints it at once."""
        figures = config.stash.setdefault(self.key, {})

        def record(name: str, value: str) -> None:
            figures[name] = value
            print(f"[measure] {name}: {value}", flush=True)

        return record

    def summarize(self, reporter: pytest.TerminalReporter) -> None:
        """The session's figures in the terminal summary and in test-artifacts/."""
        figures = reporter.config.stash.get(self.key, {})
        if not figures:
            return
        reporter.section(self.title)
        for name, value in figures.items():
            reporter.write_line(f"{name}: {value}")
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"{self.name}.json").write_text(json.dumps(figures, indent=2) + "\n")
