"""Where the local cluster keeps things, its addresses, and the one place its environment is read.

Environment variables (all optional):

- ``DAGMA_CLUSTER_CACHE``: the binary cache, outside the clone so a fresh clone reuses it
  (default ``~/.cache/dagma/cluster``).
- ``DAGMA_CLUSTER_DIR``: the cluster's state (certs, logs, pids, kubeconfig, data), default
  ``<repo>/.cluster`` (git-ignored).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
BUILD_DIR = ROOT / "tests" / "cluster" / "build"

# Addresses. The node's address lives on an interface of its own, a portless bridge (pods
# reach the API server and CoreDNS there); pods and Services get ranges that exist only
# inside this machine, and a firewall rule keeps anything from the pod bridge from being
# forwarded anywhere else.
NODE_INTERFACE = "dagma-node"
NODE_IP = "10.250.0.1"
BRIDGE = "dagma-cni0"
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/24"
KUBERNETES_SERVICE_IP = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
CLUSTER_DOMAIN = "cluster.local"
API_PORT = 6443
NODE_NAME = "dagma-node"


def cluster_dir() -> Path:
    """The cluster's state directory (``DAGMA_CLUSTER_DIR`` or ``<repo>/.cluster``)."""
    return Path(os.environ.get("DAGMA_CLUSTER_DIR") or ROOT / ".cluster").resolve()


def cache_dir() -> Path:
    """The binary cache (``DAGMA_CLUSTER_CACHE`` or ``~/.cache/dagma/cluster``)."""
    default = Path.home() / ".cache" / "dagma" / "cluster"
    return Path(os.environ.get("DAGMA_CLUSTER_CACHE") or default).resolve()
