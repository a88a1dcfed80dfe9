"""A local SQLite store needs no extra: what the docs say about it is what uv.lock resolves.

dagma once offered ``dagma[local]`` for SQLAlchemy and Alembic, which mlflow-skinny leaves
out; Dagster requires both, so every install of dagma has them. The lock file is what
``uv tree`` prints from: dagma requires dagster, dagster requires both, and no page offers
the extra any more.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SQL_PACKAGES = {"sqlalchemy", "alembic"}


def _locked() -> dict[str, dict]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {package["name"]: package for package in lock["package"]}


def test_dagster_brings_the_sql_packages_of_a_sqlite_store() -> None:
    packages = _locked()
    dagma_needs = {dependency["name"] for dependency in packages["dagma"]["dependencies"]}
    dagster_needs = {dependency["name"] for dependency in packages["dagster"]["dependencies"]}
    assert "dagster" in dagma_needs
    assert dagster_needs >= SQL_PACKAGES


def test_no_extra_is_offered_for_what_every_install_has() -> None:
    # The one extra is the training example's (scikit-learn and friends), nothing SQL.
    dagma = _locked()["dagma"]
    assert set(dagma.get("optional-dependencies", {})) <= {"training"}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert set(project.get("optional-dependencies", {})) == {"training"}
    training = {dependency["name"] for dependency in dagma["optional-dependencies"]["training"]}
    assert not training & SQL_PACKAGES, training
    offering = [f"{doc.relative_to(ROOT)}" for doc in DOCS if "dagma[local]" in doc.read_text()]
    assert offering == []


def test_settings_accept_a_sqlite_store_in_this_environment() -> None:
    from dagma.settings import load_settings

    settings = load_settings(
        {"MLFLOW_USE_TRACKING": "true", "MLFLOW_TRACKING_URI": "sqlite:////srv/mlflow/mlflow.db"}
    )
    assert settings.local_store and settings.tracking_enabled
