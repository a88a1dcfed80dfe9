"""The project's two images for the deployment tests, and the variants that are only measured.

The images are built from the repository exactly as the README says (repository root as
context), tagged with the names the release's manifests use, once per test session.

Variants of images/user_code are built from temporary copies of its build context, so the
committed files are never touched:

- *full mlflow*: ``mlflow`` instead of ``mlflow-skinny`` among the runtime dependencies —
  pyproject.toml edited in the copy and ``uv lock`` run there, which keeps every other
  pin (checked: only the ``dagma`` entry of the lock may change);
- *code-only change*: the copy built once, a line added to its ``src/``, and built again,
  to time the rebuild and see which layers it replaced.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from support.container.build import EXTRA_CA_NAME, BuildResult, build_image
from support.container.cli import Docker
from support.dagster_chart import dagster_version_in_lock, image_name, user_deployment
from support.helm import ROOT
from support.release import BASE_VALUES, USER_CODE
from support.tools import missing
from support.umbrella import effective_values, render_umbrella, values_paths

USER_CODE_DOCKERFILE = Path("images/user_code/Dockerfile")
MLFLOW_DOCKERFILE = Path("images/mlflow/Dockerfile")
# What images/user_code's build reads from the repository root (see the root .dockerignore).
USER_CODE_CONTEXT = (
    "pyproject.toml",
    "uv.lock",
    "README.md",
    ".dockerignore",
    "src",
    "images/user_code",
)
SKINNY, FULL = "mlflow-skinny", "mlflow"
# Per-test limit for tests whose fixtures may build the images (cold: minutes on 2 cores;
# each build has its own watchdog in support.container.build).
BUILD_TIMEOUT_S = 2400


@dataclass(frozen=True)
class ReleaseImages:
    """The two images of the release, as built this session."""

    user_code: BuildResult
    mlflow: BuildResult


def manifest_image_tags() -> tuple[str, str]:
    """``(user code, mlflow)``: the images the release's manifests run (values/kind.yaml)."""
    files = values_paths([BASE_VALUES])
    deployment = user_deployment(effective_values(values_files=files)["dagster"], USER_CODE)
    user_code = image_name(deployment["image"], dagster_version_in_lock())
    [mlflow] = {c["image"] for c in render_umbrella(values_files=files).one("Deployment")
                ["spec"]["template"]["spec"]["containers"]}  # fmt: skip
    return user_code, mlflow


def build_release_images(docker: Docker, base_image: str) -> ReleaseImages:
    """Build images/user_code and images/mlflow from the repository, with the manifests' tags."""
    user_code_tag, mlflow_tag = manifest_image_tags()
    built = {}
    for dockerfile, tag in ((USER_CODE_DOCKERFILE, user_code_tag), (MLFLOW_DOCKERFILE, mlflow_tag)):
        built[tag] = build_image(
            docker, ROOT / dockerfile, ROOT, tag, base_image=base_image,
            extra_ca=str(dockerfile.parent / EXTRA_CA_NAME),
        )  # fmt: skip
    return ReleaseImages(built[user_code_tag], built[mlflow_tag])


def copy_user_code_context(destination: Path) -> Path:
    """A copy of what the user-code build reads from the repository; returns the copy's root."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", EXTRA_CA_NAME)
    for name in USER_CODE_CONTEXT:
        source, target = ROOT / name, destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            shutil.copy2(source, target)
    return destination


def uv_command() -> list[str]:
    """How to call uv here: ``$UV`` (set by ``uv run``), ``uv`` on PATH, or ``python -m uv``."""
    if os.environ.get("UV"):
        return [os.environ["UV"]]
    if shutil.which("uv"):
        return [str(shutil.which("uv"))]
    if importlib.util.find_spec("uv") is not None:
        return [sys.executable, "-m", "uv"]
    missing("uv", "run the tests through `make test` (which installs uv) or `pip install uv`")
    raise AssertionError("unreachable: missing() skips or fails")


def locked_packages(lock: Path) -> dict[str, list[str]]:
    """``{name: [versions]}`` of a uv.lock."""
    packages: dict[str, list[str]] = {}
    for package in tomllib.loads(lock.read_text())["package"]:
        packages.setdefault(package["name"], []).append(str(package.get("version")))
    return packages


def _runtime_dependencies(pyproject: Path) -> list[str]:
    return list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])


def use_full_mlflow(context: Path) -> None:
    """In a copied context: depend on ``mlflow`` instead of ``mlflow-skinny`` and re-lock."""
    pyproject = context / "pyproject.toml"
    [skinny] = [d for d in _runtime_dependencies(pyproject) if d.startswith(f"{SKINNY}=")]
    full = FULL + skinny[len(SKINNY) :]
    text = pyproject.read_text()
    assert text.count(f'"{skinny}"') == 1, f"{skinny!r} should appear once in pyproject.toml"
    pyproject.write_text(text.replace(f'"{skinny}"', f'"{full}"'))
    assert full in _runtime_dependencies(pyproject)
    before = locked_packages(context / "uv.lock")
    result = subprocess.run(
        [*uv_command(), "lock"], cwd=context, capture_output=True, text=True, timeout=600,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"uv lock in {context} failed:\n{result.stderr[-3000:]}"
    after = locked_packages(context / "uv.lock")
    assert after == before, "re-locking with full mlflow changed pinned versions"


def add_code_change(context: Path, token: str) -> Path:
    """Append a comment carrying ``token`` to the copied package's ``__init__.py``."""
    module = context / "src" / "dagma" / "__init__.py"
    with module.open("a") as handle:
        handle.write(f"# code-only change for the rebuild measurement: {token}\n")
    return module


def image_layers(docker: Docker, tag: str) -> list[str]:
    """The image's layer digests, base first."""
    result = docker.command(["image", "inspect", "--format", "{{json .RootFS.Layers}}", tag])
    return list(json.loads(result.stdout))
