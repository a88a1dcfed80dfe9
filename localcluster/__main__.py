"""``python -m localcluster up|down|build``: start or stop the local cluster, print how to use
it; or only build its binaries into the cache (no root needed)."""

from __future__ import annotations

import argparse
import os
import sys
import time

from localcluster import binaries, cluster, engine, prerequisites


def main(argv: list[str] | None = None) -> int:
    """Run ``up``, ``down`` or ``build``; 2 when this machine lacks what the cluster needs."""
    parser = argparse.ArgumentParser(prog="python -m localcluster", description=__doc__)
    parser.add_argument(
        "action",
        choices=("up", "down", "build"),
        help="up: start the cluster (idempotent); down: stop it and remove what it added; "
        "build: build the binaries into the cache only",
    )
    action = parser.parse_args(argv).action
    if action == "build":
        return build()
    if os.geteuid() != 0:
        print(
            "the local cluster needs root (network interfaces, iptables, mounts)", file=sys.stderr
        )
        return 2
    if action == "up" and (missing := prerequisites.missing()):
        lines = (f"{what}: {how}" for what, how in missing)
        print("the local cluster needs:\n  " + "\n  ".join(lines), file=sys.stderr)
        return 2
    if action == "down":
        cluster.down()
        return 0
    started = cluster.up()
    state = "already running" if started.already_running else "started"
    print(
        f"cluster {state}; timings (s): "
        + ", ".join(f"{k}={v:.1f}" for k, v in started.timings.items())
    )
    memory = cluster.resident_memory(started.layout)
    print(
        f"resident memory (MiB): total {sum(memory.values()):.0f}, "
        + ", ".join(f"{name} {mib:.0f}" for name, mib in memory.items())
    )
    print(f"export KUBECONFIG={started.layout.kubeconfig}")
    print(f'export PATH="{started.layout.bin}:$PATH"')
    print(f"export DOCKER_HOST={engine.HOST}  # images for pods are built into the node's engine")
    return 0


def build() -> int:
    """Build (or find cached) every binary; print seconds per module."""
    if binaries.go_executable() is None:
        print("building the cluster's binaries needs Go (1.26, on PATH)", file=sys.stderr)
        return 2
    began = time.monotonic()
    timings = binaries.ensure_binaries()
    print(
        f"cluster binaries ready in {time.monotonic() - began:.0f} s; per module (s): "
        + ", ".join(f"{name}={seconds:.0f}" for name, seconds in timings.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
