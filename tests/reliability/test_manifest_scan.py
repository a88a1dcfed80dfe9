"""checkov's Kubernetes checks over every rendering of both charts: fixed, or justified in writing.

Renderings: charts/mlflow with each option of support.mlflow_options, and charts/dagma (its own
objects and the MLflow subchart's) with its defaults and each file under values/. The set of
(check, chart, kind) that fail must equal the table "Scanner findings" in docs/reliability.md:
a new failure needs a fix or a reason there, and a reason whose failure is gone must go too.
A canary rendering with a privileged container proves the scanner is looking.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from pathlib import Path

import pytest
from support.helm import ROOT, render
from support.manifest_scan import ScanResult, scan
from support.mlflow_options import OPTIONS
from support.umbrella import VALUES_FILES, render_umbrella, values_paths

DOCS = ROOT / "docs" / "reliability.md"
CANARY = "canary/privileged"
# | CKV_K8S_11 | mlflow | Deployment, Job, Pod | why |
ROW = re.compile(r"^\|\s*(CKV2?_K8S_\d+)\s*\|\s*(\w+)\s*\|\s*([A-Za-z, ]+?)\s*\|.+\|\s*$")


def _canary() -> list[dict]:
    deployment = copy.deepcopy(render("mlflow").one("Deployment"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"] = {"privileged": True, "allowPrivilegeEscalation": True}
    return [deployment]


def _renderings() -> dict[str, list[dict]]:
    renderings = {
        f"mlflow/{name}": render("mlflow", values).all() for name, values in OPTIONS.items()
    }
    renderings["dagma/defaults"] = render_umbrella().all()
    for name in VALUES_FILES:
        renderings[f"dagma/{name}"] = render_umbrella(values_files=values_paths([name])).all()
    renderings[CANARY] = _canary()
    return renderings


def justified() -> set[tuple[str, str, str]]:
    """(check, chart, kind) of every row of the "Scanner findings" table."""
    text = DOCS.read_text()
    section = text.split("## Scanner findings", 1)[1].split("\n## ", 1)[0]
    rows = set()
    for line in section.splitlines():
        if match := ROW.match(line):
            check, chart, kinds = match.groups()
            rows |= {(check, chart, kind.strip()) for kind in kinds.split(",")}
    return rows


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> ScanResult:
    scanned = scan(_renderings(), Path(tmp_path_factory.mktemp("checkov")))
    ours = [f for f in scanned.findings if f.rendering != CANARY]
    per_rendering = Counter(f.rendering for f in ours)
    print(f"checkov: {scanned.passed} checks passed, {len(ours)} failed: {dict(per_rendering)}")
    return scanned


def test_the_scanner_catches_a_privileged_container(result: ScanResult) -> None:
    caught = {f.check_id for f in result.findings if f.rendering == CANARY}
    assert {"CKV_K8S_16", "CKV_K8S_20"} <= caught, caught


def test_every_failed_check_on_our_objects_is_fixed_or_justified(result: ScanResult) -> None:
    ours = [f for f in result.findings if f.rendering != CANARY]
    reasons = justified()
    unjustified = sorted(str(f) for f in ours if (f.check_id, f.chart, f.kind) not in reasons)
    assert not unjustified, "fix these, or justify them in docs/reliability.md:\n" + "\n".join(
        unjustified
    )


def test_every_justification_still_matches_a_failure(result: ScanResult) -> None:
    failing = {(f.check_id, f.chart, f.kind) for f in result.findings if f.rendering != CANARY}
    stale = justified() - failing
    assert not stale, f"docs/reliability.md justifies checks that no longer fail: {sorted(stale)}"


def test_the_justification_table_is_not_empty_by_accident() -> None:
    assert len(justified()) >= 5
