"""Switches of the test suite, read from the environment here and nowhere else.

dagma's own settings are :mod:`dagma.settings`; these only change how the tests run.

- ``CI``: ``true``/``1``/``yes`` on the CI machine. A missing tool then fails instead of
  skipping (:func:`support.tools.missing`).
- ``DAGMA_REFERENCE_DIR``: the upstream contracts as data (the Dagster chart's values and
  schemas, Skaffold's schema); default ``<repository>/../shared/reference``
  (:mod:`support.reference_data`).
- ``DAGMA_SOAK``: ``1``/``true`` for the heavy counts of ``make soak``, ``0``/``false``/unset
  for the small counts of ``make test`` (:mod:`support.soak`).
- ``DAGMA_UPDATE_SCREENSHOTS``: ``1`` also writes the README's screenshots to docs/images/
  (:func:`support.browser.save_screenshot`).
- ``DAGMA_DAGSTER_CHART``: a directory holding the official Dagster chart (the chart
  itself, as ``helm pull dagster/dagster --untar`` leaves it, or a directory with
  ``dagster/`` or ``dagster-<version>.tgz`` in it, as ``helm dependency build`` fills
  ``charts/``), or the ``.tgz`` itself. The release tests then install charts/dagma with
  that chart as its dependency instead of building the chart's objects themselves
  (:func:`support.umbrella.find_official_chart`). Unset or empty: look in charts/dagma/charts/.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict

DAGSTER_CHART_VARIABLE = "DAGMA_DAGSTER_CHART"
REFERENCE_DIR_VARIABLE = "DAGMA_REFERENCE_DIR"
SOAK_VARIABLE = "DAGMA_SOAK"
DEFAULT_REFERENCE_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "reference"
SOAK_WORDS = {"1": True, "true": True, "0": False, "false": False, "": False}


class TestSettings(BaseModel):
    """Switches of the test suite (not of dagma: that is ``dagma.settings``)."""

    __test__ = False  # a model, not a test class for pytest to collect
    model_config = ConfigDict(frozen=True)

    in_ci: bool = False
    reference_dir: Path = DEFAULT_REFERENCE_DIR
    soak: bool = False
    update_screenshots: bool = False
    # Where the official Dagster chart is, when the person running the tests has it.
    dagster_chart: Path | None = None


def _soak(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in SOAK_WORDS:
        raise ValueError(
            f"{SOAK_VARIABLE}={raw!r} is not 1/true (the heavy counts of `make soak`) or "
            "0/false/unset (the small counts of `make test`)."
        )
    return SOAK_WORDS[value]


def load_test_settings(env: Mapping[str, str] | None = None) -> TestSettings:
    """The tests' switches from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    chart = env.get(DAGSTER_CHART_VARIABLE, "").strip()
    reference = env.get(REFERENCE_DIR_VARIABLE, "").strip()
    return TestSettings(
        in_ci=env.get("CI", "").strip().lower() in {"1", "true", "yes"},
        reference_dir=Path(reference or DEFAULT_REFERENCE_DIR).expanduser().resolve(),
        soak=_soak(env.get(SOAK_VARIABLE, "")),
        update_screenshots=env.get("DAGMA_UPDATE_SCREENSHOTS", "").strip() == "1",
        dagster_chart=Path(chart).expanduser().absolute() if chart else None,
    )


TEST_SETTINGS = load_test_settings()
