"""Each component's command line and configuration, after ``hack/local-up-cluster.sh``.

Every component is a host process. etcd and the control plane listen on 127.0.0.1
(the API server on all addresses, so that pods reach it at the node's address); the
kubelet and CoreDNS on the node's address only. cgroupfs everywhere (cgroup v1, no
systemd); image garbage collection off, since local images cannot be pulled again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from localcluster.engine import HOST as DOCKER_HOST
from localcluster.network import CNI_BIN_DIR
from localcluster.processes import Process
from localcluster.settings import (
    API_PORT,
    CLUSTER_DOMAIN,
    NODE_IP,
    NODE_NAME,
    POD_CIDR,
    SERVICE_CIDR,
)

PAUSE_IMAGE = "registry.k8s.io/pause:3.10.1"
ENFORCER_HEALTH_PORT = 20244  # kube-router's default, /healthz
HELPER_IMAGE = "docker.io/busybox:1.28"  # local-path-provisioner's helper pod (a stand-in)
ADMISSION = (
    "NamespaceLifecycle,LimitRanger,ServiceAccount,PodSecurity,DefaultStorageClass,"
    "DefaultTolerationSeconds,StorageObjectInUseProtection,PersistentVolumeClaimResize,"
    "RuntimeClass,NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,"
    "ResourceQuota"
)


@dataclass(frozen=True)
class Layout:
    """Where one cluster keeps its files (all under the state directory)."""

    state: Path

    @property
    def bin(self) -> Path:
        return self.state / "bin"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def run(self) -> Path:
        return self.state / "run"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def data(self) -> Path:
        return self.state / "data"

    @property
    def config(self) -> Path:
        return self.state / "config"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig users and tests use (server https://127.0.0.1)."""
        return self.state / "kubeconfig"

    @property
    def local_path_config(self) -> Path:
        return self.config / "local-path.json"

    @property
    def cri_socket(self) -> Path:
        return self.run / "cri-dockerd.sock"

    def component_kubeconfig(self, client: str) -> Path:
        return self.config / f"{client}.kubeconfig"

    def process(self, name: str, *args: str) -> Process:
        return Process(name, [str(self.bin / name), *args], self.run, self.logs)


def write_kubeconfig(path: Path, pki: Path, client: str, server: str) -> None:
    """A kubeconfig for ``client``'s certificate against ``server``, context ``dagma-local``."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "dagma-local",
                "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": client,
                "user": {
                    "client-certificate": str(pki / f"{client}.crt"),
                    "client-key": str(pki / f"{client}.key"),
                },
            }
        ],
        "contexts": [
            {"name": "dagma-local", "context": {"cluster": "dagma-local", "user": client}}
        ],
        "current-context": "dagma-local",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def write_configs(layout: Layout) -> None:
    """Kubeconfigs for every client, the kubelet's and kube-proxy's config files, the Corefile."""
    server = f"https://127.0.0.1:{API_PORT}"
    write_kubeconfig(layout.kubeconfig, layout.pki, "admin", server)
    clients = ("controller-manager", "scheduler", "kubelet", "kube-proxy", "coredns",
               "kube-router")  # fmt: skip
    for client in clients:
        write_kubeconfig(layout.component_kubeconfig(client), layout.pki, client, server)
    pki = layout.pki
    kubelet = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "readOnlyPort": 0,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{layout.cri_socket}",
        "clusterDNS": [NODE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": "",  # pods inherit no host resolver: CoreDNS is their only one
        "imageGCHighThresholdPercent": 100,  # off: local images cannot be pulled again
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "failSwapOn": False,
        "podCIDR": POD_CIDR,
        "staticPodPath": "",
        "serializeImagePulls": False,
        "healthzBindAddress": "127.0.0.1",
    }
    proxy = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(layout.component_kubeconfig("kube-proxy"))},
        "hostnameOverride": NODE_NAME,
        "clusterCIDR": POD_CIDR,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "nodePortAddresses": [f"{NODE_IP}/32"],
        "conntrack": {"maxPerCore": 0},  # leave the host's conntrack table size alone
    }
    layout.config.mkdir(parents=True, exist_ok=True)
    (layout.config / "kubelet.yaml").write_text(yaml.safe_dump(kubelet))
    (layout.config / "kube-proxy.yaml").write_text(yaml.safe_dump(proxy))
    reverse = "in-addr.arpa ip6.arpa"
    (layout.config / "Corefile").write_text(
        f"""{CLUSTER_DOMAIN} {reverse} {{
    bind {NODE_IP}
    errors
    kubernetes {CLUSTER_DOMAIN} {reverse} {{
        kubeconfig {layout.component_kubeconfig("coredns")}
        pods insecure
        fallthrough {reverse}
        ttl 5
    }}
    template ANY ANY {reverse} {{
        rcode NXDOMAIN
    }}
}}
. {{
    bind {NODE_IP}
    errors
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""
    )


def processes(layout: Layout) -> list[Process]:
    """Every component, in start order."""
    pki, data = layout.pki, layout.data
    kc = layout.component_kubeconfig
    return [
        layout.process(
            "etcd",
            "--name=dagma",
            f"--data-dir={data / 'etcd'}",
            "--listen-client-urls=http://127.0.0.1:2379",
            "--advertise-client-urls=http://127.0.0.1:2379",
            "--listen-peer-urls=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--initial-cluster=dagma=http://127.0.0.1:2380",
            "--unsafe-no-fsync",  # a throwaway test cluster: speed over crash safety
        ),
        layout.process(
            "kube-apiserver",
            "--etcd-servers=http://127.0.0.1:2379",
            "--bind-address=0.0.0.0",
            f"--secure-port={API_PORT}",
            f"--advertise-address={NODE_IP}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            f"--enable-admission-plugins={ADMISSION}",
            "--allow-privileged=true",  # so a rejected privileged pod is Pod Security's doing
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--v=1",
        ),
        layout.process(
            "kube-controller-manager",
            f"--kubeconfig={kc('controller-manager')}",
            f"--authentication-kubeconfig={kc('controller-manager')}",
            f"--authorization-kubeconfig={kc('controller-manager')}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--v=1",
        ),
        layout.process(
            "kube-scheduler",
            f"--kubeconfig={kc('scheduler')}",
            f"--authentication-kubeconfig={kc('scheduler')}",
            f"--authorization-kubeconfig={kc('scheduler')}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
        ),
        layout.process(
            "cri-dockerd",
            f"--container-runtime-endpoint=unix://{layout.cri_socket}",
            f"--docker-endpoint={DOCKER_HOST}",
            "--network-plugin=cni",
            f"--cni-bin-dir={CNI_BIN_DIR}",
            f"--cni-conf-dir={layout.state / 'cni' / 'net.d'}",
            f"--cni-cache-dir={layout.state / 'cni' / 'cache'}",
            f"--cri-dockerd-root-directory={data / 'cri-dockerd'}",
            f"--pod-infra-container-image={PAUSE_IMAGE}",
            "--streaming-bind-addr=127.0.0.1:0",
        ),
        layout.process(
            "kubelet",
            f"--config={layout.config / 'kubelet.yaml'}",
            f"--kubeconfig={kc('kubelet')}",
            f"--root-dir={data / 'kubelet'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            "--v=1",
        ),
        layout.process("kube-proxy", f"--config={layout.config / 'kube-proxy.yaml'}"),
        layout.process("coredns", "-conf", str(layout.config / "Corefile")),
        # NetworkPolicy enforced in iptables and ipsets: kube-router with only its firewall
        # (no routing, no service proxy: the bridge and kube-proxy do those). Why not
        # kube-network-policies: docs/local-cluster.md.
        layout.process(
            "kube-router",
            f"--kubeconfig={kc('kube-router')}",
            f"--hostname-override={NODE_NAME}",
            "--run-firewall=true",
            "--run-router=false",
            "--run-service-proxy=false",
            "--enable-cni=false",
            f"--health-port={ENFORCER_HEALTH_PORT}",
            "--metrics-port=0",
            "--v=1",
        ),
        layout.process(
            "local-path-provisioner",
            "--debug",
            "start",
            f"--kubeconfig={layout.kubeconfig}",
            f"--config={layout.local_path_config}",
            "--namespace=local-path-storage",
            f"--helper-image={HELPER_IMAGE}",
        ),
    ]
