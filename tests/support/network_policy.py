"""Kubernetes NetworkPolicy semantics, evaluated on rendered policies (no cluster needed).

Follows https://kubernetes.io/docs/concepts/services-networking/network-policies/: a pod is
isolated for ingress when a policy of its namespace selects it; a connection is admitted when
any rule of any such policy admits the source. A peer with only a podSelector means pods of
the policy's own namespace; with a namespaceSelector, pods of the matching namespaces.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple


class PodRef(NamedTuple):
    """A pod as a policy sees it: its labels, its namespace and that namespace's labels."""

    labels: Mapping[str, str]
    namespace: str
    namespace_labels: Mapping[str, str]


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels/matchExpressions) matches ``labels``; {} matches all."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        ok = {
            "In": key in labels and labels[key] in (values or []),
            "NotIn": labels.get(key) not in (values or []),
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not ok:
            return False
    return True


def _peer_admits(peer: Mapping[str, Any], source: PodRef, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        return False  # pod-to-pod traffic is judged by selectors here
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], source.namespace_labels):
            return False
    elif source.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector") or {}, source.labels)


def admits(
    policies: Iterable[Mapping[str, Any]], target: PodRef, source: PodRef, port: str | int
) -> bool:
    """Whether ``source`` may open a connection to ``target`` on ``port`` under ``policies``."""
    applying = [
        p
        for p in policies
        if p["metadata"].get("namespace", target.namespace) == target.namespace
        and selects(p["spec"].get("podSelector") or {}, target.labels)
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not applying:
        return True  # not isolated
    for policy in applying:
        for rule in policy["spec"].get("ingress") or []:
            ports = rule.get("ports")
            if ports and not any(p.get("port") in (None, port) for p in ports):
                continue
            peers = rule.get("from")
            if not peers or any(_peer_admits(p, source, target.namespace) for p in peers):
                return True
    return False
