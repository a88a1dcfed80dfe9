"""The product's images as the cluster runs them, and how the local cluster builds images.

images/user_code (its targets ``user-code`` and ``training``) and images/mlflow are built
once per session into the cluster's engine, with the tags the release's manifests name
(``release_images``, support.images); every release test runs them. Here: what is inside
them, their sizes and build times (measured, never asserted), and the build helper's
handling of the host's CA bundle behind a TLS-intercepting proxy (the first three tests
need no cluster).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from support.helm import ROOT
from support.images import ReleaseImages, image_layers, manifest_image_tags
from support.tools import missing

from localcluster import engine
from localcluster.image_build import (
    EXTRA_CA_NAME,
    SYSTEM_CA_BUNDLE,
    build_image,
    extra_ca_file,
    host_ca_bundle,
    image_size,
    megabytes,
)

DISTRIBUTIONS = """
import importlib.metadata as m, sys
for name in sys.argv[1:]:
    try:
        print(name, m.version(name))
    except m.PackageNotFoundError:
        print(name, "absent")
"""
# Every file called extra-ca.pem, and the build stages' CA directory, anywhere in the image.
BUILD_CA = f"""
import os
found = [p for p in ("/opt/build-ca",) if os.path.exists(p)]
for top, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if os.path.join(top, d) not in ("/proc", "/sys", "/dev")]
    found += [os.path.join(top, f) for f in files if f == "{EXTRA_CA_NAME}"]
print(found)
"""


def _python(image: str, script: str, *args: str) -> str:
    """``python -c script args`` in a fresh container of ``image`` (no network); its output."""
    result = engine.docker().command(
        ["run", "--rm", "--network", "none", image, "python", "-c", script, *args], timeout=300
    )
    return result.stdout


def _certificates(pem: str) -> list[str]:
    return [f"-----BEGIN{block}" for block in pem.split("-----BEGIN")[1:]]


def test_host_ca_bundle_holds_each_system_certificate_once() -> None:
    if not SYSTEM_CA_BUNDLE.is_file():
        missing(f"the system CA bundle {SYSTEM_CA_BUNDLE}", "apt-get install ca-certificates")
    bundle = _certificates(host_ca_bundle())
    system = {cert.strip() for cert in _certificates(SYSTEM_CA_BUNDLE.read_text())}
    assert len(bundle) == len(set(bundle))
    assert system <= {cert.strip() for cert in bundle}


def test_extra_ca_file_exists_only_during_the_build_step(tmp_path: Path) -> None:
    target = tmp_path / EXTRA_CA_NAME
    with extra_ca_file(target) as written:
        assert written == target
        assert "BEGIN CERTIFICATE" in target.read_text()
    assert not target.exists()


def test_extra_ca_file_leaves_a_users_own_file_alone(tmp_path: Path) -> None:
    target = tmp_path / EXTRA_CA_NAME
    target.write_text("the user's own bundle\n")
    with extra_ca_file(target):
        assert target.read_text() == "the user's own bundle\n"
    assert target.read_text() == "the user's own bundle\n"


def test_the_engine_that_builds_the_images_has_no_bridge_network(local_cluster) -> None:
    """The cluster's dockerd runs with ``--bridge=none`` and no iptables rules: builds use
    the host network, and the engine leaves the host's addresses and firewall alone."""
    networks = engine.docker().command(["network", "ls", "--format", "{{.Name}}"]).stdout
    assert "bridge" not in networks.split(), networks


def test_failed_build_raises_with_the_failing_step_output(pod_image: str, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo step-output-marker && exit 3\n"
    )
    with pytest.raises(RuntimeError, match="step-output-marker"):
        build_image(
            engine.docker(), tmp_path / "Dockerfile", tmp_path, "dagma-broken:test", pod_image
        )
    assert not (tmp_path / EXTRA_CA_NAME).exists()


def test_every_image_carries_the_tag_the_manifests_run(
    release_images: ReleaseImages, cluster_measure
) -> None:
    built = (release_images.user_code, release_images.mlflow, release_images.training)
    assert tuple(image.tag for image in built) == manifest_image_tags()
    for image in built:
        size = megabytes(image_size(engine.docker(), image.tag))
        cluster_measure(f"image {image.tag}", f"{size}, built in {image.seconds:.1f} s")


def test_the_training_image_is_the_slim_ones_layers_plus_one_with_the_training_extra(
    release_images: ReleaseImages,
) -> None:
    """The slim image keeps no training library; the training image has its layers and one
    more, below dagma's code, holding the ``training`` extra at uv.lock's versions."""
    docker = engine.docker()
    slim, training = release_images.user_code.tag, release_images.training.tag
    slim_layers, training_layers = image_layers(docker, slim), image_layers(docker, training)
    assert len(training_layers) == len(slim_layers) + 1
    assert training_layers[:-2] == slim_layers[:-1]  # all but the code layer: the same
    locked = {p["name"]: p["version"] for p in tomllib.loads((ROOT / "uv.lock").read_text())
              ["package"]}  # fmt: skip
    extra = ("scikit-learn", "pandas", "matplotlib", "skops")
    found = _python(training, DISTRIBUTIONS, *extra).split("\n")[: len(extra)]
    assert found == [f"{name} {locked[name]}" for name in extra], found
    assert _python(slim, DISTRIBUTIONS, *extra).split("\n")[: len(extra)] == [
        f"{name} absent" for name in extra
    ]


def test_user_code_image_has_the_mlflow_client_and_not_the_server(
    release_images: ReleaseImages,
) -> None:
    locked = tomllib.loads((ROOT / "uv.lock").read_text())["package"]
    [skinny] = [p["version"] for p in locked if p["name"] == "mlflow-skinny"]
    found = _python(release_images.user_code.tag, DISTRIBUTIONS, "mlflow-skinny", "mlflow")
    assert found.split("\n")[:2] == [f"mlflow-skinny {skinny}", "mlflow absent"], found


def test_no_build_time_ca_file_reaches_any_image(release_images: ReleaseImages) -> None:
    for image in (release_images.user_code, release_images.mlflow, release_images.training):
        assert _python(image.tag, BUILD_CA).strip() == "[]", image.tag
