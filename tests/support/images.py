"""The project's images, built for the cluster tests with the tags the manifests run.

Built from the repository exactly as the README says (repository root as context), into
the engine given (the local cluster's, so the kubelet runs exactly these), once a session:
images/user_code's two targets (the slim ``user-code`` and ``training``, which reuses the
first's layers) and images/mlflow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from localcluster.engine import Docker
from localcluster.image_build import EXTRA_CA_NAME, BuildResult, build_image
from support.dagster_chart import dagster_version_in_lock, image_name, user_deployment
from support.helm import ROOT
from support.release import TRAINING_CODE, USER_CODE
from support.umbrella import effective_values, render_umbrella, values_paths

USER_CODE_DOCKERFILE = Path("images/user_code/Dockerfile")
MLFLOW_DOCKERFILE = Path("images/mlflow/Dockerfile")
USER_CODE_TARGET, TRAINING_TARGET = "user-code", "training"  # images/user_code's two targets
LOCAL_VALUES = "local.yaml"  # the values file the cluster tests install


@dataclass(frozen=True)
class ReleaseImages:
    """The images of the release, as built this session."""

    user_code: BuildResult
    mlflow: BuildResult
    training: BuildResult


def manifest_image_tags() -> tuple[str, str, str]:
    """``(user code, mlflow, training)``: the images the release's manifests run
    (values/local.yaml)."""
    files = values_paths([LOCAL_VALUES])
    dagster = effective_values(values_files=files)["dagster"]
    user_code, training = (
        image_name(user_deployment(dagster, name)["image"], dagster_version_in_lock())
        for name in (USER_CODE, TRAINING_CODE)
    )
    [mlflow] = {c["image"] for c in render_umbrella(values_files=files).one("Deployment")
                ["spec"]["template"]["spec"]["containers"]}  # fmt: skip
    return user_code, mlflow, training


def build_release_images(docker: Docker, base_image: str) -> ReleaseImages:
    """Build images/user_code (both targets) and images/mlflow, with the manifests' tags."""
    user_code_tag, mlflow_tag, training_tag = manifest_image_tags()
    builds = (
        (USER_CODE_DOCKERFILE, user_code_tag, USER_CODE_TARGET),
        (USER_CODE_DOCKERFILE, training_tag, TRAINING_TARGET),
        (MLFLOW_DOCKERFILE, mlflow_tag, None),
    )
    built = {}
    for dockerfile, tag, target in builds:
        built[tag] = build_image(
            docker, ROOT / dockerfile, ROOT, tag, base_image=base_image,
            extra_ca=str(dockerfile.parent / EXTRA_CA_NAME), target=target,
        )  # fmt: skip
    return ReleaseImages(built[user_code_tag], built[mlflow_tag], built[training_tag])


def image_layers(docker: Docker, tag: str) -> list[str]:
    """The image's layer digests, base first."""
    result = docker.command(["image", "inspect", "--format", "{{json .RootFS.Layers}}", tag])
    return list(json.loads(result.stdout))


# MLflow 3.16.1's pins (its tracking schema is two migrations behind 3.17.2's), built from
# images/mlflow/Dockerfile through its REQUIREMENTS argument: the "before" of a schema upgrade.
OLDER_MLFLOW = ("3.16.1", Path("tests/support/mlflow-3.16.1-requirements.txt"))


def build_older_mlflow_image(docker: Docker, base_image: str, repository: str) -> BuildResult:
    """``<repository>:3.16.1``, the server image of the MLflow before the chart's."""
    version, requirements = OLDER_MLFLOW
    return build_image(
        docker, ROOT / MLFLOW_DOCKERFILE, ROOT, f"{repository}:{version}", base_image=base_image,
        build_args={"REQUIREMENTS": str(requirements)},
        extra_ca=str(MLFLOW_DOCKERFILE.parent / EXTRA_CA_NAME),
    )  # fmt: skip
