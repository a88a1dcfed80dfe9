"""Skaffold against the local cluster: the pinned binary, its config, a repository copy to run in.

Skaffold runs with ``HOME=.cluster/skaffold`` so its global config and artifact cache
(``~/.skaffold/config``, ``~/.skaffold/cache``) are the cluster's, never the user's: update
check and metrics off (both would reach the internet), and the context ``dagma-local``
marked as a local cluster, so Skaffold never pushes. Images are
built on the cluster's own Docker engine (``DOCKER_HOST``), where the kubelet finds them.

Skaffold runs in a copy of the repository (a git repository of its own, as a developer's
clone is: the default tagger tags with the commit). The copy differs only where this
machine differs from a developer's: the Dagster chart dependency is the values-only
stand-in of :func:`support.umbrella.umbrella_dir` (the official chart cannot be
downloaded here, so Skaffold skips ``helm dependency build``), the images build on the
local base image on the host network with the host's CA bundle, the release goes to a
namespace of the test's own with an external PostgreSQL and telemetry off.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from localcluster import binaries, engine
from localcluster.components import Layout
from localcluster.image_build import EXTRA_CA_NAME, host_ca_bundle
from localcluster.settings import proxy_build_args
from support.helm import ROOT
from support.skaffold import image_env_name
from support.umbrella import umbrella_dir

CONTEXT = "dagma-local"  # the local cluster's kube context (localcluster.components)
PROFILE = "local"


def skaffold_binary() -> Path:
    """The pinned Skaffold, built into the binary cache unless it is there."""
    [module] = [m for m in binaries.MODULES if m.name == "skaffold"]
    return binaries.build_module(module) / "skaffold"


def home(layout: Layout) -> Path:
    """The HOME Skaffold runs with (its ~/.skaffold: global config, artifact cache)."""
    return layout.state / "skaffold"


def global_config(layout: Layout) -> Path:
    """Write Skaffold's global config with its own command; returns the file."""
    settings = (
        ("--global", "update-check", "false"),
        ("--global", "collect-metrics", "false"),
        (f"--kube-context={CONTEXT}", "local-cluster", "true"),
    )
    for scope, key, value in settings:
        skaffold_command(layout, "config", "set", scope, key, value)
    return home(layout) / ".skaffold" / "config"


def skaffold_env(layout: Layout) -> dict[str, str]:
    """Skaffold's environment: the cluster's engine and kubeconfig, its own HOME."""
    home(layout).mkdir(parents=True, exist_ok=True)
    return dict(
        os.environ,
        HOME=str(home(layout)),
        DOCKER_HOST=engine.HOST,
        KUBECONFIG=str(layout.kubeconfig),
        SKAFFOLD_UPDATE_CHECK="false",
        PATH=f"{layout.bin}:{os.environ.get('PATH', '')}",  # its helm and kubectl
    )


def skaffold_command(
    layout: Layout,
    *args: str,
    cwd: Path = ROOT,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> str:
    """Run ``skaffold <args>`` to completion; its output, or an error with all of it."""
    command = [str(skaffold_binary()), *args]
    result = subprocess.run(
        command, cwd=cwd, env=skaffold_env(layout) | (env or {}), capture_output=True,
        text=True, timeout=timeout, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{output}"
    return output


def deployed_tags(output: str, *, last: bool = False) -> dict[str, str]:
    """``{artifact: image}`` from a "Tags used in deployment" list Skaffold printed
    (the first one, or the ``last``)."""
    marker = "Tags used in deployment:"
    assert marker in output, f"Skaffold printed no {marker!r}:\n{output}"
    after = output.rsplit(marker, 1)[1] if last else output.split(marker, 1)[1]
    tags = {}
    for line in after.splitlines()[1:]:  # the lines right below the marker
        match = re.fullmatch(r"\s*-\s*(\S+)\s*->\s*(\S+)\s*", line)
        if not match:
            break
        tags[match[1]] = match[2]
    assert tags, f"no tags listed after {marker!r}:\n{output}"
    return tags


def copy_repository(destination: Path) -> Path:
    """The repository's files (tracked and untracked, not ignored) as a git repository."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    git = ["git", "-c", "user.name=dagma tests", "-c", "user.email=tests@dagma.invalid"]
    for args in (["init", "-q"], ["add", "--all"], ["commit", "-q", "-m", "copy"]):
        subprocess.run([*git, *args], cwd=destination, check=True, capture_output=True)
    return destination


def prepare_copy(
    copy: Path, *, namespace: str, base_image: str, overlay: dict[str, Any]
) -> dict[str, Any]:
    """Adapt the copy to this machine (see the module doc); returns its skaffold.yaml."""
    chart = copy / "charts" / "dagma"
    shutil.rmtree(chart)
    shutil.copytree(umbrella_dir(with_dagster_values=True), chart)
    bundle = host_ca_bundle()
    for image in ("user_code", "mlflow"):
        (copy / "images" / image / EXTRA_CA_NAME).write_text(bundle)
    (copy / "values" / "machine.yaml").write_text(yaml.safe_dump(overlay))
    config = yaml.safe_load((copy / "skaffold.yaml").read_text())
    build_args = {"BASE_IMAGE": base_image}
    build_args |= proxy_build_args()
    added = [patch["value"] for profile in config["profiles"] for patch in profile["patches"]
             if patch["path"] == "/build/artifacts/-"]  # the training image  # fmt: skip
    for artifact in [*config["build"]["artifacts"], *added]:
        artifact["docker"] |= {"network": "host", "buildArgs": build_args}
    [release] = config["deploy"]["helm"]["releases"]
    release |= {"namespace": namespace, "createNamespace": False, "skipBuildDependencies": True}
    for forward in config["portForward"]:
        forward["namespace"] = namespace
    [profile] = [p for p in config["profiles"] if p["name"] == PROFILE]
    for patch in profile["patches"]:
        if patch["path"] == "/deploy/helm/releases/0/valuesFiles":
            patch["value"] = [*patch["value"], "values/machine.yaml"]
    (copy / "skaffold.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return config


def add_dagster_objects_release(
    copy: Path, config: dict[str, Any], objects: list[dict[str, Any]], images: dict[str, str]
) -> None:
    """A second Helm release in the copy for what the Dagster chart would render.

    The official chart is not on this machine (see :mod:`support.dagster_manifests`); its objects go
    into a one-template chart whose code locations' images (each Deployment's and the
    ``DAGSTER_CURRENT_IMAGE`` the run launcher starts run pods with) are the images Skaffold
    built, so ``skaffold dev`` upgrades them with every rebuild as it would the real chart.
    ``images`` maps each image the objects name to its Skaffold artifact.
    """
    chart = copy / "charts" / "dagster-objects"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v2", "name": "dagster-objects", "version": "0.1.0"})
    )
    text = yaml.safe_dump_all(objects, sort_keys=False)
    assert "{{" not in text
    templates = {}
    for image, artifact in images.items():
        assert image in text, image
        key = image_env_name(artifact)
        text = text.replace(image, f"{{{{ .Values.{key} }}}}")
        templates[key] = f"{{{{.IMAGE_FULLY_QUALIFIED_{key}}}}}"
    (chart / "templates" / "objects.yaml").write_text(text)
    [release] = config["deploy"]["helm"]["releases"]
    config["deploy"]["helm"]["releases"].append({
        "name": f"{release['name']}-dagster",
        "chartPath": "charts/dagster-objects",
        "namespace": release["namespace"],
        "skipBuildDependencies": True,
        "setValueTemplates": templates,
    })  # fmt: skip
    (copy / "skaffold.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
