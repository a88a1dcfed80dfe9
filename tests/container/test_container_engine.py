"""The Docker engine and the base image: they answer, and containers share the host's loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.container.base_image import LOCAL_TAG, BaseImage
from support.container.cli import Docker
from support.container.engine import Engine, ensure_engine
from support.container.loopback import LoopbackPage
from support.container.run import run_container, start_container


def test_engine_answers_with_its_server_version(docker_engine: Engine) -> None:
    assert docker_engine.docker.server_version() == docker_engine.version != ""


def test_engine_started_by_the_tests_has_no_bridge_network(docker_engine: Engine) -> None:
    if not docker_engine.started_by_tests:
        pytest.skip("the engine was already running: its networks are not ours to check")
    networks = docker_engine.docker.command(["network", "ls", "--format", "{{.Name}}"])
    assert "bridge" not in networks.stdout.split()


def test_a_concurrent_session_leaving_does_not_stop_the_shared_engine(
    docker_engine: Engine,
) -> None:
    if not docker_engine.started_by_tests:
        pytest.skip("the engine was already running: the tests never stop it")
    other_session = ensure_engine()
    assert other_session.lease is not None
    assert other_session.lease.pid == docker_engine.lease.pid
    other_session.stop()
    assert docker_engine.docker.server_version() == docker_engine.version


def test_base_image_runs_python3(docker: Docker, base_image: BaseImage) -> None:
    result = run_container(docker, base_image.tag, ["python3", "--version"], timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Python 3.11"), result.stdout


def test_imported_base_image_defines_no_environment(docker: Docker, base_image: BaseImage) -> None:
    """The contract the Dockerfiles rely on: with the local base, PATH is theirs to set in full."""
    if base_image.tag != LOCAL_TAG:
        pytest.skip(f"the base is {base_image.tag} ({base_image.source}), not the imported one")
    env = docker.command(["image", "inspect", "--format", "{{json .Config.Env}}", LOCAL_TAG])
    assert json.loads(env.stdout) in (None, [])


def test_container_reaches_a_host_server_on_loopback(
    docker: Docker, base_image: BaseImage, loopback_page: LoopbackPage
) -> None:
    fetch = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())"
    result = run_container(
        docker, base_image.tag, ["python3", "-c", fetch, loopback_page.url], timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert loopback_page.text in result.stdout


def test_container_receives_env_values_and_volumes(
    docker: Docker, base_image: BaseImage, tmp_path: Path
) -> None:
    (tmp_path / "input.txt").write_text("from the host")
    script = (
        "import os, pathlib; data = pathlib.Path('/data'); text = (data / 'input.txt').read_text();"
        "(data / 'output.txt').write_text(os.environ['GREETING'] + ' / ' + text)"
    )
    result = run_container(
        docker,
        base_image.tag,
        ["python3", "-c", script],
        env={"GREETING": "hello with spaces; and $symbols"},
        volumes={tmp_path: "/data"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    output = (tmp_path / "output.txt").read_text()
    assert output == "hello with spaces; and $symbols / from the host"


def test_background_container_runs_until_stopped(docker: Docker, base_image: BaseImage) -> None:
    container = start_container(
        docker,
        base_image.tag,
        ["python3", "-c", "print('up', flush=True); import time; time.sleep(300)"],
    )
    try:
        assert container.is_running()
    finally:
        container.stop()
    assert not container.is_running()
