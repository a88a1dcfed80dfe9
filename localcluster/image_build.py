"""``docker build`` of the cluster's images, behind a TLS-intercepting proxy, on the host network.

Where outgoing HTTPS is intercepted, pip inside a build trusts only its own
CA list and fails. The host's CA bundle (the system one plus whatever
SSL_CERT_FILE, REQUESTS_CA_BUNDLE, PIP_CERT, CURL_CA_BUNDLE or ``pip config``
point at) is written to a git-ignored ``extra-ca.pem`` in the build context
for the build's duration, for the Dockerfiles' optional extra-CA mechanism.
Proxy variables set in the environment are passed as build args (Docker
predefines them as ARGs and keeps them out of the image's history).
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from localcluster.engine import Docker
from localcluster.settings import ca_files_from_environment, proxy_build_args

SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
EXTRA_CA_NAME = "extra-ca.pem"
_PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.DOTALL)


@dataclass(frozen=True)
class BuildResult:
    """A finished build: the tag and how long ``docker build`` took."""

    tag: str
    seconds: float


def _pip_config_certs() -> list[Path]:
    """CA files named by ``pip config list`` (``*.cert=…``), if a pip is on PATH."""
    pip = shutil.which("pip") or shutil.which("pip3")
    if pip is None:
        return []
    try:
        listing = subprocess.run(
            [pip, "config", "list"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [Path(m) for m in re.findall(r"\.cert='([^']+)'", listing)]


def host_ca_files() -> list[Path]:
    """Existing CA bundle files this host's tools trust, system bundle first, no duplicates."""
    candidates = [SYSTEM_CA_BUNDLE]
    candidates += ca_files_from_environment()
    candidates += _pip_config_certs()
    seen: set[Path] = set()
    files: list[Path] = []
    for path in candidates:
        resolved = path.resolve()
        if resolved.is_file() and resolved not in seen:
            seen.add(resolved)
            files.append(path)
    return files


def host_ca_bundle() -> str:
    """The certificates of :func:`host_ca_files`, each once, as one PEM text ('' if none)."""
    blocks: dict[str, None] = {}
    for path in host_ca_files():
        for block in _PEM_BLOCK.findall(path.read_text(errors="replace")):
            blocks.setdefault(block.strip())
    return "".join(f"{block}\n" for block in blocks)


@contextmanager
def extra_ca_file(path: Path) -> Iterator[Path | None]:
    """Write the host's CA bundle to ``path`` for the duration; remove it afterwards.

    A file already there (the user's own) is used as it is and left in place.
    Yields the path, or None when the host has no CA bundle at all.
    """
    if path.exists():
        yield path
        return
    bundle = host_ca_bundle()
    if not bundle:
        yield None
        return
    path.write_text(bundle)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def build_image(
    docker: Docker,
    dockerfile: Path,
    context: Path,
    tag: str,
    base_image: str | None = None,
    build_args: Mapping[str, str] | None = None,
    extra_ca: str = EXTRA_CA_NAME,
    no_cache: bool = False,
    timeout: float = 1800.0,
    target: str | None = None,
) -> BuildResult:
    """Build ``dockerfile`` with ``context`` as ``tag`` on the host network; print progress.

    ``base_image`` goes in as the ``BASE_IMAGE`` build arg; ``extra_ca`` is where,
    relative to ``context``, the host's CA bundle is written during the build;
    ``no_cache`` rebuilds every step; ``target`` is the stage to build (default: the last).
    Raises ``RuntimeError`` with the end of the build log when the build fails.
    """
    args = {**proxy_build_args(), **(build_args or {})}
    if base_image is not None:
        args["BASE_IMAGE"] = base_image
    command = [docker.client, "build", "--network", "host", "--progress", "plain"]
    command += ["--file", str(dockerfile), "--tag", tag]
    if no_cache:
        command.append("--no-cache")
    if target is not None:
        command += ["--target", target]
    for name, value in args.items():
        command += ["--build-arg", f"{name}={value}"]
    command.append(str(context))
    tail: collections.deque[str] = collections.deque(maxlen=60)
    print(f"[build {tag}] {dockerfile} (context {context}, base {base_image})", flush=True)
    with extra_ca_file(context / extra_ca):
        began = time.monotonic()
        process = subprocess.Popen(
            command,
            env=docker.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        # A watchdog, so a build that hangs silently is stopped too.
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                tail.append(line.rstrip())
                print(f"[build {tag}] {line.rstrip()}", flush=True)
            returncode = process.wait()
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
        seconds = time.monotonic() - began
    if returncode != 0:
        if seconds >= timeout:
            tail.append(f"(killed: the build ran longer than {timeout:.0f} s)")
        log = "\n".join(tail)
        raise RuntimeError(f"building {tag} from {dockerfile} failed ({returncode}):\n{log}")
    print(f"[build {tag}] built in {seconds:.1f} s", flush=True)
    return BuildResult(tag, seconds)


def image_size(docker: Docker, tag: str) -> int:
    """The size of local image ``tag`` in bytes, as ``docker images`` reports it."""
    result = docker.command(["image", "inspect", "--format", "{{.Size}}", tag])
    return int(result.stdout.strip())


def megabytes(size: int) -> str:
    """A byte count as the MB figure ``docker images`` shows."""
    return f"{size / 1e6:.0f} MB"
