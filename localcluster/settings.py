"""The cluster tool's settings: where it keeps things, its addresses, and its environment.

This module is the only one of ``localcluster`` that reads environment variables (all
optional):

- ``DAGMA_CLUSTER_CACHE``: the binary cache, outside the clone so a fresh clone reuses it
  (default ``~/.cache/dagma/cluster``).
- ``DAGMA_CLUSTER_DIR``: the cluster's state (certs, logs, pids, kubeconfig, data), default
  ``<repo>/.cluster`` (git-ignored).
- ``XDG_CACHE_HOME``: where the base image's root filesystem tarball is kept
  (``$XDG_CACHE_HOME/dagma``, default ``~/.cache/dagma``).
- ``SSL_CERT_FILE``, ``REQUESTS_CA_BUNDLE``, ``PIP_CERT``, ``CURL_CA_BUNDLE``: CA files this
  host's tools trust, handed to image builds (:mod:`localcluster.image_build`).
- ``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY`` (and their lower-case forms): passed to
  image builds as build args.
- ``UV``: the uv executable (``uv run`` sets it), for the Dagster stand-in's pins.
- ``GOFLAGS``: kept, with ``-buildvcs=false`` added, for the Go builds.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

TOOL_DIR = Path(__file__).resolve().parent
ROOT = TOOL_DIR.parent  # the repository
GO_MODULES_DIR = TOOL_DIR / "go"  # one pinned Go wrapper module per component
STANDINS_DIR = TOOL_DIR / "images"  # one Dockerfile directory per stand-in image

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

CA_FILE_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE")
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


def cluster_dir() -> Path:
    """The cluster's state directory (``DAGMA_CLUSTER_DIR`` or ``<repo>/.cluster``)."""
    return Path(os.environ.get("DAGMA_CLUSTER_DIR") or ROOT / ".cluster").resolve()


def cache_dir() -> Path:
    """The binary cache (``DAGMA_CLUSTER_CACHE`` or ``~/.cache/dagma/cluster``)."""
    default = Path.home() / ".cache" / "dagma" / "cluster"
    return Path(os.environ.get("DAGMA_CLUSTER_CACHE") or default).resolve()


def base_image_cache_dir() -> Path:
    """Where the base image's rootfs tarball is kept between runs (outside the repository)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dagma"


def ca_files_from_environment() -> list[Path]:
    """The CA files the CA variables name (set ones only, in the order above)."""
    return [Path(os.environ[name]) for name in CA_FILE_VARIABLES if os.environ.get(name)]


def proxy_build_args() -> dict[str, str]:
    """The proxy variables set in this environment, to pass as build args."""
    return {name: os.environ[name] for name in PROXY_VARIABLES if os.environ.get(name)}


def uv_from_environment() -> str | None:
    """``$UV``, which ``uv run`` sets to the uv executable running it."""
    return os.environ.get("UV") or None


def go_environment() -> dict[str, str]:
    """The environment of a Go build: this process's, with the machine's own Go, static
    binaries (no libc coupling) and no VCS stamping of the wrapper module."""
    env = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="0")
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -buildvcs=false").strip()
    return env
