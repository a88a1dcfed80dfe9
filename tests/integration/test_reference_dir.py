"""`make test` in a clone elsewhere: no ../shared/reference, yet collection is clean.

The tests that need the upstream reference data skip there, saying what they
would check and how to provide it (``DAGMA_REFERENCE_DIR``), and fail under
``CI=true``. Proved on a copy of the repository's files in a temporary directory
that has no ``../shared`` next to it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from support.reference_data import ENV_VARIABLE, REFERENCE_DIR, reference_file
from support.tools import require_executable

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_TESTS = [
    "tests/test_skaffold.py::test_skaffold_yaml_is_valid_for_v4beta14",
    "tests/charts/test_dagma_dagster_values.py::"
    "test_dagster_values_validate_against_the_official_schema",
    "tests/charts/test_dagma_run_pod.py::test_mlflow_network_policy_admits_the_run_pods",
]


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's files (tracked and new, not ignored) copied to a fresh directory."""
    git = require_executable("git", "install git (Debian: apt-get install git)")
    listed = subprocess.run(
        [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout  # fmt: skip
    target = tmp_path_factory.mktemp("elsewhere") / "dagma"
    for name in filter(None, listed.split(b"\0")):
        source = ROOT / os.fsdecode(name)
        if source.is_file():  # skips files deleted in the working tree
            destination = target / os.fsdecode(name)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    assert not (target.parent / "shared").exists()
    return target


def _pytest(clone: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """pytest in ``clone`` with only ``env`` on top of a clean environment (no CI, no data dir)."""
    dropped = {"CI", ENV_VARIABLE, "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST"}
    base = {k: v for k, v in os.environ.items() if k not in dropped}
    base["PYTHONPATH"] = str(clone / "src")  # the clone's dagma, not this checkout's
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=clone, env={**base, **env}, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def _outcomes(clone: Path, *tests: str, env: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Each test's outcome (passed/skipped/failure/error) and message, from a JUnit report."""
    report = clone / "report.xml"
    _pytest(clone, *tests, f"--junitxml={report}", env=env)
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        results = [child for child in case if child.tag in {"skipped", "failure", "error"}]
        outcome = results[0].tag if results else "passed"
        message = results[0].get("message", "") if results else ""
        outcomes[case.get("name", "")] = (outcome, message)
    # Every selected test function ran (parametrized ones once per parameter).
    assert {name.split("[")[0] for name in outcomes} == {t.rsplit("::")[-1] for t in tests}
    return outcomes


def test_the_whole_suite_collects_without_errors_in_a_clone_without_reference_data(
    clone: Path,
) -> None:
    result = _pytest(clone, "--collect-only", "-q", env={})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert "error" not in summary, summary
    for test in REFERENCE_TESTS:
        assert test in result.stdout


def test_reference_tests_skip_with_what_they_check_and_how_to_provide_the_data(
    clone: Path,
) -> None:
    outcomes = _outcomes(clone, *REFERENCE_TESTS, env={})
    for name, (outcome, message) in outcomes.items():
        assert outcome == "skipped", (name, outcome, message)
        assert "reference data " in message, message
        assert "against which the tests validate" in message or "render charts/dagma" in message
        assert f"Set {ENV_VARIABLE} to a directory holding it" in message, message
        assert str(clone.parent / "shared" / "reference") in message, message


def test_reference_tests_fail_under_ci_without_reference_data(clone: Path) -> None:
    outcomes = _outcomes(clone, *REFERENCE_TESTS, env={"CI": "true"})
    for name, (outcome, message) in outcomes.items():
        assert outcome in {"failure", "error"}, (name, outcome, message)
        assert "CI=true and reference data " in message, message


def test_the_setting_points_a_clone_at_the_reference_data(clone: Path) -> None:
    reference_file("skaffold/v4beta14.json")  # here the data must exist (or skip/fail)
    outcomes = _outcomes(clone, *REFERENCE_TESTS, env={ENV_VARIABLE: str(REFERENCE_DIR)})
    assert {name: outcome for name, (outcome, _) in outcomes.items()} == dict.fromkeys(
        outcomes, "passed"
    )
