"""charts/dagma with its dependencies, assembled offline: the one umbrella assembler of the tests.

``helm dependency build`` would fetch the Dagster chart from the internet, which tests
must not do (and Helm silently drops a dependency missing from ``charts/``). So
:func:`umbrella_dir` copies charts/dagma, unmodified, to a temporary directory and fills
its ``charts/`` as ``helm dependency build`` would:

- the real MLflow subchart: charts/mlflow packaged, exactly what Helm does for a
  ``file://`` dependency;
- the Dagster chart, one of: nothing (dagma's own templates and MLflow's are what is
  rendered); the *values-only stand-in* (the official ``values.yaml`` files from the
  reference data, no templates), so Helm coalesces dagma's ``dagster:`` block with the
  chart's defaults exactly as an install would; or the official chart itself, when it is
  on the machine (:func:`find_official_chart`), copied as found.

Where the official chart is looked for, first found wins:

1. ``DAGMA_DAGSTER_CHART`` (read by :mod:`support.settings`): the chart's directory, its
   ``.tgz``, or a directory holding ``dagster/`` or ``dagster-<version>.tgz``;
2. charts/dagma/charts/, as ``helm dependency build charts/dagma`` leaves it
   (``dagster-<version>.tgz``) or with a ``dagster/`` directory placed there.

Neither: the release tests apply the chart's objects themselves
(:mod:`support.dagster_manifests`). What is found must be the chart charts/dagma pins
(name ``dagster``, the version in its Chart.yaml) with its templates; anything else stops
the tests with an error naming the path, what was found there and the fix, rather than
silently taking the other path.
"""

from __future__ import annotations

import atexit
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import helm_python
import yaml

from support.helm import CHARTS, ROOT, Rendered, load_values_files, merge_values
from support.reference_data import reference_file
from support.settings import DAGSTER_CHART_VARIABLE

VALUES_DIR = ROOT / "values"
VALUES_FILES = ("local.yaml", "production.yaml")
RELEASE = "dagma"
NAMESPACE = "dagma"
BUNDLED_DIR = CHARTS / "dagma" / "charts"
NAME = "dagster"
# Every release of the chart has it; the values-only stand-in has no templates.
WEBSERVER_TEMPLATE = "templates/deployment-webserver.yaml"


class OfficialChartError(ValueError):
    """What was found where the official Dagster chart was expected is not that chart."""


@dataclass(frozen=True)
class OfficialChart:
    """The official Dagster chart found on the machine: a chart directory or a ``.tgz``."""

    path: Path
    version: str
    source: str  # where it was looked for: the variable, or charts/dagma/charts/


def pinned_version(umbrella: Path = CHARTS / "dagma") -> str:
    """The Dagster chart version charts/dagma's Chart.yaml depends on."""
    metadata = yaml.safe_load((umbrella / "Chart.yaml").read_text())
    versions = [d["version"] for d in metadata.get("dependencies", []) if d["name"] == NAME]
    assert len(versions) == 1, f"{umbrella}/Chart.yaml declares {NAME!r} {len(versions)} times"
    return versions[0]


def _write_values_stand_in(charts_dir: Path, version: str) -> None:
    """The Dagster chart's values (no templates) as ``charts_dir/dagster``.

    Its ``Chart.yaml`` declares the user-deployments subchart like the real one (present,
    with its official values), so Helm coalesces both levels.
    """
    chart = charts_dir / NAME
    subchart = chart / "charts" / "dagster-user-deployments"
    subchart.mkdir(parents=True)
    shutil.copyfile(reference_file("dagster-chart/values.yaml"), chart / "values.yaml")
    sub_values = reference_file("dagster-chart/charts/dagster-user-deployments/values.yaml")
    shutil.copyfile(sub_values, subchart / "values.yaml")
    metadata = {
        "apiVersion": "v2",
        "name": NAME,
        "version": version,
        "description": "values-only stand-in of the official Dagster chart (tests only)",
        "dependencies": [
            {
                "name": "dagster-user-deployments",
                "version": "0.0.1-dev",
                "condition": "dagster-user-deployments.enableSubchart",
            }
        ],
    }
    (chart / "Chart.yaml").write_text(yaml.safe_dump(metadata))
    sub_metadata = {"apiVersion": "v2", "name": "dagster-user-deployments", "version": "0.0.1-dev"}
    (subchart / "Chart.yaml").write_text(yaml.safe_dump(sub_metadata))


@cache
def umbrella_dir(
    *, with_dagster_values: bool = False, official: OfficialChart | None = None
) -> Path:
    """A temporary copy of charts/dagma whose ``charts/`` holds MLflow and, if asked, the
    Dagster chart: ``official`` as found, else the values-only stand-in
    (``with_dagster_values``). Each variant is built once per test process."""
    workdir = Path(tempfile.mkdtemp(prefix="dagma-umbrella-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    chart = workdir / "dagma"
    shutil.copytree(CHARTS / "dagma", chart, ignore=shutil.ignore_patterns("charts"))
    (chart / "charts").mkdir()
    helm_python.package(CHARTS / "mlflow", destination=chart / "charts")
    if official is not None and official.path.is_dir():
        shutil.copytree(official.path, chart / "charts" / NAME)
    elif official is not None:
        shutil.copyfile(official.path, chart / "charts" / official.path.name)
    elif with_dagster_values:
        _write_values_stand_in(chart / "charts", pinned_version())
    return chart


def values_paths(names: Iterable[str]) -> list[Path]:
    """Paths of files under values/ (e.g. ``["local.yaml"]``)."""
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


# --- the official Dagster chart, when it is on the machine ----------------------


def _fix(source: str, version: str) -> str:
    fetch = (
        f"fetch it on a machine that can (`helm pull {NAME} --repo <the repository in "
        f"charts/dagma/Chart.yaml> --version {version} --untar`)"
    )
    if source == DAGSTER_CHART_VARIABLE:
        return (
            f"Fix: {fetch} and set {DAGSTER_CHART_VARIABLE} to the resulting dagster/ "
            f"directory, or unset {DAGSTER_CHART_VARIABLE} to run with the chart's objects "
            "built by the tests."
        )
    return (
        f"Fix: run `helm dependency build charts/dagma` where the chart repository is "
        f"reachable (or {fetch} into charts/dagma/charts/), or remove it from "
        "charts/dagma/charts/ to run with the chart's objects built by the tests."
    )


def _candidates(directory: Path) -> list[Path]:
    """What in ``directory`` looks like the Dagster chart, as ``charts/`` would hold it."""
    found = [directory / NAME] if (directory / NAME).is_dir() else []
    return found + sorted(directory.glob(f"{NAME}-[0-9]*.tgz"))


def _read_chart(path: Path) -> tuple[dict, bool]:
    """``Chart.yaml`` of the chart at ``path`` (directory or .tgz), and whether it has templates."""
    if path.is_dir():
        chart_file = path / "Chart.yaml"
        if not chart_file.is_file():
            raise FileNotFoundError(f"no Chart.yaml in {path}")
        return yaml.safe_load(chart_file.read_text()) or {}, (path / WEBSERVER_TEMPLATE).is_file()
    with tarfile.open(path) as archive:  # helm package: <name>/Chart.yaml, <name>/templates/…
        names = archive.getnames()
        tops = {name.split("/", 1)[0] for name in names}
        chart_files = [f"{top}/Chart.yaml" for top in sorted(tops) if f"{top}/Chart.yaml" in names]
        if not chart_files:
            raise FileNotFoundError(f"no <chart>/Chart.yaml in the archive {path}")
        member = archive.extractfile(chart_files[0])
        assert member is not None
        top = chart_files[0].split("/", 1)[0]
        return yaml.safe_load(member.read()) or {}, f"{top}/{WEBSERVER_TEMPLATE}" in names


def _checked(path: Path, source: str, version: str) -> OfficialChart:
    where = f"{DAGSTER_CHART_VARIABLE}={path}" if source == DAGSTER_CHART_VARIABLE else str(path)
    try:
        metadata, has_templates = _read_chart(path)
    except (OSError, tarfile.TarError, yaml.YAMLError) as error:
        raise OfficialChartError(
            f"{where} is not a Helm chart: {error}. {_fix(source, version)}"
        ) from None
    found = (metadata.get("name"), str(metadata.get("version")))
    if found != (NAME, version):
        raise OfficialChartError(
            f"{where} holds the chart {found[0]!r} version {found[1]!r}, but charts/dagma pins "
            f"the official Dagster chart {NAME!r} version {version!r} (charts/dagma/Chart.yaml)."
            f" {_fix(source, version)}"
        )
    if not has_templates:
        raise OfficialChartError(
            f"{where} is the chart {NAME!r} {version} without its templates "
            f"({WEBSERVER_TEMPLATE} is missing): a values-only copy, not the official chart. "
            f"{_fix(source, version)}"
        )
    return OfficialChart(path, version, source)


def find_official_chart(
    setting: Path | None, bundled: Path = BUNDLED_DIR, version: str | None = None
) -> OfficialChart | None:
    """The official Dagster chart to install, or None to build its objects (see the module doc).

    ``setting`` is ``DAGMA_DAGSTER_CHART``; raises :class:`OfficialChartError` for what is
    not the pinned chart.
    """
    version = version or pinned_version()
    if setting is not None:
        if not setting.exists():
            raise OfficialChartError(
                f"{DAGSTER_CHART_VARIABLE}={setting}: no such file or directory. "
                f"{_fix(DAGSTER_CHART_VARIABLE, version)}"
            )
        if setting.is_dir() and not (setting / "Chart.yaml").exists():
            candidates = _candidates(setting)
            if len(candidates) != 1:
                what = ", ".join(p.name for p in candidates) or (
                    "no Chart.yaml, dagster/ or dagster-*.tgz"
                )
                raise OfficialChartError(
                    f"{DAGSTER_CHART_VARIABLE}={setting} holds {what}: expected exactly one "
                    f"Dagster chart. {_fix(DAGSTER_CHART_VARIABLE, version)}"
                )
            return _checked(candidates[0], DAGSTER_CHART_VARIABLE, version)
        return _checked(setting, DAGSTER_CHART_VARIABLE, version)
    candidates = _candidates(bundled) if bundled.is_dir() else []
    if not candidates:
        return None
    if len(candidates) > 1:
        raise OfficialChartError(
            f"{bundled} holds more than one Dagster chart: "
            f"{', '.join(p.name for p in candidates)}. Keep only dagster-{version}.tgz "
            f"(or dagster/): remove the others and rerun `helm dependency build charts/dagma`."
        )
    return _checked(candidates[0], str(bundled), version)
