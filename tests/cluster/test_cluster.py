"""The local cluster itself: a real API server, kubelet, kube-proxy, CoreDNS and provisioner.

Every test works in its own namespace with Pod Security "restricted" enforced, so
each pod here is also admitted under the profile the charts target.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from support.workloads import (
    describe_pod,
    pod,
    pod_log,
    port_forward,
    restricted_namespace,
    unique,
    wait_pod_phase,
    wait_pod_ready,
)

from localcluster.binaries import KUBERNETES_VERSION
from localcluster.components import Layout
from localcluster.settings import NODE_NAME

WEB_SERVER = ["python3", "-c", """
import http.server, os
class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from " + os.environ["HOSTNAME"]).encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
http.server.HTTPServer(("0.0.0.0", 8080), Hello).serve_forever()
"""]  # fmt: skip


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    name = restricted_namespace(core, unique("cluster-check"))
    yield name
    core.delete_namespace(name)


@pytest.fixture
def web(core: client.CoreV1Api, namespace: str, pod_image: str) -> str:
    """A web server pod behind a Service named ``web``; returns the pod's name."""
    spec = pod("web", pod_image, WEB_SERVER, container={"ports": [{"containerPort": 8080}]})
    core.create_namespaced_pod(namespace, spec)
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    wait_pod_ready(core, namespace, "web")
    return "web"


def test_node_is_ready_and_reports_the_pinned_release(core: client.CoreV1Api, kube) -> None:
    node = core.read_node(NODE_NAME)
    ready = {c.type: c.status for c in node.status.conditions}["Ready"]
    assert ready == "True", node.status.conditions
    assert node.status.node_info.kubelet_version == KUBERNETES_VERSION
    assert node.status.node_info.container_runtime_version.startswith("docker://")
    version = client.VersionApi(kube).get_code()
    assert version.git_version == KUBERNETES_VERSION


def test_a_pod_runs_and_its_log_is_read_back(
    core: client.CoreV1Api, namespace: str, pod_image: str
) -> None:
    command = ["python3", "-c", "import os; print('ran as', os.getuid())"]
    core.create_namespaced_pod(namespace, pod("once", pod_image, command))
    assert wait_pod_phase(core, namespace, "once", {"Succeeded", "Failed"}) == "Succeeded", (
        describe_pod(core, namespace, "once")
    )
    assert pod_log(core, namespace, "once").strip() == "ran as 1000"


def test_a_service_name_resolves_and_answers_in_a_pod(
    core: client.CoreV1Api, namespace: str, pod_image: str, web: str
) -> None:
    script = f"""
import json, socket, urllib.request
service = socket.gethostbyname("web.{namespace}.svc.cluster.local")
short = socket.gethostbyname("web")
body = urllib.request.urlopen("http://web", timeout=10).read().decode()
try:
    socket.gethostbyname("example.com")
    outside = "resolved"
except socket.gaierror as error:
    outside = error.args[1]
print(json.dumps({{"service": service, "short": short, "body": body, "outside": outside}}))
"""
    core.create_namespaced_pod(namespace, pod("client", pod_image, ["python3", "-c", script]))
    wait_pod_phase(core, namespace, "client", {"Succeeded", "Failed"})
    log = pod_log(core, namespace, "client")
    assert core.read_namespaced_pod("client", namespace).status.phase == "Succeeded", log
    result = json.loads(log.strip().splitlines()[-1])
    cluster_ip = core.read_namespaced_service("web", namespace).spec.cluster_ip
    assert result["service"] == result["short"] == cluster_ip
    assert result["body"] == "hello from web"
    # CoreDNS answers NXDOMAIN for every name outside the cluster (no forward).
    assert result["outside"] == "Name or service not known"


def test_port_forward_carries_http(layout: Layout, namespace: str, web: str) -> None:
    with port_forward(layout.bin / "kubectl", layout.kubeconfig, namespace, "svc/web", 80) as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/")
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"hello from web")


def test_a_claim_binds_and_a_non_root_pod_writes_to_it(
    core: client.CoreV1Api, kube, namespace: str, pod_image: str
) -> None:
    [default_class] = [
        c.metadata.name
        for c in client.StorageV1Api(kube).list_storage_class().items
        if (c.metadata.annotations or {}).get("storageclass.kubernetes.io/is-default-class")
        == "true"
    ]
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Mi"}},
            },
        },
    )
    write = "open('/data/note', 'w').write('kept'); print(open('/data/note').read())"
    spec = pod(
        "writer",
        pod_image,
        ["python3", "-c", write],
        container={"volumeMounts": [{"name": "data", "mountPath": "/data"}]},
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
    )
    core.create_namespaced_pod(namespace, spec)
    assert wait_pod_phase(core, namespace, "writer", {"Succeeded", "Failed"}) == "Succeeded", (
        describe_pod(core, namespace, "writer") + pod_log(core, namespace, "writer")
    )
    claim = core.read_namespaced_persistent_volume_claim("data", namespace)
    assert claim.status.phase == "Bound"
    assert claim.spec.storage_class_name == default_class
    assert pod_log(core, namespace, "writer").strip() == "kept"


def test_a_restricted_namespace_rejects_a_privileged_pod(
    core: client.CoreV1Api, namespace: str, pod_image: str
) -> None:
    privileged = pod(
        "root", pod_image, ["true"], container={"securityContext": {"privileged": True}}
    )
    with pytest.raises(ApiException) as rejected:
        core.create_namespaced_pod(namespace, privileged)
    assert rejected.value.status == 403
    message = json.loads(rejected.value.body)["message"]
    assert 'violates PodSecurity "restricted:latest"' in message
    assert "privileged" in message
    names = [p.metadata.name for p in core.list_namespaced_pod(namespace).items]
    assert "root" not in names
