"""The cluster's binaries, built here from pinned Go wrapper modules and cached outside the clone.

Each wrapper module under ``localcluster/go/<module>/`` pins one upstream
release (its go.mod/go.sum, plus a main.go where upstream's own main is not
importable). A build goes into ``<cache>/<module>-<key>/`` where the key hashes
everything that decides the bytes (go.mod, go.sum, main.go, ldflags, the Go
version), so a fresh clone on the same machine finds its binaries in seconds and
a changed pin builds anew. ``.cluster/bin/`` then holds symlinks to the cache.

Two modules build at a time: one ``go build`` leaves a core idle while it downloads
modules or links, and the cold build is the longest part of a brand-new machine's CI.
One build runs per cache at a time (a lock file beside it): ``.ci/run`` builds in the
background while the suites that need no cluster run, and a ``make cluster-up`` started
meanwhile waits for that build instead of racing it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from localcluster.settings import GO_MODULES_DIR, cache_dir, cluster_dir, go_environment

KUBERNETES_VERSION = "v1.34.4"
KUBERNETES_BUILD_DATE = "2026-02-10T12:53:36Z"  # the module's publication time, for a stable key
HELM_VERSION = "v3.19.5"
COREDNS_VERSION = "v1.13.2"
CRI_DOCKERD_VERSION = "0.3.17"
SKAFFOLD_VERSION = "v2.24.0"
SEAWEEDFS_VERSION = "v0.0.0-20261109003541-7506e5f91cd6"  # a commit: no tagged release is served
PARALLEL_MODULES = 2


def _kubernetes_ldflags() -> tuple[str, ...]:
    """What hack/lib/version.sh passes, for both version packages, so /version tells the release."""
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    values = {
        "gitVersion": KUBERNETES_VERSION,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "archive",
        "buildDate": KUBERNETES_BUILD_DATE,
    }
    return tuple(
        f"-X {package}.{key}={value}"
        for package in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version")
        for key, value in values.items()
    )


@dataclass(frozen=True)
class Module:
    """One wrapper module and the commands it builds (binary name -> Go package)."""

    name: str
    commands: dict[str, str]
    ldflags: tuple[str, ...] = field(default=())

    @property
    def source(self) -> Path:
        return GO_MODULES_DIR / self.name

    def key(self) -> str:
        """Hash of everything that decides the binaries' bytes."""
        digest = hashlib.sha256()
        for name in ("go.mod", "go.sum", "main.go"):
            path = self.source / name
            digest.update(name.encode() + b"\0" + (path.read_bytes() if path.exists() else b""))
        digest.update("\0".join(self.ldflags).encode())
        digest.update(go_version().encode())
        return digest.hexdigest()[:16]

    def cached(self) -> Path:
        return cache_dir() / f"{self.name}-{self.key()}"


MODULES = (
    Module(
        "kubernetes",
        {
            name: f"k8s.io/kubernetes/cmd/{name}"
            for name in (
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kubelet",
                "kube-proxy",
                "kubectl",
            )
        },
        _kubernetes_ldflags(),
    ),
    Module("etcd", {"etcd": "."}),
    Module(
        "cri-dockerd",
        {"cri-dockerd": "github.com/Mirantis/cri-dockerd"},
        (f"-X github.com/Mirantis/cri-dockerd/cmd/version.Version={CRI_DOCKERD_VERSION}",),
    ),
    Module(
        "coredns",
        {"coredns": "github.com/coredns/coredns"},
        (f"-X github.com/coredns/coredns/coremain.GitCommit={COREDNS_VERSION}",),
    ),
    Module(
        "local-path-provisioner",
        {"local-path-provisioner": "github.com/rancher/local-path-provisioner"},
    ),
    Module(
        "helm",
        {"helm": "helm.sh/helm/v3/cmd/helm"},
        (
            f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
            "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
        ),
    ),
    # The NetworkPolicy enforcer (only its firewall runs).
    Module(
        "kube-router",
        {"kube-router": "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"},
        ("-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=v2.1.0",),
    ),
    # The object store's server; it runs in a pod (localcluster/images/seaweedfs), not here.
    Module("seaweedfs", {"weed": "github.com/seaweedfs/seaweedfs/weed"}),
    Module(
        "skaffold",
        {"skaffold": "github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold"},
        (
            "-X github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version.version="
            + SKAFFOLD_VERSION,
        ),
    ),
)


def go_executable() -> str | None:
    """The machine's ``go`` (PATH, then /usr/local/go/bin)."""
    return shutil.which("go") or next(
        (p for p in ("/usr/local/go/bin/go",) if os.access(p, os.X_OK)), None
    )


def go_version() -> str:
    go = go_executable()
    if go is None:
        raise RuntimeError("Go is not installed: the cluster's binaries are built from source")
    return subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout


def build_module(module: Module, log=print) -> Path:
    """Build ``module``'s commands into its cache directory unless they are there; return it."""
    target = module.cached()
    if all((target / name).exists() for name in module.commands):
        return target
    partial = target.with_name(target.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    go = go_executable()
    assert go is not None
    for name, package in module.commands.items():
        if (partial / name).exists():
            continue
        began = time.monotonic()
        log(f"    building {name} ({module.name}) ...")
        command = [
            go,
            "build",
            "-trimpath",
            "-ldflags",
            " ".join(("-s", "-w", *module.ldflags)),
            "-o",
            str(partial / (name + ".tmp")),
            package,
        ]
        result = subprocess.run(command, cwd=module.source, env=go_environment(), text=True)
        if result.returncode != 0:
            raise RuntimeError(f"`{' '.join(command)}` in {module.source} failed")
        (partial / (name + ".tmp")).rename(partial / name)
        log(f"    built {name} in {time.monotonic() - began:.0f} s")
    partial.rename(target)
    return target


@contextmanager
def build_lock(log=print) -> Iterator[None]:
    """Hold the cache's build lock; wait (saying so) while another process builds."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / "build.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"    waiting for another build of the cluster's binaries ({cache_dir()})")
            began = time.monotonic()
            fcntl.flock(lock, fcntl.LOCK_EX)
            log(f"    the other build finished after {time.monotonic() - began:.0f} s")
        yield  # the lock goes with the file's closing


def ensure_binaries(bin_dir: Path | None = None, log=print) -> dict[str, float]:
    """Build what is missing, link every binary into ``bin_dir`` (default .cluster/bin);
    return seconds per module."""
    bin_dir = bin_dir or cluster_dir() / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)

    def build(module: Module) -> tuple[Module, Path, float]:
        began = time.monotonic()
        built = build_module(module, log)
        return module, built, time.monotonic() - began

    with build_lock(log), ThreadPoolExecutor(PARALLEL_MODULES) as pool:
        results = list(pool.map(build, MODULES))
    timings: dict[str, float] = {}
    for module, built, seconds in results:
        timings[module.name] = seconds
        for name in module.commands:
            link = bin_dir / name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(built / name)
    return timings
