"""The switch of the release tests: the official Dagster chart when it is on the machine.

charts/dagma depends on the official Dagster chart, which cannot be downloaded here. When
it is available, the release goes in as a user installs it: charts/dagma unmodified, that
chart in its ``charts/``. Where it is looked for, first found wins:

1. ``DAGMA_DAGSTER_CHART`` (read by :mod:`support.settings`): the chart's directory, its
   ``.tgz``, or a directory holding ``dagster/`` or ``dagster-<version>.tgz``;
2. charts/dagma/charts/, as ``helm dependency build charts/dagma`` leaves it
   (``dagster-<version>.tgz``) or with a ``dagster/`` directory placed there.

Neither: the release tests apply the chart's objects themselves (:mod:`dagster_release`).
What is found must be the chart charts/dagma pins (name ``dagster``, the version in its
Chart.yaml) with its templates; anything else stops the tests with an error naming the
path, what was found there and the fix, rather than silently taking the other path.
"""

from __future__ import annotations

import atexit
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import helm_python
import yaml
from support.helm import CHARTS
from support.settings import DAGSTER_CHART_VARIABLE

BUNDLED_DIR = CHARTS / "dagma" / "charts"
NAME = "dagster"
# Every release of the chart has it; the values-only stand-in of the tests has no templates.
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


def umbrella_with(chart: OfficialChart) -> Path:
    """A temporary copy of charts/dagma, unmodified, whose ``charts/`` holds both dependencies.

    What ``helm dependency build`` leaves: the MLflow chart packaged from charts/mlflow and
    the official Dagster chart (copied as found, directory or archive).
    """
    workdir = Path(tempfile.mkdtemp(prefix="dagma-official-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    umbrella = workdir / "dagma"
    shutil.copytree(CHARTS / "dagma", umbrella, ignore=shutil.ignore_patterns("charts"))
    (umbrella / "charts").mkdir()
    helm_python.package(CHARTS / "mlflow", destination=umbrella / "charts")
    if chart.path.is_dir():
        shutil.copytree(chart.path, umbrella / "charts" / NAME)
    else:
        shutil.copyfile(chart.path, umbrella / "charts" / chart.path.name)
    return umbrella
