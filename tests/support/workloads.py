"""Small helpers for the cluster tests: restricted namespaces, pods, waiting, port-forwards.

Objects are plain dicts sent through the official Kubernetes client; waits poll the
API with a bound and fail with what the API says (events, container states) when the
bound is reached.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client

T = TypeVar("T")

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def restricted_namespace(core: client.CoreV1Api, name: str) -> str:
    """Create namespace ``name`` with Pod Security "restricted" enforced."""
    labels = {f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "warn")}
    core.create_namespace({"metadata": {"name": name, "labels": labels}})
    return name


def pod(name: str, image: str, command: list[str], **spec: Any) -> dict[str, Any]:
    """A restricted-compliant single-container pod running ``command``."""
    container = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "securityContext": RESTRICTED_CONTAINER,
        **spec.pop("container", {}),
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, explain=None) -> T:
    """Poll ``probe`` until it returns something; on timeout raise with ``explain()``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(1)
    detail = explain() if explain else ""
    raise AssertionError(f"{what} not reached within {timeout:.0f} s\n{detail}")


def describe_pod(core: client.CoreV1Api, namespace: str, name: str) -> str:
    """The pod's phase, container states and events, for failure messages."""
    found = core.read_namespaced_pod(name, namespace)
    events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    lines = [f"pod {namespace}/{name}: phase {found.status.phase}"]
    for status in found.status.container_statuses or []:
        lines.append(f"  {status.name}: {status.state}")
    lines += [f"  event {e.reason}: {e.message}" for e in events.items]
    return "\n".join(lines)


def pod_log(core: client.CoreV1Api, namespace: str, name: str) -> str:
    """The pod's log as text (the client's own decoding of this endpoint returns bytes' repr)."""
    response = core.read_namespaced_pod_log(name, namespace, _preload_content=False)
    return response.data.decode()


def wait_pod_phase(
    core: client.CoreV1Api, namespace: str, name: str, phases: set[str], timeout: float = 180
) -> str:
    def probe() -> str | None:
        phase = core.read_namespaced_pod(name, namespace).status.phase
        return phase if phase in phases else None

    return wait_for(
        f"pod {name} in {phases}", probe, timeout, lambda: describe_pod(core, namespace, name)
    )


def wait_pod_ready(core: client.CoreV1Api, namespace: str, name: str, timeout: float = 180) -> None:
    def probe() -> bool:
        conditions = core.read_namespaced_pod(name, namespace).status.conditions or []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)

    wait_for(f"pod {name} Ready", probe, timeout, lambda: describe_pod(core, namespace, name))


def wait_deployment_ready(
    apps: client.AppsV1Api, namespace: str, name: str, timeout: float = 600, explain=None
) -> None:
    """Until every replica of the Deployment's current revision is Ready."""

    def probe() -> bool:
        found = apps.read_namespaced_deployment(name, namespace)
        status, wanted = found.status, found.spec.replicas
        return (status.observed_generation or 0) >= found.metadata.generation and (
            status.updated_replicas == wanted == status.ready_replicas
        )

    wait_for(f"deployment {name} Ready", probe, timeout, explain)


@contextmanager
def port_forward(
    kubectl: Path, kubeconfig: Path, namespace: str, target: str, port: int
) -> Iterator[int]:
    """``kubectl port-forward <target> :<port>`` on 127.0.0.1; yields the local port."""
    process = subprocess.Popen(
        [str(kubectl), f"--kubeconfig={kubeconfig}", "-n", namespace, "port-forward",
         "--address=127.0.0.1", target, f":{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", line)
        if not match:
            process.kill()
            rest = process.stdout.read()
            raise AssertionError(f"kubectl port-forward did not start: {line}{rest}")
        yield int(match.group(1))
    finally:
        process.terminate()
        process.wait(timeout=30)
