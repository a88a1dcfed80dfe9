"""Render our charts with the real Helm engine (helm-python-sdk) and validate them.

No helm binary exists here; ``helm_python`` binds Helm v4's Go SDK. Rendering
returns NOTES.txt and ``helm test`` hooks alongside the manifests, so this
module separates them. Values files are merged the way ``helm -f a -f b`` does.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ROOT / "charts"
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0", "1.37.0")


def merge_values(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge values layers; later layers win, maps merge, lists replace."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
                merged[key] = merge_values(merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
    return merged


def load_values_files(paths: Iterable[str | Path]) -> dict[str, Any]:
    """Merge values files in order, like ``helm -f first -f second``."""
    layers = [yaml.safe_load(Path(p).read_text()) or {} for p in paths]
    return merge_values(*layers)


class Rendered:
    """One rendering of a chart, split into manifests, test hooks and NOTES."""

    def __init__(self, files: Mapping[str, str]) -> None:
        self.notes = ""
        self.manifests: list[dict[str, Any]] = []
        self.tests: list[dict[str, Any]] = []
        for path, text in sorted(files.items()):
            if path.endswith("NOTES.txt"):
                self.notes += text
                continue
            for doc in yaml.safe_load_all(text):
                if not doc:
                    continue
                hooks = doc.get("metadata", {}).get("annotations", {}).get("helm.sh/hook", "")
                (self.tests if "test" in hooks.split(",") else self.manifests).append(doc)

    def all(self) -> list[dict[str, Any]]:
        return self.manifests + self.tests

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.all() if doc["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        """The single object of ``kind`` (and ``name``, if given)."""
        found = [d for d in self.of_kind(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]


def render(
    chart: str | Path,
    values: Mapping[str, Any] | None = None,
    *,
    values_files: Iterable[str | Path] = (),
    release: str = "dagma",
    namespace: str = "dagma",
    revision: int = 1,
) -> Rendered:
    """Render ``chart`` (a name under charts/ or a path) after schema validation.

    ``revision`` 1 renders an install; a higher one renders the upgrade to that revision.
    """
    chart_dir = chart_path(chart)
    merged = merge_values(load_values_files(values_files), values or {})
    with helm_python.Chart.load(chart_dir) as loaded:
        loaded.validate_schema(merged)
        files = loaded.render(
            merged,
            name=release,
            namespace=namespace,
            revision=revision,
            is_install=revision == 1,
            is_upgrade=revision > 1,
        )
    return Rendered(files)


def chart_path(chart: str | Path) -> Path:
    """A chart directory: a name under charts/, or a path."""
    return Path(chart) if Path(chart).is_absolute() else CHARTS / chart


# helm lint severities above "info" (1): warning (2) and error (4).
LINT_WARNING = 2


def lint_problems(
    chart: str | Path,
    values: Mapping[str, Any] | None = None,
    *,
    kube_versions: Iterable[str] = KUBERNETES_VERSIONS,
) -> list[str]:
    """``helm lint --strict`` findings of warning severity or worse, for each Kubernetes version."""
    problems = []
    for version in kube_versions:
        report = helm_python.lint(
            chart_path(chart), dict(values or {}), strict=True, kube_version=f"v{version}"
        )
        problems += [f"{version}: {e}" for e in report.get("errors", [])]
        problems += [
            f"{version}: {m['path']}: {m['error']}"
            for m in report.get("messages", [])
            if m.get("severity", 0) >= LINT_WARNING
        ]
    return problems


def validate_strict(docs: Iterable[Mapping[str, Any]]) -> None:
    """Validate every document strictly against each supported Kubernetes version."""
    for doc in docs:
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(dict(doc), version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
                raise AssertionError(f"{name} invalid for Kubernetes {version}: {exc}") from exc
