"""Stand-in images: built locally under the names the kubelet and the charts ask for.

No registry can be reached, so every image a pod names must already be in the Docker
engine (``imagePullPolicy: IfNotPresent``, image GC off). The stand-ins' Dockerfiles are
in ``localcluster/images/<name>/``; how each differs from the original is in
docs/local-cluster.md.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from localcluster.base_image import debian_mirror, ensure_base_image, has_image, image_label
from localcluster.binaries import MODULES, SEAWEEDFS_VERSION, go_executable
from localcluster.components import HELPER_IMAGE, PAUSE_IMAGE
from localcluster.engine import Docker
from localcluster.image_build import build_image
from localcluster.prerequisites import MissingPrerequisite
from localcluster.settings import (
    GO_MODULES_DIR,
    ROOT,
    STANDINS_DIR,
    go_environment,
    uv_from_environment,
)

BUSYBOX = Path("/bin/busybox")
VOLUME_PERMISSIONS_IMAGE = "docker.io/bitnami/minideb:stretch"
# Stand-ins whose tags never change carry a hash of what they are built from, so a
# changed Dockerfile or input rebuilds them in an engine that keeps its images.
RECIPE_LABEL = "org.dagma.standin-recipe"


def module_dir(wrapper: str, module: str) -> Path:
    """Where the Go module cache holds ``module`` as the wrapper module ``wrapper`` pins it."""
    result = subprocess.run(
        [go_executable() or "go", "list", "-m", "-f", "{{.Dir}}", module],
        cwd=GO_MODULES_DIR / wrapper,
        capture_output=True,
        text=True,
        check=True,
        env=go_environment(),
    )
    return Path(result.stdout.strip())


def uv_command() -> list[str]:
    """How to call uv here: ``$UV`` (set by ``uv run``), ``uv`` on PATH, or ``python -m uv``."""
    if uv := uv_from_environment() or shutil.which("uv"):
        return [uv]
    if importlib.util.find_spec("uv") is not None:
        return [sys.executable, "-m", "uv"]
    raise MissingPrerequisite("uv is not available: run through `make` (which installs uv)")


def _recipe(name: str, inputs: list[Path], *extra: str) -> str:
    """A short hash of localcluster/images/<name>/Dockerfile, ``inputs`` and ``extra``."""
    digest = hashlib.sha256()
    for path in [STANDINS_DIR / name / "Dockerfile", *inputs]:
        digest.update(path.read_bytes())
    for text in extra:
        digest.update(text.encode())
    return digest.hexdigest()[:12]


def _is_current(docker: Docker, tag: str, recipe: str) -> bool:
    """Whether image ``tag`` exists and was built from ``recipe``."""
    return image_label(docker, tag, RECIPE_LABEL) == recipe


def _build_from(
    docker: Docker,
    name: str,
    tag: str,
    files: dict[str, Path],
    recipe: str | None = None,
    base_image: str | None = None,
) -> None:
    """Build localcluster/images/<name> with ``files`` copied into a temporary context."""
    build_args = {"RECIPE": recipe} if recipe else None
    with tempfile.TemporaryDirectory(prefix=f"dagma-{name}-") as context:
        for target, source in files.items():
            shutil.copy2(source, Path(context) / target)
        build_image(docker, STANDINS_DIR / name / "Dockerfile", Path(context), tag,
                    base_image=base_image, build_args=build_args)  # fmt: skip


def ensure_busybox(docker: Docker, base_image: str | None = None) -> str:
    """busybox:1.28 (local-path's helper pods, the Dagster chart's init containers).

    Built on ``base_image``, by default the project's Debian base (only looked up when
    the image is missing or out of date).
    """
    if not BUSYBOX.exists():
        raise RuntimeError(f"{BUSYBOX} is missing: apt-get install busybox-static")
    files = {"busybox": BUSYBOX, "nslookup": STANDINS_DIR / "busybox" / "nslookup"}
    recipe = _recipe("busybox", list(files.values()))
    if not _is_current(docker, HELPER_IMAGE, recipe):
        base = base_image or ensure_base_image(docker).tag
        _build_from(docker, "busybox", HELPER_IMAGE, files, recipe, base)
    return HELPER_IMAGE


def ensure_node_images(docker: Docker) -> None:
    """The small images the node and the charts' helper containers name.

    The pause image (Kubernetes' pause.c); busybox (Debian's busybox-static) and the
    PostgreSQL subchart's volume-permissions image, both on the project's Debian base.
    """
    if not has_image(docker, PAUSE_IMAGE):
        source = module_dir("kubernetes", "k8s.io/kubernetes") / "build/pause/linux/pause.c"
        with tempfile.TemporaryDirectory(prefix="dagma-pause-build-") as build:
            binary = Path(build) / "pause"
            version = PAUSE_IMAGE.rsplit(":", 1)[1]
            subprocess.run(
                ["gcc", "-Os", "-Wall", "-static", f"-DVERSION=v{version}", "-o", binary, source],
                check=True,
            )
            _build_from(docker, "pause", PAUSE_IMAGE, {"pause": binary})
    ensure_busybox(docker)
    ensure_volume_permissions_image(docker)
    ensure_object_store_image(docker)


OBJECT_STORE_IMAGE = f"dagma-seaweedfs:{SEAWEEDFS_VERSION.rsplit('-', 1)[-1]}"


def ensure_object_store_image(docker: Docker, base_image: str | None = None) -> str:
    """SeaweedFS's ``weed`` (the binary cache's build of localcluster/go/seaweedfs) on the base.

    Rebuilt when the Dockerfile or the module's pin changes (the recipe holds the
    module's cache key, not the binary's 100 MB).
    """
    [module] = [m for m in MODULES if m.name == "seaweedfs"]
    recipe = _recipe("seaweedfs", [], module.key())
    if not _is_current(docker, OBJECT_STORE_IMAGE, recipe):
        weed = module.cached() / "weed"
        if not weed.exists():
            raise RuntimeError(f"{weed} is missing: `make cluster-up` builds it")
        base = base_image or ensure_base_image(docker).tag
        _build_from(docker, "seaweedfs", OBJECT_STORE_IMAGE, {"weed": weed}, recipe, base)
    return OBJECT_STORE_IMAGE


def ensure_volume_permissions_image(docker: Docker, base_image: str | None = None) -> str:
    """The bitnami PostgreSQL subchart's volume-permissions image (minideb), on the base."""
    recipe = _recipe("minideb", [])
    if not _is_current(docker, VOLUME_PERMISSIONS_IMAGE, recipe):
        base = base_image or ensure_base_image(docker).tag
        _build_from(docker, "minideb", VOLUME_PERMISSIONS_IMAGE, {}, recipe, base)
    return VOLUME_PERMISSIONS_IMAGE


DAGSTER_IMAGE = "docker.io/dagster/dagster-celery-k8s:{version}"
POSTGRES_IMAGE = "docker.io/library/postgres:14.6"


def ensure_release_standins(
    docker: Docker, base_image: str, dagster_version: str
) -> dict[str, str]:
    """The Dagster chart's webserver/daemon image, its PostgreSQL and busybox; their tags."""
    tags = {"dagster": DAGSTER_IMAGE.format(version=dagster_version), "postgres": POSTGRES_IMAGE,
            "busybox": ensure_busybox(docker, base_image)}  # fmt: skip
    if not has_image(docker, tags["dagster"]):
        with tempfile.TemporaryDirectory(prefix="dagma-dagster-standin-") as context:
            constraints = subprocess.run(
                [*uv_command(), "export", "--frozen", "--no-hashes", "--all-groups",
                 "--no-emit-project", "--format", "requirements-txt"],
                cwd=ROOT, capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            (Path(context) / "constraints.txt").write_text(constraints)
            build_image(docker, STANDINS_DIR / "dagster" / "Dockerfile", Path(context),
                        tags["dagster"], base_image=base_image)  # fmt: skip
    postgres = _recipe("postgres", [STANDINS_DIR / "postgres" / "entrypoint.sh"])
    if not _is_current(docker, tags["postgres"], postgres):
        build_image(docker, STANDINS_DIR / "postgres" / "Dockerfile", STANDINS_DIR / "postgres",
                    tags["postgres"], base_image=base_image,
                    build_args={"DEBIAN_MIRROR": debian_mirror(), "RECIPE": postgres})  # fmt: skip
    return tags
