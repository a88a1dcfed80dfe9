"""The release tests' switch to the official Dagster chart, checked without a cluster.

The official chart cannot be downloaded here and its templates never enter this
repository, so these tests build stand-in charts in temporary directories: other names
and versions, a ``dagster`` chart without templates, and a tiny fake with one template
of its own (never Dagster's) to show what gets selected and where it goes.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import yaml
from support.helm import CHARTS
from support.settings import load_test_settings
from support.umbrella import (
    WEBSERVER_TEMPLATE,
    OfficialChartError,
    find_official_chart,
    pinned_version,
    umbrella_dir,
)

PINNED = pinned_version()
MLFLOW_CHART = yaml.safe_load((CHARTS / "mlflow" / "Chart.yaml").read_text())


def _chart(directory: Path, name: str = "dagster", version: str = PINNED, templates=True) -> Path:
    """A chart directory with ``Chart.yaml`` (and, if asked, a placeholder template)."""
    directory.mkdir(parents=True)
    (directory / "Chart.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v2", "name": name, "version": version})
    )
    if templates:
        (directory / WEBSERVER_TEMPLATE).parent.mkdir()
        (directory / WEBSERVER_TEMPLATE).write_text("# placeholder, not Dagster's template\n")
    return directory


def _archive(chart: Path, destination: Path) -> Path:
    """``chart`` packed as ``helm package`` does: ``<name>/…`` inside ``<name>-<version>.tgz``."""
    metadata = yaml.safe_load((chart / "Chart.yaml").read_text())
    path = destination / f"{metadata['name']}-{metadata['version']}.tgz"
    with tarfile.open(path, "w:gz") as archive:
        archive.add(chart, arcname=metadata["name"])
    return path


def test_pinned_version_is_the_dependency_in_charts_dagma() -> None:
    metadata = yaml.safe_load((CHARTS / "dagma" / "Chart.yaml").read_text())
    [dagster] = [d for d in metadata["dependencies"] if d["name"] == "dagster"]
    assert dagster["version"] == PINNED


def test_the_variable_becomes_an_absolute_path_and_blank_means_unset(tmp_path: Path) -> None:
    assert load_test_settings({}).dagster_chart is None
    assert load_test_settings({"DAGMA_DAGSTER_CHART": "  "}).dagster_chart is None
    found = load_test_settings({"DAGMA_DAGSTER_CHART": f" {tmp_path}/dagster "}).dagster_chart
    assert found == tmp_path / "dagster"


def test_without_the_variable_and_without_the_chart_the_stand_in_objects_are_used(
    tmp_path: Path,
) -> None:
    bundled = tmp_path / "charts"
    assert find_official_chart(None, bundled) is None  # no charts/ at all
    bundled.mkdir()
    _archive(_chart(tmp_path / "src" / "mlflow", name="mlflow", version="0.2.0"), bundled)
    assert find_official_chart(None, bundled) is None  # only MLflow, as dependency build leaves it


def test_a_chart_in_charts_dagma_charts_is_selected_directory_or_archive(tmp_path: Path) -> None:
    bundled = tmp_path / "charts"
    chart = _chart(bundled / "dagster")
    found = find_official_chart(None, bundled)
    assert found is not None and (found.path, found.version) == (chart, PINNED)

    archived = tmp_path / "archived"
    archived.mkdir()
    archive = _archive(_chart(tmp_path / "src" / "dagster"), archived)
    found = find_official_chart(None, archived)
    assert found is not None and found.path == archive


def test_the_variable_wins_over_charts_dagma_charts(tmp_path: Path) -> None:
    bundled = tmp_path / "bundled"
    _chart(bundled / "dagster", version="0.0.1")  # would be refused if it were looked at
    chart = _chart(tmp_path / "pulled" / "dagster")
    for setting in (chart, chart.parent):  # the chart itself, or a directory holding it
        found = find_official_chart(setting, bundled)
        assert found is not None and found.path == chart
        assert found.source == "DAGMA_DAGSTER_CHART"


@pytest.mark.parametrize(
    ("name", "version", "found"),
    [("not-dagster", PINNED, "'not-dagster' version"), ("dagster", "1.0.0", "version '1.0.0'")],
)
def test_another_chart_behind_the_variable_is_refused_naming_path_finding_and_fix(
    tmp_path: Path, name: str, version: str, found: str
) -> None:
    chart = _chart(tmp_path / "chart", name=name, version=version)
    with pytest.raises(OfficialChartError) as error:
        find_official_chart(chart, tmp_path / "none")
    message = str(error.value)
    assert f"DAGMA_DAGSTER_CHART={chart} holds the chart" in message
    assert found in message
    assert f"'dagster' version '{PINNED}' (charts/dagma/Chart.yaml)" in message
    assert f"--version {PINNED} --untar" in message and "unset DAGMA_DAGSTER_CHART" in message


def test_a_dagster_chart_without_templates_is_refused_as_a_values_only_copy(
    tmp_path: Path,
) -> None:
    chart = _chart(tmp_path / "dagster", templates=False)
    with pytest.raises(OfficialChartError, match="without its templates .* values-only copy"):
        find_official_chart(chart, tmp_path / "none")


def test_what_the_variable_names_must_exist_and_hold_one_chart(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(OfficialChartError, match=f"={missing}: no such file or directory"):
        find_official_chart(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(OfficialChartError, match="holds no Chart.yaml, dagster/ or dagster-"):
        find_official_chart(tmp_path / "empty")
    not_an_archive = tmp_path / "dagster-1.0.0.tgz"
    not_an_archive.write_text("not a chart")
    with pytest.raises(OfficialChartError, match=f"={not_an_archive} is not a Helm chart"):
        find_official_chart(not_an_archive)


def test_a_wrong_chart_in_charts_dagma_charts_is_refused_with_dependency_build_as_fix(
    tmp_path: Path,
) -> None:
    bundled = tmp_path / "charts"
    bundled.mkdir()
    archive = _archive(_chart(tmp_path / "src" / "dagster", version="1.0.0"), bundled)
    with pytest.raises(OfficialChartError) as error:
        find_official_chart(None, bundled)
    assert str(error.value).startswith(f"{archive} holds the chart 'dagster' version '1.0.0'")
    assert "helm dependency build charts/dagma" in str(error.value)
    _chart(bundled / "dagster")
    with pytest.raises(OfficialChartError, match="more than one Dagster chart: dagster, dagster-"):
        find_official_chart(None, bundled)


def test_the_selected_chart_goes_into_an_unmodified_copy_of_charts_dagma(tmp_path: Path) -> None:
    for chart in (_chart(tmp_path / "dir" / "dagster"),
                  _archive(_chart(tmp_path / "src" / "dagster"), tmp_path)):  # fmt: skip
        found = find_official_chart(chart)
        assert found is not None
        umbrella = umbrella_dir(official=found)
        for original in (CHARTS / "dagma").rglob("*"):
            if original.is_file() and "charts" not in original.relative_to(CHARTS).parts[1:]:
                copy = umbrella / original.relative_to(CHARTS / "dagma")
                assert copy.read_bytes() == original.read_bytes(), copy
        held = sorted(p.name for p in (umbrella / "charts").iterdir())
        assert held == sorted([f"mlflow-{MLFLOW_CHART['version']}.tgz", chart.name])
