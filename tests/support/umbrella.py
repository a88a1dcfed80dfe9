"""charts/dagma with its dependencies, assembled offline for tests.

``helm dependency build`` would fetch the Dagster chart from the internet, which
tests must not do (and Helm silently drops a dependency missing from
``charts/``). So the umbrella is copied to a temporary directory and given:

- the real MLflow subchart: charts/mlflow packaged into its ``charts/``, exactly
  what ``helm dependency build`` does for a ``file://`` dependency;
- optionally, the values-only stand-in of the Dagster chart
  (:mod:`support.dagster_chart`), so Helm coalesces the ``dagster:`` values
  with the official defaults.

Each variant is built once per test process.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import helm_python

from support.dagster_chart import write_values_stand_in
from support.helm import CHARTS, ROOT, Rendered, load_values_files, merge_values

VALUES_DIR = ROOT / "values"
VALUES_FILES = ("kind.yaml", "minikube.yaml", "production.yaml")
RELEASE = "dagma"
NAMESPACE = "dagma"


def _dependency_version(name: str) -> str:
    with helm_python.Chart.load(CHARTS / "dagma") as chart:
        versions = [d["version"] for d in chart.metadata["dependencies"] if d["name"] == name]
    assert len(versions) == 1, f"charts/dagma/Chart.yaml declares {name!r} {len(versions)} times"
    return versions[0]


@cache
def umbrella_dir(*, with_dagster_values: bool = False) -> Path:
    """A temporary charts/dagma whose ``charts/`` holds MLflow (and the Dagster stand-in)."""
    workdir = Path(tempfile.mkdtemp(prefix="dagma-umbrella-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    chart = workdir / "dagma"
    shutil.copytree(CHARTS / "dagma", chart, ignore=shutil.ignore_patterns("charts"))
    (chart / "charts").mkdir()
    helm_python.package(CHARTS / "mlflow", destination=chart / "charts")
    if with_dagster_values:
        write_values_stand_in(chart / "charts", _dependency_version("dagster"))
    return chart


def values_paths(names: Iterable[str]) -> list[Path]:
    """Paths of files under values/ (e.g. ``["kind.yaml"]``)."""
    return [VALUES_DIR / name for name in names]


def render_umbrella(
    values: Mapping[str, Any] | None = None, *, values_files: Iterable[str | Path] = ()
) -> Rendered:
    """Render dagma's templates and the MLflow subchart (Dagster's are not available).

    ``Chart.render`` validates like ``helm install``: after dropping subcharts whose
    condition is false (support.helm.render validates before, so a disabled MLflow
    subchart would still be checked against its schema).
    """
    user_values = merge_values(load_values_files(values_files), values or {})
    with helm_python.Chart.load(umbrella_dir()) as chart:
        files = chart.render(user_values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return Rendered(files)


def effective_values(
    values: Mapping[str, Any] | None = None, *, values_files: Iterable[str | Path] = ()
) -> dict[str, Any]:
    """All values an install would compute, Dagster's official defaults included.

    This is Helm's own coalescing (``merge_values``): maps merge, lists and
    scalars from the user replace the defaults, ``null`` deletes a default.
    """
    user_values = merge_values(load_values_files(values_files), values or {})
    with helm_python.Chart.load(umbrella_dir(with_dagster_values=True)) as chart:
        return chart.merge_values(user_values)
