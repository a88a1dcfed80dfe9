"""A base image for the project's Dockerfiles, even where no registry can be reached.

The public slim Python image is used when it is present or can be pulled.
Otherwise a Debian bookworm root filesystem is made with
``debootstrap --variant=minbase`` (python3, python3-venv, ca-certificates),
slimmed (no apt caches or lists, no docs, no host resolv.conf) and imported
with ``docker import`` as ``dagma-base:bookworm``. Both the tag and the rootfs
tarball (under ~/.cache/dagma) are reused by later runs, keyed by the recipe.
Concurrent runs wait for one debootstrap (a lock file beside the tarball).

An imported image has no ``ENV`` at all, not even ``PATH``: a Dockerfile doing
``ENV PATH=/venv/bin:$PATH`` on it loses /usr/bin, so the Dockerfiles set PATH in full.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from localcluster.engine import Docker
from localcluster.prerequisites import MissingPrerequisite, require_executable
from localcluster.settings import base_image_cache_dir as cache_dir

PUBLIC_BASE = "python:3.11-slim-bookworm"
LOCAL_TAG = "dagma-base:bookworm"
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
RECIPE_LABEL = "org.dagma.base-recipe"
# Bump when slim_rootfs() changes, so cached tarballs and tags are rebuilt.
SLIMMING_VERSION = 1
APT_SOURCES = Path("/etc/apt")


@dataclass
class BaseImage:
    """The base image to pass as ``BASE_IMAGE``, where it came from, and what it cost."""

    tag: str
    source: str
    seconds: dict[str, float] = field(default_factory=dict)


def recipe_id() -> str:
    """A short hash of everything that decides the local base image's content."""
    recipe = {"suite": SUITE, "variant": "minbase", "packages": PACKAGES, "v": SLIMMING_VERSION}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def _deb822_paragraphs(text: str) -> list[dict[str, str]]:
    """Paragraphs of a deb822 ``.sources`` file as ``{field: value}`` (comments dropped)."""
    paragraphs: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                paragraphs.append(current)
            current, key = {}, ""
        elif line[0].isspace() and key:
            current[key] += " " + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            current[key] = value.strip()
    if current:
        paragraphs.append(current)
    return paragraphs


def debian_mirror(apt_dir: Path = APT_SOURCES, suite: str = SUITE) -> str:
    """The mirror this machine's apt uses for ``suite`` main (debootstrap fetches from it)."""
    entries: list[tuple[str, list[str], list[str]]] = []  # (uri, suites, components)
    one_line = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in one_line:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            line = re.sub(r"\[[^\]]*\]", "", line.split("#", 1)[0]).split()
            if len(line) >= 4 and line[0] == "deb":
                entries.append((line[1], [line[2]], line[3:]))
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for paragraph in _deb822_paragraphs(path.read_text()):
            if "deb" not in paragraph.get("types", "").split():
                continue
            if paragraph.get("enabled", "yes").lower() == "no":
                continue
            for uri in paragraph.get("uris", "").split():
                suites = paragraph.get("suites", "").split()
                entries.append((uri, suites, paragraph.get("components", "").split()))
    for uri, suites, components in entries:
        if suite in suites and "main" in components:
            return uri
    raise MissingPrerequisite(
        f"No apt source for Debian {suite} main in {apt_dir}/sources.list*: debootstrap "
        f"needs the Debian mirror apt uses (e.g. `deb http://deb.debian.org/debian {suite} main`)."
    )


def _empty_dir(path: Path) -> None:
    """Remove what is inside ``path`` without following symlinks out of the rootfs."""
    if path.is_symlink() or not path.is_dir():
        return
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def slim_rootfs(root: Path) -> None:
    """Drop apt caches and lists, docs, logs and the host's resolver files from a rootfs."""
    for relative in (
        "var/cache/apt", "var/lib/apt/lists", "var/log", "tmp", "dev",
        "usr/share/man", "usr/share/info", "usr/share/locale",
    ):  # fmt: skip
        _empty_dir(root / relative)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    doc = root / "usr/share/doc"
    for path in sorted(doc.rglob("*"), reverse=True) if doc.is_dir() else []:
        if path.is_symlink() or path.is_file():
            if path.name != "copyright":
                path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    # debootstrap copies the host's resolver and hostname; docker provides its own at run time.
    for relative in ("etc/resolv.conf", "etc/hostname"):
        target = root / relative
        target.unlink(missing_ok=True)
        target.write_text("")
    # Keep later apt-get installs in Dockerfiles as slim as this rootfs.
    (root / "etc/dpkg/dpkg.cfg.d/dagma-slim").write_text(
        "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n"
        "path-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n"
        "path-exclude /usr/share/locale/*\n"
    )
    (root / "etc/apt/apt.conf.d/dagma-clean").write_text(
        'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
    )


def _mounts_below(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    return sorted((p for p in points if p.startswith(prefix)), reverse=True)


def _remove_rootfs(root: Path) -> None:
    """Delete a (possibly half-made) rootfs, unmounting what debootstrap may have left mounted."""
    for point in _mounts_below(root):
        subprocess.run(["umount", "-l", point], check=False)
    if _mounts_below(root):
        raise RuntimeError(f"{root} still has mounts below it; not deleting it: remove by hand")
    shutil.rmtree(root, ignore_errors=True)


def build_rootfs_tarball(destination: Path, timings: dict[str, float]) -> None:
    """debootstrap + slim + tar into ``destination`` (written atomically)."""
    debootstrap = require_executable("debootstrap", "apt-get install debootstrap")
    if os.geteuid() != 0:
        raise MissingPrerequisite("debootstrap must run as root: run as root, or pull the base")
    mirror = debian_mirror()
    destination.parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="rootfs-", dir=destination.parent))
    log = destination.with_suffix(".debootstrap.log")
    try:
        print(f"[base image] debootstrap {SUITE} from {mirror} (log: {log})", flush=True)
        began = time.monotonic()
        with log.open("w") as out:
            result = subprocess.run(
                [debootstrap, "--variant=minbase", f"--include={','.join(PACKAGES)}",
                 SUITE, str(root), mirror],
                stdout=out, stderr=subprocess.STDOUT, timeout=1200, check=False,
            )  # fmt: skip
        timings["debootstrap"] = time.monotonic() - began
        if result.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
            raise RuntimeError(
                f"debootstrap {SUITE} from {mirror} exited {result.returncode}; "
                f"last lines of {log}:\n{tail}"
            )
        slim_rootfs(root)
        began = time.monotonic()
        partial = destination.with_suffix(".partial")
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."], check=True
        )
        partial.replace(destination)
        timings["tar"] = time.monotonic() - began
        log.unlink(missing_ok=True)
    finally:
        _remove_rootfs(root)


@contextmanager
def exclusive_lock(path: Path, timeout: float = 300.0) -> Iterator[None]:
    """Hold an exclusive flock on ``path``, waiting at most ``timeout`` seconds."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} stayed locked for {timeout:.0f} s") from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


def image_label(docker: Docker, tag: str, label: str) -> str | None:
    """The value of ``label`` on local image ``tag``; None if the image is absent."""
    result = docker.command(
        ["image", "inspect", "--format", f'{{{{index .Config.Labels "{label}"}}}}', tag],
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def has_image(docker: Docker, tag: str) -> bool:
    """Whether image ``tag`` is in the engine."""
    return docker.command(["image", "inspect", tag], check=False).returncode == 0


def ensure_base_image(docker: Docker) -> BaseImage:
    """The public slim base if present or pullable, else the local debootstrapped one."""
    if has_image(docker, PUBLIC_BASE):
        return BaseImage(PUBLIC_BASE, "present locally")
    try:
        pulled = docker.command(["pull", "--quiet", PUBLIC_BASE], timeout=300, check=False)
        if pulled.returncode == 0:
            return BaseImage(PUBLIC_BASE, "pulled")
        reason = pulled.stderr.strip().splitlines()[-1:] or ["unknown error"]
    except subprocess.TimeoutExpired:
        reason = ["pull timed out after 300 s"]
    print(f"[base image] cannot pull {PUBLIC_BASE} ({reason[0]}); using {LOCAL_TAG}", flush=True)

    recipe = recipe_id()
    cache_dir().mkdir(parents=True, exist_ok=True)
    # Concurrent sessions wait for one debootstrap instead of each running their own.
    with exclusive_lock(cache_dir() / "base-image.lock", timeout=1800):
        if image_label(docker, LOCAL_TAG, RECIPE_LABEL) == recipe:
            return BaseImage(LOCAL_TAG, "present locally")
        timings: dict[str, float] = {}
        tarball = cache_dir() / f"base-{SUITE}-{recipe}.tar"
        source = "imported from cached rootfs"
        if not tarball.is_file():
            build_rootfs_tarball(tarball, timings)
            source = "debootstrapped and imported"
            for outdated in cache_dir().glob(f"base-{SUITE}-*.tar"):
                if outdated != tarball:
                    outdated.unlink()
        began = time.monotonic()
        docker.command(
            ["import", "--change", f"LABEL {RECIPE_LABEL}={recipe}", str(tarball), LOCAL_TAG],
            timeout=600,
        )
        timings["import"] = time.monotonic() - began
    return BaseImage(LOCAL_TAG, source, timings)
