"""images/mlflow agrees with charts/mlflow and uv.lock (static checks: no Docker engine needed)."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import tomllib
from pathlib import Path

import yaml
from support.helm import CHARTS, ROOT
from support.tools import missing

IMAGE = ROOT / "images" / "mlflow"
# The same pins with an older MLflow: the image a schema-upgrade cluster test upgrades from.
OLDER_PINS = "tests/support/mlflow-3.16.1-requirements.txt"
MLFLOW_PACKAGES = {"mlflow", "mlflow-skinny", "mlflow-tracing"}
PIN = re.compile(r"^([A-Za-z0-9_.\[\]-]+)==([^\s;]+)(\s*;.*)?$")


def _requirements(path: Path) -> list[str]:
    return [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def _pins(path: Path = IMAGE / "requirements.txt") -> dict[str, str]:
    """Package → version for the unconditional pins of a requirements file."""
    pins = {}
    for line in _requirements(path):
        match = PIN.match(line)
        assert match, f"{path.name}: {line!r} is not an exact pin"
        if not match.group(3):
            pins[match.group(1).lower()] = match.group(2)
    return pins


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (IMAGE / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def _copy_sources() -> list[str]:
    """The build-context files of every COPY, with ARG references at their defaults."""
    instructions = _dockerfile_instructions()
    defaults = dict(
        args.split("=", 1) for name, args in instructions if name == "ARG" and "=" in args
    )
    return [
        re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], source)
        for name, args in instructions
        if name == "COPY" and "--from" not in args
        for source in args.split()[:-1]
    ]


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile_instructions()
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def _chart_values() -> dict:
    return yaml.safe_load((CHARTS / "mlflow" / "values.yaml").read_text())


def test_image_installs_the_server_its_database_s3_and_kubernetes_clients_only():
    names = [re.split(r"[=<>\[]", line)[0] for line in _requirements(IMAGE / "requirements.in")]
    # kubernetes: the schema-upgrade hook scales the servers to 0 through the API.
    assert names == ["mlflow", "psycopg2-binary", "boto3", "kubernetes"]


def test_older_mlflow_pins_differ_from_the_image_only_in_mlflow():
    older, current = _pins(ROOT / OLDER_PINS), _pins()
    assert {name: older[name] for name in MLFLOW_PACKAGES} == dict.fromkeys(
        MLFLOW_PACKAGES, "3.16.1"
    )
    assert {n: v for n, v in older.items() if n not in MLFLOW_PACKAGES} == {
        n: v for n, v in current.items() if n not in MLFLOW_PACKAGES
    }


def test_image_mlflow_is_the_chart_app_version_the_lock_and_the_tested_one():
    chart = yaml.safe_load((CHARTS / "mlflow" / "Chart.yaml").read_text())
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {p["version"] for p in lock["package"] if p["name"] == "mlflow"}
    pinned = [
        line for line in _requirements(IMAGE / "requirements.in") if line.startswith("mlflow")
    ]
    assert pinned == [f"mlflow[auth]=={chart['appVersion']}"]
    assert locked == {chart["appVersion"]}
    assert importlib.metadata.version("mlflow") == chart["appVersion"]
    assert _pins()["mlflow"] == chart["appVersion"]


def test_image_shares_every_common_version_with_uv_lock():
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked: dict[str, set[str]] = {}
    for package in lock["package"]:
        locked.setdefault(package["name"].lower(), set()).add(package["version"])
    drift = {
        name: (version, sorted(locked[name]))
        for name, version in _pins().items()
        if name in locked and version not in locked[name]
    }
    assert not drift, (
        f"images/mlflow/requirements.txt differs from uv.lock (regenerate it): {drift}"
    )


def test_every_stage_builds_on_the_base_image_argument():
    instructions = _dockerfile_instructions()
    assert instructions[0][0] == "ARG" and instructions[0][1].startswith("BASE_IMAGE=")
    stages = [args for name, args in instructions if name == "FROM"]
    assert len(stages) >= 2
    assert all(args.split()[0] == "${BASE_IMAGE}" for args in stages)


def test_every_stage_sets_path_in_full():
    stage_envs: list[str] = []
    for name, args in _dockerfile_instructions():
        if name == "FROM":
            stage_envs.append("")
        elif name == "ENV":
            stage_envs[-1] += " " + args
    for env in stage_envs:
        path = re.search(r"PATH=(\S+)", env)
        assert path, "a stage without ENV PATH fails on a base image that defines none"
        assert {"/usr/local/bin", "/usr/bin", "/bin"} <= set(path.group(1).split(":"))


def test_final_image_runs_as_the_charts_non_root_user():
    [user] = [args for name, args in _final_stage() if name == "USER"]
    security = _chart_values()["podSecurityContext"]
    assert user == f"{security['runAsUser']}:{security['runAsGroup']}"


def test_final_image_turns_telemetry_off():
    env = " ".join(args for name, args in _final_stage() if name == "ENV")
    assert "MLFLOW_DISABLE_TELEMETRY=true" in env and "DO_NOT_TRACK=true" in env


def test_nothing_is_compiled_so_no_compiler_is_installed():
    runs = " ".join(args for name, args in _dockerfile_instructions() if name == "RUN")
    assert "--only-binary :all:" in runs
    assert not re.search(r"apt-get|apk add|\bgcc\b|build-essential", runs)


def test_final_stage_takes_only_the_venv_from_the_build():
    copies = [args for name, args in _final_stage() if name == "COPY"]
    assert copies == ["--from=build /opt/mlflow /opt/mlflow"]


def test_build_works_with_and_without_the_extra_ca_file():
    copies = [
        args for name, args in _dockerfile_instructions() if name == "COPY" and "--from" not in args
    ]
    [ca_copy] = [args for args in copies if "extra-ca" in args]
    # A glob (matches nothing when absent) next to a file that always exists.
    assert "images/mlflow/extra-ca.pe[m]" in ca_copy.split()
    assert "images/mlflow/requirements.txt" in _copy_sources()
    assert not [args for name, args in _dockerfile_instructions() if "--mount" in args]


def test_extra_ca_file_is_never_committed():
    try:
        ignored = subprocess.run(
            ["git", "check-ignore", "--quiet", "images/mlflow/extra-ca.pem"], cwd=ROOT, timeout=30
        )
    except FileNotFoundError:
        missing("git", "apt-get install git")
    assert ignored.returncode == 0, "images/mlflow/extra-ca.pem is not git-ignored"


def test_build_context_admits_exactly_what_the_dockerfile_copies():
    allowed = [
        line[1:]
        for line in (IMAGE / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    sources = [source.replace(".pe[m]", ".pem") for source in _copy_sources()]
    assert sorted(allowed) == sorted([*sources, OLDER_PINS])
