"""The node's network: its own interface and address, the pod bridge, and a fence around it.

Pods get addresses on a bridge (Debian's CNI ``bridge`` + ``host-local`` plugins) and
routes only to the Service range and the node's address: no default route. On top of
that a ``mangle`` chain (kube-proxy never touches that table) drops anything forwarded
from the bridge to any other interface or to it from any other, so nothing a pod sends
can leave the machine even though the host has a default route. Sysctls the cluster
needs are recorded before they are changed and restored by :func:`teardown`.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

from localcluster.settings import BRIDGE, NODE_INTERFACE, NODE_IP, POD_CIDR, SERVICE_CIDR

CNI_BIN_DIR = Path("/usr/lib/cni")
CHAIN = "DAGMA-CLUSTER-FENCE"
SYSCTLS = {
    "net/ipv4/ip_forward": "1",  # a pod reaching another pod through a Service IP is routed
    "net/bridge/bridge-nf-call-iptables": "1",  # kube-proxy's rules see bridged traffic
}


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed: {result.stderr.strip()}")
    return result


def _fence_rules() -> list[list[str]]:
    return [
        ["-i", BRIDGE, "-o", BRIDGE, "-j", "RETURN"],
        ["-i", BRIDGE, "-j", "DROP"],
        ["-o", BRIDGE, "-j", "DROP"],
    ]


def cni_config(state: Path) -> Path:
    """Write the bridge network's conflist; return the directory cri-dockerd reads."""
    conf_dir = state / "cni" / "net.d"
    conf_dir.mkdir(parents=True, exist_ok=True)
    conflist = {
        "cniVersion": "1.0.0",
        "name": "dagma",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR}]],
                    "routes": [{"dst": SERVICE_CIDR}, {"dst": f"{NODE_IP}/32"}],
                    "dataDir": str(state / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    (conf_dir / "10-dagma.conflist").write_text(json.dumps(conflist, indent=2))
    return conf_dir


def setup(state: Path) -> None:
    """The node's interface and address, sysctls (recorded first), the fence."""
    if not (CNI_BIN_DIR / "bridge").exists():
        raise RuntimeError(
            f"no CNI plugins in {CNI_BIN_DIR}: apt-get install containernetworking-plugins"
        )
    if _run("ip", "link", "show", NODE_INTERFACE, check=False).returncode != 0:
        # A bridge with no ports, used as a dummy interface (this kernel has no dummy driver).
        _run("ip", "link", "add", NODE_INTERFACE, "type", "bridge")
    addresses = _run("ip", "-o", "addr", "show", "dev", NODE_INTERFACE).stdout
    if f" {NODE_IP}/" not in addresses:
        _run("ip", "addr", "add", f"{NODE_IP}/32", "dev", NODE_INTERFACE)
    _run("ip", "link", "set", NODE_INTERFACE, "up")

    saved = state / "sysctl.json"
    if not saved.exists():
        before = {k: Path("/proc/sys", k).read_text().strip() for k in SYSCTLS}
        saved.write_text(json.dumps(before))
    for key, value in SYSCTLS.items():
        Path("/proc/sys", key).write_text(value)

    for iptables in ("iptables", "ip6tables"):
        if _run(iptables, "-t", "mangle", "-n", "-L", CHAIN, check=False).returncode == 0:
            continue
        _run(iptables, "-t", "mangle", "-N", CHAIN)
        for rule in _fence_rules():
            _run(iptables, "-t", "mangle", "-A", CHAIN, *rule)
        _run(iptables, "-t", "mangle", "-I", "FORWARD", "1", "-j", CHAIN)


# Chains the kubelet adds by itself (kube-proxy --cleanup leaves them): table -> chains.
KUBELET_CHAINS = {
    "filter": ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY"),
    "nat": ("KUBE-KUBELET-CANARY",),
    "mangle": ("KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT"),
}


def _remove_kubelet_chains(iptables: str) -> None:
    for builtin in ("INPUT", "OUTPUT"):
        while _run(iptables, "-D", builtin, "-j", "KUBE-FIREWALL", check=False).returncode == 0:
            pass
    for table, chains in KUBELET_CHAINS.items():
        for chain in chains:
            _run(iptables, "-t", table, "-F", chain, check=False)
            _run(iptables, "-t", table, "-X", chain, check=False)


# kube-router's firewall chains; its --cleanup-config leaves them (and panics in its IPVS part).
ENFORCER_CHAIN_PREFIXES = ("KUBE-ROUTER-", "KUBE-NWPLCY-", "KUBE-POD-FW-")


def _remove_enforcer_chains(iptables: str) -> None:
    """Delete every rule that jumps to a kube-router chain, then the chains themselves."""
    saved = _run(f"{iptables}-save", "-t", "filter", check=False).stdout.splitlines()
    for line in saved:
        words = shlex.split(line)
        if words[:1] == ["-A"] and "-j" in words:
            target = words[words.index("-j") + 1]
            if target.startswith(ENFORCER_CHAIN_PREFIXES):
                _run(iptables, "-D", *words[1:], check=False)
    chains = [line[1:].split()[0] for line in saved if line.startswith(":")]
    for chain in chains:
        if chain.startswith(ENFORCER_CHAIN_PREFIXES):
            _run(iptables, "-F", chain, check=False)
    for chain in chains:
        if chain.startswith(ENFORCER_CHAIN_PREFIXES):
            _run(iptables, "-X", chain, check=False)


def teardown(state: Path) -> None:
    """Undo :func:`setup` and remove the bridge the CNI plugin made (pods are gone by now),
    and the kubelet's own iptables chains."""
    for iptables in ("iptables", "ip6tables"):
        while (
            _run(iptables, "-t", "mangle", "-D", "FORWARD", "-j", CHAIN, check=False).returncode
            == 0
        ):
            pass
        _run(iptables, "-t", "mangle", "-F", CHAIN, check=False)
        _run(iptables, "-t", "mangle", "-X", CHAIN, check=False)
        _remove_kubelet_chains(iptables)
        _remove_enforcer_chains(iptables)
    for link in (BRIDGE, NODE_INTERFACE):
        _run("ip", "link", "delete", link, check=False)
    saved = state / "sysctl.json"
    if saved.exists():
        for key, value in json.loads(saved.read_text()).items():
            Path("/proc/sys", key).write_text(value)
        saved.unlink()
