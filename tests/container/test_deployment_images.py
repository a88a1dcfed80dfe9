"""The two images of the release, and what their size and rebuild time are (measured only).

Sizes and times go to the session's measurements (terminal summary and
test-artifacts/container-measurements.json); they are never asserted. What is asserted
is what makes the figures meaningful: the full-mlflow variant differs from the real
image only in that distribution, and a code-only change replaces only dagma's layer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.container.base_image import BaseImage
from support.container.build import (
    EXTRA_CA_NAME,
    BuildResult,
    build_image,
    image_size,
    megabytes,
)
from support.container.cli import Docker
from support.container.run import run_container
from support.images import (
    BUILD_TIMEOUT_S,
    FULL,
    SKINNY,
    USER_CODE_DOCKERFILE,
    ReleaseImages,
    add_code_change,
    copy_user_code_context,
    image_layers,
    use_full_mlflow,
)

# The first test to need an image builds it (support.images).
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S)

Measure = Callable[[str, str], None]
# The project's size goal: the user-code image at most half of the full-mlflow variant.
SIZE_GOAL = 0.5
VARIANT_REPOSITORY = "dagma-user-code-variant"
DISTRIBUTION_VERSION = (
    "import importlib.metadata as m, sys\n"
    "try:\n    print(m.version(sys.argv[1]))\n"
    "except m.PackageNotFoundError:\n    print('absent')\n"
)


def _version_in(docker: Docker, image: str, distribution: str) -> str:
    result = run_container(docker, image, ["python", "-c", DISTRIBUTION_VERSION, distribution])
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@dataclass
class Variant:
    """A tag for a measured variant, and every image built under it."""

    tag: str
    images: list[str] = field(default_factory=list)

    def build(self, docker: Docker, context: Path, base_image: BaseImage) -> BuildResult:
        """Build images/user_code from ``context`` (a copy of the repository's)."""
        built = build_image(
            docker, context / USER_CODE_DOCKERFILE, context, self.tag, base_image=base_image.tag,
            extra_ca=str(USER_CODE_DOCKERFILE.parent / EXTRA_CA_NAME),
        )  # fmt: skip
        inspect = docker.command(["image", "inspect", "--format", "{{.Id}}", self.tag])
        self.images.append(inspect.stdout.strip())
        return built


@pytest.fixture
def variant(docker: Docker) -> Iterator[Variant]:
    """A variant whose images are removed afterwards (their build cache stays, so the
    next session builds them again in seconds)."""
    measured = Variant(f"{VARIANT_REPOSITORY}:{uuid.uuid4().hex[:8]}")
    yield measured
    docker.command(["rmi", measured.tag], check=False)
    for image in set(measured.images):
        # Only if nothing else names it: an unchanged copy builds the release's own image.
        tags = docker.command(
            ["image", "inspect", "--format", "{{len .RepoTags}}", image], check=False
        )
        if tags.stdout.strip() == "0":
            docker.command(["rmi", image], check=False)


def test_user_code_image_with_mlflow_skinny_against_full_mlflow(
    docker: Docker,
    base_image: BaseImage,
    release_images: ReleaseImages,
    variant: Variant,
    tmp_path: Path,
    measure: Measure,
) -> None:
    context = copy_user_code_context(tmp_path / "context")
    use_full_mlflow(context)
    built = variant.build(docker, context, base_image)
    ours, full = image_size(docker, release_images.user_code.tag), image_size(docker, variant.tag)
    measure("user-code image with full mlflow (same Dockerfile)", megabytes(full))
    ratio = ours / full
    verdict = "meets" if ratio <= SIZE_GOAL else "misses"
    measure(
        "user-code image / full-mlflow variant", f"{ratio:.2f} ({verdict} the goal ≤ {SIZE_GOAL})"
    )
    measure("build of the full-mlflow variant", f"{built.seconds:.1f} s")
    # The comparison is fair: the variant has full mlflow, ours only the skinny client.
    skinny_version = _version_in(docker, release_images.user_code.tag, SKINNY)
    assert _version_in(docker, release_images.user_code.tag, FULL) == "absent"
    assert _version_in(docker, variant.tag, FULL) == skinny_version
    assert ours < full


def test_code_only_change_replaces_one_layer_and_reuses_the_dependencies(
    docker: Docker,
    base_image: BaseImage,
    release_images: ReleaseImages,
    variant: Variant,
    tmp_path: Path,
    measure: Measure,
) -> None:
    context = copy_user_code_context(tmp_path / "context")
    variant.build(docker, context, base_image)  # from the session build's cache
    before = image_layers(docker, variant.tag)
    token = uuid.uuid4().hex  # new every time, so no earlier build can be reused
    add_code_change(context, token)
    rebuilt = variant.build(docker, context, base_image)
    measure("user-code rebuild after a code-only change", f"{rebuilt.seconds:.1f} s")
    after = image_layers(docker, variant.tag)
    # Base, user, the dependency venv: the same layers; only dagma's own is new.
    assert len(after) == len(before)
    assert len([1 for old, new in zip(before, after, strict=True) if old != new]) == 1
    read = "import dagma, pathlib; print(pathlib.Path(dagma.__file__).read_text())"
    assert token in run_container(docker, variant.tag, ["python", "-c", read]).stdout
