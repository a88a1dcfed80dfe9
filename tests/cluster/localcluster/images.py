"""Images the node needs, built locally under the names the kubelet and the charts ask for.

No registry can be reached, so every image a pod names must already be in the Docker
engine (``imagePullPolicy: IfNotPresent``, image GC off). The stand-ins' Dockerfiles are
in ``images/standins/``; how each differs from the original is in docs/testing.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from support.container.base_image import debian_mirror
from support.container.build import build_image
from support.container.cli import Docker
from support.images import uv_command

from localcluster.components import HELPER_IMAGE, PAUSE_IMAGE
from localcluster.settings import BUILD_DIR, ROOT

STANDINS = ROOT / "images" / "standins"
BUSYBOX = Path("/bin/busybox")


def module_dir(wrapper: str, module: str) -> Path:
    """Where the Go module cache holds ``module`` as the wrapper module ``wrapper`` pins it."""
    result = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", module],
        cwd=BUILD_DIR / wrapper,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "GOTOOLCHAIN": "local"},
    )
    return Path(result.stdout.strip())


def has_image(docker: Docker, tag: str) -> bool:
    return docker.command(["image", "inspect", tag], check=False).returncode == 0


def _build_from(docker: Docker, name: str, tag: str, files: dict[str, Path]) -> None:
    """Build images/standins/<name> with ``files`` copied into a temporary context."""
    with tempfile.TemporaryDirectory(prefix=f"dagma-{name}-") as context:
        for target, source in files.items():
            shutil.copy2(source, Path(context) / target)
        build_image(docker, STANDINS / name / "Dockerfile", Path(context), tag)


def ensure_node_images(docker: Docker) -> None:
    """The pause image (Kubernetes' pause.c) and busybox (Debian's busybox-static)."""
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
    if not has_image(docker, HELPER_IMAGE):
        if not BUSYBOX.exists():
            raise RuntimeError(f"{BUSYBOX} is missing: apt-get install busybox-static")
        _build_from(docker, "busybox", HELPER_IMAGE, {"busybox": BUSYBOX})


DAGSTER_IMAGE = "docker.io/dagster/dagster-celery-k8s:{version}"
POSTGRES_IMAGE = "docker.io/library/postgres:14.6"


def ensure_release_standins(
    docker: Docker, base_image: str, dagster_version: str
) -> dict[str, str]:
    """The Dagster chart's webserver/daemon image and its PostgreSQL, built here; tags."""
    tags = {"dagster": DAGSTER_IMAGE.format(version=dagster_version), "postgres": POSTGRES_IMAGE}
    if not has_image(docker, tags["dagster"]):
        with tempfile.TemporaryDirectory(prefix="dagma-dagster-standin-") as context:
            constraints = subprocess.run(
                [*uv_command(), "export", "--frozen", "--no-hashes", "--all-groups",
                 "--no-emit-project", "--format", "requirements-txt"],
                cwd=ROOT, capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            (Path(context) / "constraints.txt").write_text(constraints)
            build_image(docker, STANDINS / "dagster" / "Dockerfile", Path(context),
                        tags["dagster"], base_image=base_image)  # fmt: skip
    if not has_image(docker, tags["postgres"]):
        build_image(docker, STANDINS / "postgres" / "Dockerfile", STANDINS / "postgres",
                    tags["postgres"], base_image=base_image,
                    build_args={"DEBIAN_MIRROR": debian_mirror()})  # fmt: skip
    return tags
