"""Write each chart's README values table from the ``## @param`` lines of its values.yaml.

The format is bitnami's readme-generator's: ``## @section <title>`` starts a table,
``## @param <dotted.key> <description>`` documents a value, whose default is read from
values.yaml itself. The tables go between the two ``values-table`` markers of README.md;
nothing else is touched.

    python charts/values_tables.py          # rewrite the tables (make chart-docs)
    python charts/values_tables.py --check  # exit 1, with the diff, when a table is stale

Both refuse a values.yaml with a value no ``@param`` line covers, or a ``@param`` line for a
value that does not exist. A ``@param`` for a map covers every key under it.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHARTS_DIR = Path(__file__).resolve().parent
CHARTS = ("mlflow", "dagma")
BEGIN = "<!-- values-table: generated from values.yaml by `make chart-docs`; do not edit -->"
END = "<!-- /values-table -->"
PARAM = re.compile(r"^\s*## @param (?P<key>\S+) (?P<text>.+)$")
SECTION = re.compile(r"^\s*## @section (?P<title>.+)$")
# Longer defaults are left to values.yaml: a table cell is no place for a pod spec.
LONGEST_DEFAULT = 80


@dataclass(frozen=True)
class Param:
    """One ``## @param`` line: the value's dotted key, its section and description."""

    key: str
    section: str
    description: str


def read_params(values_text: str) -> list[Param]:
    """The ``@param`` lines of a values.yaml, in order, each with its section."""
    params, section = [], ""
    for line in values_text.splitlines():
        if match := SECTION.match(line):
            section = match["title"].strip()
        elif match := PARAM.match(line):
            params.append(Param(match["key"], section, match["text"].strip()))
    return params


def leaves(values: Any, prefix: str = "") -> list[str]:
    """Dotted keys of ``values``: maps recurse; lists, scalars and empty maps are leaves."""
    if isinstance(values, dict) and values:
        return [leaf for key, value in values.items() for leaf in leaves(value, f"{prefix}{key}.")]
    return [prefix.rstrip(".")]


def _covers(param: str, leaf: str) -> bool:
    return leaf == param or leaf.startswith(f"{param}.")


def problems(values_text: str) -> list[str]:
    """Values without a ``@param`` line, and ``@param`` lines for values that do not exist."""
    params = read_params(values_text)
    values = yaml.safe_load(values_text) or {}
    found = leaves(values)
    undocumented = [
        f"{leaf}: no ## @param line (add one above it in values.yaml)"
        for leaf in found
        if not any(_covers(p.key, leaf) for p in params)
    ]
    stale = [
        f"{p.key}: ## @param line for a value values.yaml does not have (remove the line)"
        for p in params
        if not any(_covers(p.key, leaf) for leaf in found)
    ]
    return undocumented + stale


def _lookup(values: Any, key: str) -> Any:
    for part in key.split("."):
        values = values[part]
    return values


def _default(values: dict[str, Any], param: Param) -> str:
    value = _lookup(values, param.key)
    if isinstance(value, str):
        text = f'"{value}"' if value == "" else value
    else:
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False)
        text = text.strip().removesuffix("...").strip()
    if len(text) > LONGEST_DEFAULT:
        return "see values.yaml"
    return f"`{text}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def values_table(values_text: str) -> str:
    """The Markdown between the markers: one table per ``@section``."""
    values = yaml.safe_load(values_text) or {}
    blocks: list[list[str]] = []
    section = None
    for param in read_params(values_text):
        if param.section != section or not blocks:
            section = param.section
            heading = [f"### {section}", ""] if section else []
            blocks.append([*heading, "| Name | Description | Default |", "| --- | --- | --- |"])
        row = f"| `{param.key}` | {_cell(param.description)} | {_cell(_default(values, param))} |"
        blocks[-1].append(row)
    return "\n\n".join("\n".join(block) for block in blocks)


def rewrite(readme: str, table: str, *, name: str = "README.md") -> str:
    """``readme`` with ``table`` between the markers (which must each appear once)."""
    if readme.count(BEGIN) != 1 or readme.count(END) != 1:
        raise ValueError(f"{name}: needs the markers {BEGIN!r} and {END!r} once each")
    head, rest = readme.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{table}\n{END}{tail}"


def expected_readme(chart: str) -> tuple[str, str]:
    """``(current, expected)`` README.md text of ``chart``; raises if values.yaml is incomplete."""
    chart_dir = CHARTS_DIR / chart
    values_text = (chart_dir / "values.yaml").read_text()
    found = problems(values_text)
    if found:
        raise ValueError(f"charts/{chart}/values.yaml:\n  " + "\n  ".join(found))
    current = (chart_dir / "README.md").read_text()
    return current, rewrite(current, values_table(values_text), name=f"charts/{chart}/README.md")


def diff(chart: str, current: str, expected: str) -> str:
    """A unified diff from ``current`` to ``expected`` README text."""
    path = f"charts/{chart}/README.md"
    lines = difflib.unified_diff(
        current.splitlines(keepends=True), expected.splitlines(keepends=True), path, path
    )
    return "".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or with --check, compare) the values table of every chart."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale tables")
    args = parser.parse_args(argv)
    status = 0
    for chart in CHARTS:
        try:
            current, expected = expected_readme(chart)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            status = 1
            continue
        if current == expected:
            print(f"charts/{chart}/README.md: values table up to date")
            continue
        if args.check:
            print(diff(chart, current, expected), end="", file=sys.stderr)
            print(f"charts/{chart}/README.md is stale: run `make chart-docs`", file=sys.stderr)
            status = 1
        else:
            (CHARTS_DIR / chart / "README.md").write_text(expected)
            print(f"wrote the values table of charts/{chart}/README.md")
    return status


if __name__ == "__main__":
    sys.exit(main())
