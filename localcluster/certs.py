"""The cluster's PKI, made locally with ``cryptography``: one CA, serving certs, client certs.

The same set ``hack/local-up-cluster.sh`` makes with its own CA: the API server's serving
cert (every name a client uses for it), the kubelet's serving cert, a client cert per
component with the user/group the RBAC and Node authorizers expect, and the service
account signing key.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from localcluster.settings import CLUSTER_DOMAIN, KUBERNETES_SERVICE_IP, NODE_IP, NODE_NAME

VALID_FOR = datetime.timedelta(days=365)


@dataclass(frozen=True)
class Client:
    """A client certificate: the user (CN) and groups (O) the API server authenticates."""

    name: str
    user: str
    groups: tuple[str, ...] = ()


CLIENTS = (
    Client("admin", "kubernetes-admin", ("system:masters",)),
    Client("controller-manager", "system:kube-controller-manager"),
    Client("scheduler", "system:kube-scheduler"),
    Client("kubelet", f"system:node:{NODE_NAME}", ("system:nodes",)),
    Client("kube-proxy", "system:kube-proxy"),
    Client("coredns", "system:coredns"),
    # The NetworkPolicy enforcer (its ClusterRole is bound to this user by the add-ons).
    Client("kube-router", "dagma:kube-router"),
    # The API server's identity towards the kubelet (logs, exec, port-forward).
    Client("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)),
)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str, groups: tuple[str, ...] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _sign(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate | None,
    ca_key: ec.EllipticCurvePrivateKey,
    usages: list[x509.ObjectIdentifier],
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject if ca_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALID_FOR)
    )
    if ca_cert is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        builder = builder.add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), True
        )
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), False)
    return builder.sign(ca_key, hashes.SHA256())


def _write_pair(directory: Path, name: str, cert: x509.Certificate, key) -> None:
    (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(directory / f"{name}.key", key)


def _write_clients(
    directory: Path, ca_cert: x509.Certificate, ca_key, clients: tuple[Client, ...]
) -> None:
    for client in clients:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(client.user, client.groups)
        cert = _sign(subject, key, ca_cert, ca_key, [ExtendedKeyUsageOID.CLIENT_AUTH])
        _write_pair(directory, client.name, cert, key)


def add_missing_clients(directory: Path) -> list[str]:
    """Client pairs a newer CLIENTS list has and ``directory`` lacks, signed by its CA.

    A cluster started before a component was added keeps its PKI (and every running
    component its certificates); only the new component's pair is made. Returns their names.
    """
    missing = tuple(c for c in CLIENTS if not (directory / f"{c.name}.crt").exists())
    if missing:
        ca_cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
        ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
        _write_clients(directory, ca_cert, ca_key, missing)
    return [c.name for c in missing]


def make_pki(directory: Path) -> None:
    """Write ca.crt/key, apiserver, kubelet-serving, every client pair and sa.key/pub."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _sign(_name("dagma-local-cluster-ca"), ca_key, None, ca_key, [])
    _write_pair(directory, "ca", ca_cert, ca_key)

    ip = ipaddress.ip_address
    api_names = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
    ]
    api_sans = [x509.DNSName(n) for n in api_names] + [
        x509.IPAddress(ip(a)) for a in ("127.0.0.1", NODE_IP, KUBERNETES_SERVICE_IP)
    ]
    servers = {
        "apiserver": ("kube-apiserver", api_sans),
        "kubelet-serving": (
            f"system:node:{NODE_NAME}",
            [x509.DNSName(NODE_NAME), x509.IPAddress(ip(NODE_IP)), x509.IPAddress(ip("127.0.0.1"))],
        ),
    }
    for name, (common_name, sans) in servers.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _sign(
            _name(common_name), key, ca_cert, ca_key, [ExtendedKeyUsageOID.SERVER_AUTH], sans
        )
        _write_pair(directory, name, cert, key)

    _write_clients(directory, ca_cert, ca_key, CLIENTS)

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(directory / "sa.key", sa_key)
    (directory / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
