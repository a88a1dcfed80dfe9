"""Upstream reference data the tests check the project against, found in one place.

Some checks need files that never enter this repository: the official Dagster
chart's default values and values schemas, and Skaffold's config schema (see
``README.md`` in that directory). They are looked up under ``DAGMA_REFERENCE_DIR``,
by default ``<repository>/../shared/reference`` (the layout of the development and
CI machines). A clone elsewhere has no such directory: the tests that need it skip
there, saying what they would check and how to provide the data, and fail under
``CI=true`` (:func:`support.tools.missing`).
"""

from __future__ import annotations

from pathlib import Path

from support.settings import REFERENCE_DIR_VARIABLE, TEST_SETTINGS
from support.tools import missing

ENV_VARIABLE = REFERENCE_DIR_VARIABLE
REFERENCE_DIR = TEST_SETTINGS.reference_dir

# Every file the tests read, and what they check with it.
FILES = {
    "dagster-chart/values.yaml": (
        "the official Dagster chart's default values, with which the tests render "
        "charts/dagma the way `helm install` would"
    ),
    "dagster-chart/values.schema.json": (
        "the official Dagster chart's values schema, against which the tests validate "
        "dagma's `dagster:` values"
    ),
    "dagster-chart/charts/dagster-user-deployments/values.yaml": (
        "the default values of the Dagster user-deployments subchart, with which the tests "
        "render charts/dagma the way `helm install` would"
    ),
    "dagster-chart/charts/dagster-user-deployments/values.schema.json": (
        "the Dagster user-deployments subchart's values schema, against which the tests "
        "validate dagma's user-code deployment"
    ),
    "skaffold/v4beta14.json": (
        "Skaffold's skaffold/v4beta14 config schema, against which the tests validate skaffold.yaml"
    ),
}


def reference_file(relative: str) -> Path:
    """The path of reference file ``relative`` (a key of :data:`FILES`), or skip/fail.

    The message says what the test checks with the file, where it was looked for
    and how to point the tests at it.
    """
    path = REFERENCE_DIR / relative
    if not path.is_file():
        missing(
            f"reference data {relative} ({FILES[relative]})",
            f"it is not under {REFERENCE_DIR}. Set {ENV_VARIABLE} to a directory holding it "
            "(a copy of the development machines' ../shared/reference; see README, Testing)",
        )
    return path
