"""Switches of the test suite read from the environment (dagma's own are ``dagma.settings``).

``DAGMA_DAGSTER_CHART``: a directory holding the official Dagster chart (the chart itself,
as ``helm pull dagster/dagster --untar`` leaves it, or a directory with ``dagster/`` or
``dagster-<version>.tgz`` in it, as ``helm dependency build`` fills ``charts/``), or the
``.tgz`` itself. The release tests then install charts/dagma with that chart as its
dependency instead of building the chart's objects themselves (see
``tests/cluster/official_dagster_chart.py``). Unset or empty: look in charts/dagma/charts/.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict

DAGSTER_CHART_VARIABLE = "DAGMA_DAGSTER_CHART"


class TestSettings(BaseModel):
    """Switches of the test suite (not of dagma: that is ``dagma.settings``)."""

    __test__ = False  # a model, not a test class for pytest to collect
    model_config = ConfigDict(frozen=True)

    # Where the official Dagster chart is, when the person running the tests has it.
    dagster_chart: Path | None = None


def load_test_settings(env: Mapping[str, str] | None = None) -> TestSettings:
    """The tests' switches from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    chart = env.get(DAGSTER_CHART_VARIABLE, "").strip()
    return TestSettings(dagster_chart=Path(chart).expanduser().absolute() if chart else None)
