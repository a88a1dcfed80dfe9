"""The Kubernetes Pod Security Standard "restricted", checked on a pod spec.

Rules from https://kubernetes.io/docs/concepts/security/pod-security-standards/
(restricted profile, which includes baseline's host/privilege rules).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ALLOWED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip
SECCOMP_TYPES = {"RuntimeDefault", "Localhost"}


def restricted_violations(spec: Mapping[str, Any]) -> list[str]:
    """Why the pod ``spec`` (a PodSpec as a dict) is not "restricted"; empty if it is."""
    problems: list[str] = []
    pod = spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            problems.append(f"pod: {field} is true")
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            problems.append(f"volume {volume.get('name')}: type {sorted(kinds)} not allowed")
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    for container in containers:
        name = container.get("name", "?")
        own = container.get("securityContext") or {}
        if own.get("privileged"):
            problems.append(f"{name}: privileged")
        if own.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        capabilities = own.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {capabilities['add']}")
        non_root = own.get("runAsNonRoot", pod.get("runAsNonRoot"))
        if non_root is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if own.get("runAsUser", pod.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser is 0")
        seccomp = own.get("seccompProfile") or pod.get("seccompProfile") or {}
        if seccomp.get("type") not in SECCOMP_TYPES:
            problems.append(f"{name}: seccompProfile is {seccomp or 'unset'}")
    if not containers:
        problems.append("pod has no containers")
    return problems


def pod_from_values(
    pod_security_context: Mapping[str, Any] | None,
    container_security_context: Mapping[str, Any] | None,
    volumes: list[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The pod a chart renders from a values pair (podSecurityContext, securityContext)."""
    return {
        "securityContext": dict(pod_security_context or {}),
        "containers": [{"name": "main", "securityContext": dict(container_security_context or {})}],
        "volumes": list(volumes or []),
    }
