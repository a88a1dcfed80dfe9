"""Image builds on the base image, behind the TLS-intercepting proxy, through the extra-CA file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from support.container.base_image import BaseImage
from support.container.build import (
    EXTRA_CA_NAME,
    SYSTEM_CA_BUNDLE,
    build_image,
    extra_ca_file,
    host_ca_bundle,
)
from support.container.cli import Docker
from support.container.run import run_container
from support.tools import missing

# The pattern the project's Dockerfiles follow, in miniature: BASE_IMAGE as an
# ARG, PATH set in full (an imported base has none), and the extra CA bundle
# bind-mounted for the pip step only, so it never lands in a layer.
TINY_DOCKERFILE = """\
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN python3 -m venv /opt/venv
RUN --mount=type=bind,source=extra-ca.pem,target=/tmp/extra-ca.pem \\
    PIP_CERT=/tmp/extra-ca.pem pip install --no-cache-dir --disable-pip-version-check six==1.17.0
CMD ["python", "-c", "import six, sys; print(sys.executable, six.__version__)"]
"""


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


def test_build_on_base_image_pip_installs_through_the_proxy_with_the_host_ca(
    docker: Docker, base_image: BaseImage, tmp_path: Path, measure: Callable[[str, str], None]
) -> None:
    (tmp_path / "Dockerfile").write_text(TINY_DOCKERFILE)
    # --no-cache: a cached layer would prove nothing about reaching PyPI through the proxy.
    built = build_image(
        docker,
        tmp_path / "Dockerfile",
        tmp_path,
        "dagma-harness-tiny:test",
        base_image=base_image.tag,
        no_cache=True,
    )
    measure("tiny build (venv + pip install, no cache)", f"{built.seconds:.1f} s")
    assert not (tmp_path / EXTRA_CA_NAME).exists()
    try:
        result = run_container(docker, built.tag, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["/opt/venv/bin/python", "1.17.0"]
        leftover = run_container(docker, built.tag, ["ls", "/tmp"], timeout=60)
        assert EXTRA_CA_NAME not in leftover.stdout
    finally:
        docker.command(["rmi", built.tag], check=False)


def test_failed_build_raises_with_the_failing_step_output(
    docker: Docker, base_image: BaseImage, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo step-output-marker && exit 3\n"
    )
    with pytest.raises(RuntimeError, match="step-output-marker"):
        build_image(
            docker, tmp_path / "Dockerfile", tmp_path, "dagma-harness-broken:test", base_image.tag
        )
    assert not (tmp_path / EXTRA_CA_NAME).exists()
