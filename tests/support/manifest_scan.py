"""Scan rendered manifests with checkov's Kubernetes framework, offline.

checkov pins many dependencies of its own, so it never enters the project's lock: it runs as
an isolated uv tool (``uv tool run --from checkov==<pin>``), which installs it into uv's cache
on first use. It reads YAML files only; nothing leaves this machine (``--skip-download``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from support.tools import missing

CHECKOV = "checkov==3.3.30"


class Finding(NamedTuple):
    """One failed check on one object of one rendering."""

    rendering: str  # e.g. "mlflow/defaults" or "dagma/production.yaml"
    check_id: str
    chart: str  # the chart that renders the object (its helm.sh/chart label)
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.check_id} {self.chart} {self.kind}/{self.name} ({self.rendering})"


def _uv() -> list[str]:
    """How to call uv: ``uv run`` exports UV; else uv on PATH; else the uv module."""
    if os.environ.get("UV"):
        return [os.environ["UV"]]
    if path := shutil.which("uv"):
        return [path]
    for python in ("python3", sys.executable):
        probe = subprocess.run([python, "-m", "uv", "--version"], capture_output=True)
        if probe.returncode == 0:
            return [python, "-m", "uv"]
    missing("uv (to run checkov as an isolated tool)", "make sync installs it")
    raise AssertionError("unreachable")


def _chart_of(doc: Mapping[str, Any]) -> str:
    label = doc.get("metadata", {}).get("labels", {}).get("helm.sh/chart", "unknown-0")
    return label.rsplit("-", 1)[0]


def _object_for(resource: str, docs: Sequence[Mapping[str, Any]]) -> tuple[str, str, str]:
    """(chart, kind, name) of checkov's resource id ``Kind.namespace.name[.labels...]``."""
    kind, _, rest = resource.partition(".")
    _, _, rest = rest.partition(".")
    matches = [
        doc
        for doc in docs
        if rest == doc["metadata"]["name"] or rest.startswith(doc["metadata"]["name"] + ".")
    ]
    if not matches:
        return "unknown", kind, rest
    doc = max(matches, key=lambda d: len(d["metadata"]["name"]))
    return _chart_of(doc), kind, doc["metadata"]["name"]


class ScanResult(NamedTuple):
    findings: list[Finding]
    passed: int  # checks passed, over every object of every rendering


def scan(renderings: Mapping[str, Sequence[Mapping[str, Any]]], workdir: Path) -> ScanResult:
    """Every failed checkov check over the manifests of each rendering (name → documents)."""
    files = {}
    for index, (name, docs) in enumerate(renderings.items()):
        path = workdir / f"rendering-{index:02d}.yaml"
        path.write_text(yaml.safe_dump_all([dict(d) for d in docs], sort_keys=False))
        files[path.name] = name
    command = [*_uv(), "tool", "run", "--from", CHECKOV, "checkov"]
    result = subprocess.run(
        [*command, "--directory", str(workdir), "--framework", "kubernetes", "--output", "json"]
        + ["--quiet", "--compact", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    # checkov exits 1 when a check fails; anything else is a broken run.
    assert result.returncode in (0, 1), f"checkov exited {result.returncode}: {result.stderr}"
    reports = json.loads(result.stdout or "[]")
    reports = reports if isinstance(reports, list) else [reports]
    findings = []
    for report in reports:
        for failed in report.get("results", {}).get("failed_checks", []):
            rendering = files[Path(failed["file_path"]).name]
            chart, kind, name = _object_for(failed["resource"], renderings[rendering])
            findings.append(Finding(rendering, failed["check_id"], chart, kind, name))
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    assert passed > 0, f"checkov passed no check at all: {result.stdout[:2000]}"
    return ScanResult(findings, passed)
