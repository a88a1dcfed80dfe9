"""images/user_code agrees with what charts/dagma and the Dagster chart expect of it.

The cluster tests build and run the image (tests/cluster/test_images.py and the release
tests); these checks read the Dockerfile and .dockerignore and need no Docker engine.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex

import pytest
from support.dagster_chart import user_deployment
from support.helm import ROOT
from support.umbrella import VALUES_FILES, effective_values, values_paths

DOCKERFILE = ROOT / "images" / "user_code" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
VALUE_SETS = {"defaults": [], **{name: [name] for name in VALUES_FILES}}


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [ln for ln in DOCKERFILE.read_text().splitlines() if not ln.strip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in _instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages


def _stage(name: str) -> list[tuple[str, str]]:
    """The stage ``FROM … AS name``."""
    [stage] = [s for s in _stages() if s[0][1].split()[-2:] == ["AS", name]]
    return stage


def _image(name: str) -> list[tuple[str, str]]:
    """The instructions of target ``name``, its ``FROM`` stages within the file first."""
    stage = _stage(name)
    parent = stage[0][1].split()[0]
    names = {s[0][1].split()[-1] for s in _stages() if " AS " in s[0][1]}
    return [*(_image(parent) if parent in names else []), *stage]


def _runtime() -> list[tuple[str, str]]:
    """The slim image, target ``user-code``: the default target (the last stage) is it."""
    assert _stages()[-1] == [("FROM", "user-code")]
    return _image("user-code")


def _env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in stage:
        if keyword == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(rest))
    return env


@pytest.fixture(scope="module", params=list(VALUE_SETS))
def dagster(request: pytest.FixtureRequest) -> dict:
    return effective_values(values_files=values_paths(VALUE_SETS[request.param]))["dagster"]


def test_image_user_is_the_uid_the_pods_run_as(dagster: dict) -> None:
    runtime = _runtime()
    [user] = [rest for keyword, rest in runtime if keyword == "USER"]
    uid = int(user.split(":")[0])
    assert uid != 0
    deployment = user_deployment(dagster, "dagma-user-code")
    run_pod = dagster["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["podSpecConfig"]
    assert deployment["podSecurityContext"]["runAsUser"] == uid
    assert run_pod["securityContext"]["runAsUser"] == uid


def test_image_dagster_home_is_the_charts(dagster: dict) -> None:
    assert _env(_runtime())["DAGSTER_HOME"] == dagster["global"]["dagsterHome"]


def test_image_exposes_the_grpc_port_of_the_deployment(dagster: dict) -> None:
    [exposed] = [rest for keyword, rest in _runtime() if keyword == "EXPOSE"]
    assert int(exposed) == user_deployment(dagster, "dagma-user-code")["port"]


def test_default_command_serves_the_same_module_as_the_chart(dagster: dict) -> None:
    [cmd] = [rest for keyword, rest in _runtime() if keyword == "CMD"]
    args = user_deployment(dagster, "dagma-user-code")["dagsterApiGrpcArgs"]
    command = json.loads(cmd)
    assert command[:3] == ["dagster", "api", "grpc"]
    assert command[-len(args) :] == args


def test_every_stage_starts_from_the_base_image_argument_and_sets_path() -> None:
    instructions = _instructions()
    assert instructions[0][0] == "ARG" and instructions[0][1].startswith("BASE_IMAGE=")
    for stage in _stages():
        source = stage[0][1].split()[0]
        if source == "${BASE_IMAGE}":
            path = _env(stage)["PATH"].split(":")
            # Imported base images define no PATH at all: it must be complete.
            assert {"/usr/local/bin", "/usr/bin", "/bin"} <= set(path), path


def test_dependencies_come_from_the_lock_runtime_group_only() -> None:
    runs = " ".join(rest for keyword, rest in _instructions() if keyword == "RUN")
    [sync] = re.findall(r"uv sync[^;&]*", runs)
    assert {"--frozen", "--no-dev", "--no-install-project"} <= set(sync.split())
    # The project itself goes in without re-resolving dependencies.
    assert re.search(r"uv pip install [^;&]*--no-deps", runs)


def test_extra_ca_never_reaches_the_runtime_stage() -> None:
    runtime = _runtime()
    assert not any("build-ca" in value for value in _env(runtime).values())
    assert not any("extra-ca" in rest for _, rest in runtime)


def test_training_target_is_the_slim_image_plus_the_training_extra_alone() -> None:
    """``--target training``: the slim image's layers and one more, copied from
    ``training-deps`` (no RUN, no user or environment change), holding the ``training``
    extra at uv.lock's versions minus what the runtime group already has."""
    training, slim = _stage("training"), _stage("user-code")
    assert training[0] == ("FROM", "runtime AS training") and slim[0][1].startswith("runtime ")
    assert {keyword for keyword, _ in training[1:]} == {"LABEL", "COPY", "CMD"}
    copies = [rest for keyword, rest in training if keyword == "COPY"]
    # The extra below dagma's code, which is the slim image's last layer too.
    slim_copies = [rest for keyword, rest in slim if keyword == "COPY"]
    assert [c.split()[0] for c in copies] == ["--from=training-deps", "--from=project"]
    assert copies[-1] == slim_copies[-1] and len(slim_copies) == 1
    [install] = [rest for keyword, rest in _stage("training-deps") if keyword == "RUN"]
    assert re.search(r"uv export --frozen --no-dev --no-emit-project", install)
    assert "--extra training" in install
    assert re.search(r"uv pip install [^;&]*--no-deps [^;&]*--target", install)
    assert not any("extra-ca" in rest or "build-ca" in rest for _, rest in training)


def test_training_image_command_serves_the_training_location_of_values_local() -> None:
    dagster = effective_values(values_files=values_paths(["local.yaml"]))["dagster"]
    deployment = user_deployment(dagster, "dagma-training")
    [cmd] = [rest for keyword, rest in _stage("training") if keyword == "CMD"]
    command = json.loads(cmd)
    assert command[:3] == ["dagster", "api", "grpc"]
    assert command[-2:] == deployment["dagsterApiGrpcArgs"]


def _in_context(path: str, patterns: list[str]) -> bool:
    """Whether ``path`` is sent to the builder under the .dockerignore ``patterns``."""
    included = True
    parts = path.strip("/").split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        pattern = pattern.removeprefix("**/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        # A pattern excludes/includes a path when it matches the path or a parent;
        # `**/name` matches a component anywhere.
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes) or any(
            fnmatch.fnmatch(name, pattern) for name in parts if "/" not in pattern
        ):
            included = negate
    return included


def test_build_context_holds_what_the_dockerfile_copies_and_little_else() -> None:
    patterns = [
        ln.strip() for ln in DOCKERIGNORE.read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]  # fmt: skip
    assert patterns[0] == "*", "allow-list: exclude everything, then re-include"
    copied = [
        src
        for keyword, rest in _instructions()
        if keyword == "COPY" and "--from" not in rest
        for src in shlex.split(rest)[:-1]
    ]
    assert copied, "no COPY found"
    for source in copied:
        assert _in_context(source, patterns), f"{source} is excluded by .dockerignore"
    for heavy in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "charts/dagma/Chart.yaml",
        "src/dagma/__pycache__/x.pyc",
        ".mlflow-local/mlflow.db",
    ):
        assert not _in_context(heavy, patterns), f"{heavy} would be sent to the builder"
