"""The search filter for the example asset's MLflow run of a Dagster run, in the tests.

A Dagster run of dagma's code location records a parent run (tagged ``dagster.run_id`` too)
and the example asset's run nested under it; the tests check the latter. (The tests search
to see what is there; dagma itself never searches.)
"""

from __future__ import annotations

from dagma import example


def example_run_filter(dagster_run_id: str) -> str:
    """``search_runs`` filter for the ``train_model_stub`` run of ``dagster_run_id``."""
    return (
        f"tags.`dagster.run_id` = '{dagster_run_id}' "
        f"AND tags.`dagster.asset_key` = '{example.ASSET}'"
    )
