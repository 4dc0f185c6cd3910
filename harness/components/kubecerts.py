"""Throwaway PKI and kubeconfigs for a local control plane, made fresh at every start.

Nothing is reused between runs, so nothing secret lives in the cache; EC P-256 keys keep the whole
set to a few milliseconds. The service-account key is RSA because every token consumer accepts it.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: the first address of the service CIDR is the in-cluster `kubernetes` Service
SERVICE_CIDR = "10.96.0.0/12"
SERVICE_IP = "10.96.0.1"
APISERVER_DNS: tuple[str, ...] = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
APISERVER_IPS: tuple[str, ...] = ("127.0.0.1", SERVICE_IP)
ADMIN_USER = "phee-admin"
MASTERS = "system:masters"

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class Issued:
    """A key and its certificate, as written to `<name>.key` / `<name>.crt`."""

    key: Key
    cert: x509.Certificate
    key_path: Path
    cert_path: Path

    def key_pem(self) -> bytes:
        return self.key_path.read_bytes()

    def cert_pem(self) -> bytes:
        return self.cert_path.read_bytes()


@dataclass(frozen=True)
class Pki:
    """Everything the control plane needs: CA, serving certs, one client cert per component."""

    ca: Issued
    apiserver: Issued
    loopback: Issued  # serving cert of the controller-manager and scheduler health ports
    admin: Issued
    controller_manager: Issued
    scheduler: Issued
    kwok: Issued
    sa_key_path: Path
    sa_pub_path: Path


def _name(cn: str, orgs: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(directory: Path, name: str, key: Key, cert: x509.Certificate) -> Issued:
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Issued(key, cert, key_path, cert_path)


def _builder(subject: x509.Name, issuer: x509.Name, key: Key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))  # tolerate small clock skew
        .not_valid_after(now + datetime.timedelta(days=365))
    )


def make_ca(directory: Path, cn: str = "phee-kube-ca") -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(_name(cn), _name(cn), key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _write(directory, "ca", key, cert)


def issue(
    ca: Issued,
    directory: Path,
    name: str,
    *,
    cn: str,
    orgs: Sequence[str] = (),
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    server: bool = False,
) -> Issued:
    """A leaf certificate signed by `ca`: a serving cert when `server`, else a client cert."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(_name(cn, orgs), ca.cert.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if dns or ips:
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return _write(directory, name, key, builder.sign(ca.key, hashes.SHA256()))


def generate(directory: Path) -> Pki:
    """A complete fresh PKI under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca(directory)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_key_path, sa_pub_path = directory / "sa.key", directory / "sa.pub"
    sa_key_path.write_bytes(
        sa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    sa_key_path.chmod(0o600)
    sa_pub_path.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return Pki(
        ca=ca,
        apiserver=issue(
            ca,
            directory,
            "apiserver",
            cn="kube-apiserver",
            dns=APISERVER_DNS,
            ips=APISERVER_IPS,
            server=True,
        ),
        loopback=issue(
            ca,
            directory,
            "loopback",
            cn="phee-loopback",
            dns=("localhost",),
            ips=("127.0.0.1",),
            server=True,
        ),
        admin=issue(ca, directory, "admin", cn=ADMIN_USER, orgs=(MASTERS,)),
        controller_manager=issue(
            ca, directory, "controller-manager", cn="system:kube-controller-manager"
        ),
        scheduler=issue(ca, directory, "scheduler", cn="system:kube-scheduler"),
        kwok=issue(ca, directory, "kwok", cn="kwok-controller", orgs=(MASTERS,)),
        sa_key_path=sa_key_path,
        sa_pub_path=sa_pub_path,
    )


def kubeconfig(server: str, ca: Issued, client: Issued, *, user: str, cluster: str = "phee") -> str:
    """A self-contained kubeconfig (certificates inline, so it can be copied anywhere)."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority-data": b64(ca.cert_pem())},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(client.cert_pem()),
                    "client-key-data": b64(client.key_pem()),
                },
            }
        ],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_kubeconfig(path: Path, server: str, ca: Issued, client: Issued, *, user: str) -> Path:
    path.write_text(kubeconfig(server, ca, client, user=user))
    path.chmod(0o600)
    return path
