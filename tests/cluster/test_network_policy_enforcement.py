"""The local cluster enforces NetworkPolicy: kube-router's firewall, started by `make cluster-up`.

Its network is the CNI bridge plugin with host-local addresses, and kube-proxy; the
enforcer (kube-router v2.1.0 with only its NetworkPolicy firewall, a host process,
docs/local-cluster.md) keeps iptables chains and ipsets per policy. A web server pod
answers a pod of its namespace by address and through its Service; a deny-all ingress
policy makes both fail (kube-router rejects: "Connection refused" at once); deleting the
policy opens the path again, so it was the policy. The production policies are proven by traffic in
tests/cluster/test_production_release.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from kubernetes import client
from support.workloads import (
    pod,
    pod_log,
    restricted_namespace,
    unique,
    wait_pod_phase,
    wait_pod_ready,
)

SERVER = ["python3", "-c", """
import http.server
class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"hello")
http.server.HTTPServer(("0.0.0.0", 8080), Hello).serve_forever()
"""]  # fmt: skip
# The enforcer reprograms nftables within a second of a change; a margin for a busy node.
SETTLE_SECONDS = 5
DENY_ALL_INGRESS = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "deny-all-ingress"},
    "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]},
}


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    name = restricted_namespace(core, unique("netpol"))
    yield name
    core.delete_namespace(name)


def connect(core: client.CoreV1Api, namespace: str, image: str, name: str, pod_ip: str) -> dict:
    """From a new pod: GET the web pod by its address and by its Service (5 s timeouts each)."""
    script = f"""
import json, urllib.request
result = {{}}
for target, url in (("pod", "http://{pod_ip}:8080"), ("service", "http://web")):
    try:
        result[target] = urllib.request.urlopen(url, timeout=5).read().decode()
    except OSError as error:
        result[target] = f"{{type(error).__name__}}: {{error}}"
print(json.dumps(result))
"""
    core.create_namespaced_pod(namespace, pod(name, image, ["python3", "-c", script]))
    wait_pod_phase(core, namespace, name, {"Succeeded", "Failed"})
    return json.loads(pod_log(core, namespace, name).strip().splitlines()[-1])


def blocked(result: dict) -> bool:
    """kube-router rejects a connection a policy forbids (``REJECT``: refused at once)."""
    return all("Connection refused" in answer for answer in result.values())


def test_network_policy_is_enforced(
    core: client.CoreV1Api, kube, namespace: str, pod_image: str, cluster_measure
) -> None:
    web = pod("web", pod_image, SERVER, container={"ports": [{"containerPort": 8080}]})
    core.create_namespaced_pod(namespace, web)
    core.create_namespaced_service(namespace, {
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    })  # fmt: skip
    wait_pod_ready(core, namespace, "web")
    pod_ip = core.read_namespaced_pod("web", namespace).status.pod_ip
    before = connect(core, namespace, pod_image, "before", pod_ip)
    assert before == {"pod": "hello", "service": "hello"}  # the path works without a policy

    networking = client.NetworkingV1Api(kube)
    networking.create_namespaced_network_policy(namespace, DENY_ALL_INGRESS)
    time.sleep(SETTLE_SECONDS)
    after = connect(core, namespace, pod_image, "after", pod_ip)
    cluster_measure("NetworkPolicy, deny-all ingress on a pod",
                    f"a pod in the namespace then gets {after} "
                    f"({SETTLE_SECONDS} s after the policy was created)")  # fmt: skip
    assert blocked(after), after

    networking.delete_namespaced_network_policy("deny-all-ingress", namespace)
    time.sleep(SETTLE_SECONDS)
    assert connect(core, namespace, pod_image, "reopened", pod_ip) == before
