"""The cluster's own Docker engine: Debian's dockerd on a socket, data root and exec root of
its own, so the cluster and the container tests' engine never stop anything under each other.

Why not the tests' engine: this machine's root lacks CAP_SYS_RESOURCE, so the kernel
refuses a negative ``oom_score_adj``, and cri-dockerd gives every pod sandbox -998.
This engine's default runtime is ``localcluster/bin/runc``, which raises a negative value
to 0 and runs Debian's runc unchanged; the tests' engine keeps plain runc.
Same network stance as the tests' engine: no docker0 bridge, no iptables, no forwarding
changes (the pods' network is CNI's). Images for pods are built into this engine
(``DOCKER_HOST=unix:///run/dagma-cluster/docker.sock``) and the kubelet runs exactly those.
"""

from __future__ import annotations

from pathlib import Path

from support.container.cli import Docker, pick_client

from localcluster.processes import Process, wait_until

STATE = Path("/run/dagma-cluster")
SOCKET = STATE / "docker.sock"
HOST = f"unix://{SOCKET}"
DATA_ROOT = Path("/var/lib/dagma-cluster/docker")  # kept by cluster-down: the image cache
RUNC = Path(__file__).resolve().parent / "bin" / "runc"


def docker() -> Docker:
    """A docker CLI bound to the cluster's engine."""
    return Docker(pick_client(), HOST)


def process(run_dir: Path, log_dir: Path) -> Process:
    return Process(
        "dockerd",
        [
            "/usr/sbin/dockerd",
            f"--host={HOST}",
            f"--data-root={DATA_ROOT}",
            f"--exec-root={STATE / 'docker-exec'}",
            f"--pidfile={STATE / 'docker.pid'}",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--ip-forward=false",
            f"--add-runtime=dagma-runc={RUNC}",
            "--default-runtime=dagma-runc",
        ],
        run_dir,
        log_dir,
    )


def start(run_dir: Path, log_dir: Path) -> Docker:
    """Start the engine unless it runs; wait until it answers."""
    dockerd = process(run_dir, log_dir)
    STATE.mkdir(parents=True, exist_ok=True)
    dockerd.start()
    client = docker()
    wait_until("the cluster's dockerd answering", lambda: bool(client.server_version(5)), dockerd)
    return client
