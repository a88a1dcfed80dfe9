"""Bring the single-node cluster up (idempotently) and tear it down completely.

``up()``: binaries (built or from the cache), the cluster's Docker engine and node images,
PKI and configs, the node network, then every component in order, each waited for;
last the add-ons (CoreDNS's RBAC, the local-path provisioner's objects and the default
StorageClass). ``down()``: pods' containers, kube-proxy's rules, every process by pid
(the engine last), mounts under the kubelet's directory, the network; the binary cache
and the engine's image store stay.
"""

from __future__ import annotations

import http.client
import json
import shutil
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from localcluster import binaries, certs, engine, network, standins
from localcluster.components import (
    ENFORCER_HEALTH_PORT,
    HELPER_IMAGE,
    Layout,
    processes,
    write_configs,
)
from localcluster.engine import Docker
from localcluster.processes import Process, wait_until
from localcluster.settings import API_PORT, NODE_NAME, cluster_dir

# One cluster per machine (fixed ports, interface and address): the state directory of the
# running one is recorded here, so another clone's tests and `make cluster-down` find it.
RUNNING = Path("/run/dagma-cluster/state-dir")


@dataclass
class Started:
    """What ``up()`` did and how long each part took (seconds)."""

    layout: Layout
    already_running: bool
    timings: dict[str, float] = field(default_factory=dict)


def layout() -> Layout:
    """The running cluster's layout if one runs on this machine, else this clone's."""
    try:
        running = Layout(Path(RUNNING.read_text().strip()))
    except FileNotFoundError:
        return Layout(cluster_dir())
    etcd = next(p for p in processes(running))
    return running if etcd.pid() else Layout(cluster_dir())


def _https_ok(layout: Layout, path: str) -> bool:
    context = ssl.create_default_context(cafile=layout.pki / "ca.crt")
    context.load_cert_chain(layout.pki / "admin.crt", layout.pki / "admin.key")
    connection = http.client.HTTPSConnection("127.0.0.1", API_PORT, context=context, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _etcd_ok() -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", 2379, timeout=5)
    try:
        connection.request("GET", "/health")
        return json.loads(connection.getresponse().read()).get("health") == "true"
    except (OSError, ValueError):
        return False
    finally:
        connection.close()


def kubectl(layout: Layout, *args: str, stdin: str | None = None) -> str:
    """Run the cluster's kubectl as the admin; raise with its stderr on failure."""
    result = subprocess.run(
        [str(layout.bin / "kubectl"), f"--kubeconfig={layout.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"`kubectl {' '.join(args)}` failed: {result.stderr.strip()}")
    return result.stdout


def _node_ready(layout: Layout) -> bool:
    try:
        node = json.loads(kubectl(layout, "get", "node", NODE_NAME, "-o", "json"))
    except RuntimeError:
        return False
    conditions = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
    return conditions.get("Ready") == "True"


def _enforcer_healthy() -> bool:
    """Whether kube-router's /healthz answers 200 (its firewall controller has synced)."""
    connection = http.client.HTTPConnection("127.0.0.1", ENFORCER_HEALTH_PORT, timeout=5)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _addons(layout: Layout) -> None:
    """CoreDNS's read access, local-path-provisioner's own manifest (no Deployment: it runs
    on the host) and config file, its StorageClass made the default."""
    # The rules of CoreDNS's own deployment manifest (ClusterRole system:coredns).
    coredns_rbac = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "dagma:coredns"},
            "rules": [
                {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                 "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                 "verbs": ["list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "dagma:coredns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "dagma:coredns"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                          "name": "system:coredns"}],
        },
        # The rules of kube-router's daemonset/generic-kuberouter.yaml (what its firewall
        # reads), bound to its certificate's user.
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "dagma:kube-router"},
            "rules": [
                {"apiGroups": [""],
                 "resources": ["namespaces", "pods", "services", "nodes", "endpoints"],
                 "verbs": ["list", "get", "watch"]},
                {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
                 "verbs": ["list", "get", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                 "verbs": ["list", "get", "watch"]},
                {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "dagma:kube-router"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "dagma:kube-router"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                          "name": "dagma:kube-router"}],
        },
    ]  # fmt: skip
    upstream = standins.module_dir(
        "local-path-provisioner", "github.com/rancher/local-path-provisioner"
    )
    objects = [
        o
        for o in yaml.safe_load_all((upstream / "deploy" / "local-path-storage.yaml").read_text())
        if o and o["kind"] != "Deployment"
    ]
    storage = layout.data / "local-path"
    storage.mkdir(parents=True, exist_ok=True)
    config = {
        "nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [str(storage)]}]
    }
    for o in objects:
        if o["kind"] == "StorageClass":
            o["metadata"].setdefault("annotations", {})[
                "storageclass.kubernetes.io/is-default-class"
            ] = "true"
        if o["kind"] == "ConfigMap":
            o["data"]["config.json"] = json.dumps(config)
            # The helper pod's image, by the name of the local stand-in (never pulled).
            helper = yaml.safe_load(o["data"]["helperPod.yaml"])
            for container in helper["spec"]["containers"]:
                container["image"] = HELPER_IMAGE
            o["data"]["helperPod.yaml"] = yaml.safe_dump(helper)
    kubectl(layout, "apply", "-f", "-", stdin=yaml.safe_dump_all([*coredns_rbac, *objects]))
    layout.local_path_config.write_text(json.dumps(config))


def up(log=print) -> Started:
    """Start the cluster unless it runs; every step idempotent."""
    lay = layout()
    began = time.monotonic()
    result = Started(lay, already_running=False)
    timings = result.timings
    for module, seconds in binaries.ensure_binaries(lay.bin, log).items():
        timings[f"binaries.{module}"] = seconds
    all_processes = processes(lay)
    by_name = {p.name: p for p in all_processes}
    running = all(p.pid() for p in all_processes) and engine.process(lay.run, lay.logs).pid()
    if running and _https_ok(lay, "/readyz") and _node_ready(lay):
        result.already_running = True
        return result

    step = time.monotonic()
    docker = engine.start(lay.run, lay.logs)
    standins.ensure_node_images(docker)
    timings["engine_and_node_images"] = time.monotonic() - step

    step = time.monotonic()
    if not (lay.pki / "ca.crt").exists():
        certs.make_pki(lay.pki)
    for added in certs.add_missing_clients(lay.pki):
        log(f"    client certificate {added} added (a component newer than this cluster)")
    write_configs(lay)
    network.setup(lay.state)
    network.cni_config(lay.state)
    start = time.monotonic()

    by_name["etcd"].start()
    wait_until("etcd healthy", _etcd_ok, by_name["etcd"])
    by_name["kube-apiserver"].start()
    wait_until("API server ready", lambda: _https_ok(lay, "/readyz"), by_name["kube-apiserver"])
    timings["api_server_ready"] = time.monotonic() - start
    by_name["kube-controller-manager"].start()
    by_name["kube-scheduler"].start()
    cri = by_name["cri-dockerd"]
    cri.start()
    wait_until("cri-dockerd socket", lay.cri_socket.exists, cri)
    by_name["kubelet"].start()
    by_name["kube-proxy"].start()
    _addons(lay)
    by_name["coredns"].start()
    by_name["local-path-provisioner"].start()
    # kube-router looks its node up once at start and exits when the kubelet has not
    # registered it yet (a cold start: "failed to identify the node").
    wait_until(
        "node registered",
        lambda: bool(_try(lambda: kubectl(lay, "get", "node", NODE_NAME, "-o", "name"))),
        by_name["kubelet"],
        timeout=180,
    )
    step = time.monotonic()
    enforcer = by_name["kube-router"]
    enforcer.start()
    wait_until("NetworkPolicy enforcer's rules", _enforcer_healthy, enforcer)
    seconds = timings["network_policy_enforcer_ready"] = time.monotonic() - step
    log(f"    NetworkPolicy enforcer (kube-router's firewall) ready in {seconds:.1f} s")
    wait_until("node Ready", lambda: _node_ready(lay), by_name["kubelet"], timeout=180)
    wait_until(
        "default ServiceAccount",
        lambda: bool(_try(lambda: kubectl(lay, "get", "serviceaccount", "default"))),
        by_name["kube-controller-manager"],
    )
    timings["components_to_node_ready"] = time.monotonic() - start
    RUNNING.parent.mkdir(parents=True, exist_ok=True)
    RUNNING.write_text(str(lay.state))
    timings["total"] = time.monotonic() - began
    return result


def resident_memory(lay: Layout) -> dict[str, float]:
    """Resident memory (MiB) of each running component, read from /proc."""
    usage: dict[str, float] = {}
    for process in processes(lay):
        pid = process.pid()
        if pid is None:
            continue
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                usage[process.name] = int(line.split()[1]) / 1024
    return usage


def _try(call):
    try:
        return call()
    except RuntimeError:
        return None


def _remove_pod_containers(docker: Docker) -> None:
    """Every container cri-dockerd made for a pod (sandboxes included)."""
    listed = docker.command(
        ["ps", "-aq", "--filter", "label=io.kubernetes.docker.type"], check=False
    ).stdout.split()
    if listed:
        docker.command(["rm", "-f", "-v", *listed], timeout=300, check=False)


def _unmount_below(root: Path) -> None:
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    below = [m for m in mounts if m == str(root) or m.startswith(f"{root}/")]
    for mount in sorted(below, key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)


def down(log=print) -> None:
    """Stop everything ``up()`` started and remove what it added; keep the binary cache."""
    lay = layout()
    all_processes = processes(lay)
    by_name: dict[str, Process] = {p.name: p for p in all_processes}
    for name in ("local-path-provisioner", "kubelet"):
        by_name[name].stop()
    docker = engine.docker()
    if docker.server_version(timeout=5):
        _remove_pod_containers(docker)
    for process in reversed(all_processes):
        process.stop()
    engine.process(lay.run, lay.logs).stop(timeout=60)
    shutil.rmtree(engine.STATE / "docker-exec", ignore_errors=True)
    proxy = lay.bin / "kube-proxy"
    if proxy.exists():
        subprocess.run([str(proxy), "--cleanup"], capture_output=True, check=False)
    enforcer = lay.bin / "kube-router"
    if enforcer.exists():  # its iptables chains and ipsets
        subprocess.run([str(enforcer), "--cleanup-config"], capture_output=True, check=False)
    _unmount_below(lay.data)
    network.teardown(lay.state)
    for transient in ("data", "run", "cni", "config", "pki"):
        shutil.rmtree(lay.state / transient, ignore_errors=True)
    lay.kubeconfig.unlink(missing_ok=True)
    RUNNING.unlink(missing_ok=True)
    log(f"cluster stopped; logs kept in {lay.logs}")
