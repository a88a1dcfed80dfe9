"""The project's two images, built for the cluster tests with the tags the manifests run.

Built from the repository exactly as the README says (repository root as context), into
the engine given (the local cluster's, so the kubelet runs exactly these), once a session.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from localcluster.engine import Docker
from localcluster.image_build import EXTRA_CA_NAME, BuildResult, build_image
from support.dagster_chart import dagster_version_in_lock, image_name, user_deployment
from support.helm import ROOT
from support.release import USER_CODE
from support.umbrella import effective_values, render_umbrella, values_paths

USER_CODE_DOCKERFILE = Path("images/user_code/Dockerfile")
MLFLOW_DOCKERFILE = Path("images/mlflow/Dockerfile")
LOCAL_VALUES = "local.yaml"  # the values file the cluster tests install


@dataclass(frozen=True)
class ReleaseImages:
    """The two images of the release, as built this session."""

    user_code: BuildResult
    mlflow: BuildResult


def manifest_image_tags() -> tuple[str, str]:
    """``(user code, mlflow)``: the images the release's manifests run (values/local.yaml)."""
    files = values_paths([LOCAL_VALUES])
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


def image_layers(docker: Docker, tag: str) -> list[str]:
    """The image's layer digests, base first."""
    result = docker.command(["image", "inspect", "--format", "{{json .RootFS.Layers}}", tag])
    return list(json.loads(result.stdout))
