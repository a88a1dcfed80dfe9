"""Each chart's README values table is the one `make chart-docs` writes from values.yaml.

charts/values_tables.py reads the ``## @param`` lines (bitnami's readme-generator format);
these tests fail, naming the chart and showing the diff, when a README was edited by hand
or values.yaml changed without `make chart-docs`, and when a value has no ``@param`` line.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from types import ModuleType

import pytest
from support.helm import CHARTS

TOOL = CHARTS / "values_tables.py"
CHART_NAMES = ("mlflow", "dagma")


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("values_tables", TOOL)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


values_tables = _tool()


def test_the_tool_covers_every_chart() -> None:
    charts = {path.parent.name for path in CHARTS.glob("*/Chart.yaml")}
    assert set(values_tables.CHARTS) == charts == set(CHART_NAMES)


@pytest.mark.parametrize("chart", CHART_NAMES)
def test_every_value_has_a_param_line_and_every_param_line_a_value(chart: str) -> None:
    found = values_tables.problems((CHARTS / chart / "values.yaml").read_text())
    assert not found, f"charts/{chart}/values.yaml:\n" + "\n".join(found)


@pytest.mark.parametrize("chart", CHART_NAMES)
def test_readme_values_table_is_the_generated_one(chart: str) -> None:
    current, expected = values_tables.expected_readme(chart)
    assert current == expected, (
        f"charts/{chart}/README.md's values table differs from the @param lines of "
        f"charts/{chart}/values.yaml; run `make chart-docs`:\n"
        + values_tables.diff(chart, current, expected)
    )


@pytest.mark.parametrize("chart", CHART_NAMES)
def test_every_param_is_a_row_with_its_default(chart: str) -> None:
    readme = (CHARTS / chart / "README.md").read_text()
    params = values_tables.read_params((CHARTS / chart / "values.yaml").read_text())
    assert params
    missing = [p.key for p in params if f"| `{p.key}` | " not in readme]
    assert not missing, f"charts/{chart}/README.md lacks rows for {missing}"


def test_check_mode_passes_on_the_committed_readmes() -> None:
    result = subprocess.run(
        [sys.executable, str(TOOL), "--check"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


VALUES = """\
## @section Things
## @param a.b First value
a:
  b: 1
  ## @param a.c A map, documented as a whole
  c: {x: 1, y: [2]}
## @param gone A value that was removed
"""


def test_a_value_without_a_param_line_and_a_stale_param_line_are_reported() -> None:
    text = VALUES + "d: 4\n"
    assert values_tables.problems(text) == [
        "d: no ## @param line (add one above it in values.yaml)",
        "gone: ## @param line for a value values.yaml does not have (remove the line)",
    ]


def test_the_table_shows_each_default_and_only_the_marked_part_changes() -> None:
    text = VALUES.replace("## @param gone A value that was removed\n", "")
    table = values_tables.values_table(text)
    assert table.splitlines() == [
        "### Things",
        "",
        "| Name | Description | Default |",
        "| --- | --- | --- |",
        "| `a.b` | First value | `1` |",
        "| `a.c` | A map, documented as a whole | `{x: 1, y: [2]}` |",
    ]
    readme = f"# Chart\n\n{values_tables.BEGIN}\n| stale |\n{values_tables.END}\n\n## After\n"
    rewritten = values_tables.rewrite(readme, table)
    assert rewritten.startswith(f"# Chart\n\n{values_tables.BEGIN}\n### Things\n")
    assert rewritten.endswith(f"`{{x: 1, y: [2]}}` |\n{values_tables.END}\n\n## After\n")
    assert "| stale |" not in rewritten


def test_a_hand_edited_table_is_caught_with_its_diff(tmp_path, monkeypatch) -> None:
    chart = tmp_path / "mlflow"
    chart.mkdir()
    (chart / "values.yaml").write_text((CHARTS / "mlflow" / "values.yaml").read_text())
    readme = (CHARTS / "mlflow" / "README.md").read_text()
    (chart / "README.md").write_text(readme.replace("| `10Gi` |", "| `20Gi` |"))
    monkeypatch.setattr(values_tables, "CHARTS_DIR", tmp_path)
    current, expected = values_tables.expected_readme("mlflow")
    diff = values_tables.diff("mlflow", current, expected)
    assert "-| `persistence.size` | Size of the created claim | `20Gi` |" in diff
    assert "+| `persistence.size` | Size of the created claim | `10Gi` |" in diff
