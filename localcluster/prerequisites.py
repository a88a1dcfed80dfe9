"""What the cluster needs from this machine, checked before anything starts.

``python -m localcluster up`` stops with the list; the cluster tests skip with it (and
fail under ``CI=true``). Each entry says how to get what is missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from localcluster.binaries import go_executable

# Debian packages, as .ci/run installs them.
APT = "apt-get install"
HOST_FILES = {
    Path("/usr/sbin/dockerd"): f"{APT} docker.io",
    Path("/usr/lib/cni/bridge"): f"{APT} containernetworking-plugins",
    Path("/bin/busybox"): f"{APT} busybox-static",
}
HOST_EXECUTABLES = {
    "gcc": f"the pause image is compiled from Kubernetes' pause.c: {APT} gcc libc6-dev",
    "iptables": f"{APT} iptables",
    "conntrack": f"{APT} conntrack",
    "socat": f"kubectl port-forward through cri-dockerd: {APT} socat",
    "ipset": f"kube-router's NetworkPolicy firewall keeps pod sets in ipsets: {APT} ipset",
}


class MissingPrerequisite(RuntimeError):
    """Something the cluster needs is not on this machine; the message says how to get it."""


def require_executable(name: str, how_to_get: str) -> str:
    """The full path of executable ``name``; raises :class:`MissingPrerequisite` without it."""
    path = shutil.which(name)
    if path is None:
        raise MissingPrerequisite(f"executable {name!r} is not available: {how_to_get}")
    return path


def missing() -> list[tuple[str, str]]:
    """What is missing for ``up``, each as (what, how to get it); empty when all is there."""
    problems = []
    if os.geteuid() != 0:
        problems.append(("root", "the cluster creates network interfaces, iptables rules, mounts"))
    if go_executable() is None:
        problems.append(("Go", "the cluster's binaries are built from source: install Go 1.26"))
    problems += [(n, how) for n, how in HOST_EXECUTABLES.items() if not shutil.which(n)]
    problems += [(str(path), how) for path, how in HOST_FILES.items() if not path.exists()]
    return problems
