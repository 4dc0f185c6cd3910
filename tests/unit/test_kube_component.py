"""The pure parts of the `kube` component: the Go build recipe, the PKI, kubeconfigs, fake nodes,
caching by part and stop order. No network, no process."""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness.components import Running, get
from harness.components import kube as kube_module
from harness.components.kube import Kube, fake_node, node_schedulable
from harness.components.kubebuild import (
    KWOK_STAGES,
    STAGING_MODULES,
    Etcd,
    KubeBinaries,
    Kwok,
    go_mod,
    staging_version,
    version_ldflags,
)
from harness.components.kubecerts import generate, kubeconfig

EXPECTED_STAGING = {
    "api", "apiextensions-apiserver", "apimachinery", "apiserver", "cli-runtime", "client-go",
    "cloud-provider", "cluster-bootstrap", "code-generator", "component-base",
    "component-helpers", "controller-manager", "cri-api", "cri-client", "csi-translation-lib",
    "dynamic-resource-allocation", "endpointslice", "externaljwt", "kms", "kube-aggregator",
    "kube-controller-manager", "kube-proxy", "kube-scheduler", "kubectl", "kubelet", "metrics",
    "mount-utils", "pod-security-admission", "sample-apiserver", "sample-cli-plugin",
    "sample-controller",
}  # fmt: skip


def test_go_mod_pins_kubernetes_and_every_staging_module() -> None:
    text = go_mod("1.33.13")
    lines = text.splitlines()
    assert lines[0] == "module phee.local/kubebuild"
    assert "require k8s.io/kubernetes v1.33.13" in lines
    replaced = {
        line.split()[1].removeprefix("k8s.io/"): line.split()[-1]
        for line in lines
        if line.startswith("replace ")
    }
    assert set(STAGING_MODULES) == EXPECTED_STAGING
    assert replaced == dict.fromkeys(EXPECTED_STAGING, "v0.33.13")
    for line in lines:
        if line.startswith("replace "):
            _, mod, arrow, target, _version = line.split()
            assert arrow == "=>"
            assert mod == target
    assert staging_version("1.34.2") == "v0.34.2"


def test_version_is_stamped_into_both_version_packages() -> None:
    flags = version_ldflags("1.33.13", "2026-01-02T03:04:05Z").split(" -X ")
    assert flags[0] == "-s -w"
    stamped = dict(f.split("=", 1) for f in flags[1:])
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert stamped[f"{package}.gitVersion"] == "v1.33.13"
        assert stamped[f"{package}.gitMajor"] == "1"
        assert stamped[f"{package}.gitMinor"] == "33"
        assert stamped[f"{package}.buildDate"] == "2026-01-02T03:04:05Z"


def _subject(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


def test_pki_names_and_usages(tmp_path: Path) -> None:
    pki = generate(tmp_path)
    ca_key = pki.ca.cert.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    assert pki.ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    san = pki.apiserver.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    }
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("10.96.0.1"),
    }
    clients = {
        "admin": (pki.admin, "phee-admin", ["system:masters"]),
        "controller-manager": (pki.controller_manager, "system:kube-controller-manager", []),
        "scheduler": (pki.scheduler, "system:kube-scheduler", []),
        "kwok": (pki.kwok, "kwok-controller", ["system:masters"]),
    }
    for what, (issued, cn, orgs) in clients.items():
        assert _subject(issued.cert, NameOID.COMMON_NAME) == [cn], what
        assert _subject(issued.cert, NameOID.ORGANIZATION_NAME) == orgs, what
        usage = issued.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH], what
        issued.cert.verify_directly_issued_by(pki.ca.cert)
    for serving in (pki.apiserver, pki.loopback):
        usage = serving.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
        serving.cert.verify_directly_issued_by(pki.ca.cert)
    assert pki.sa_key_path.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert pki.sa_pub_path.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert oct(pki.admin.key_path.stat().st_mode & 0o777) == "0o600"


def test_kubeconfig_is_self_contained(tmp_path: Path) -> None:
    pki = generate(tmp_path)
    doc = yaml.safe_load(kubeconfig("https://127.0.0.1:6443", pki.ca, pki.admin, user="admin"))
    assert doc["current-context"] == "phee"
    assert doc["contexts"] == [{"name": "phee", "context": {"cluster": "phee", "user": "admin"}}]
    cluster = doc["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == pki.ca.cert_pem()
    user = doc["users"][0]["user"]
    assert base64.b64decode(user["client-certificate-data"]) == pki.admin.cert_pem()
    assert base64.b64decode(user["client-key-data"]) == pki.admin.key_pem()


def test_fake_nodes_are_kwok_managed_and_untainted() -> None:
    node = fake_node(2)
    assert node["metadata"]["name"] == "kwok-node-2"
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert node["metadata"]["labels"]["type"] == "kwok"
    assert "taints" not in node.get("spec", {})
    assert node["status"]["allocatable"] == {"cpu": "32", "memory": "256Gi", "pods": "110"}
    assert node["status"]["capacity"] == node["status"]["allocatable"]

    ready = {"type": "Ready", "status": "True"}
    assert node_schedulable({"status": {"conditions": [ready]}})
    assert not node_schedulable({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    taint = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
    assert not node_schedulable({"spec": {"taints": [taint]}, "status": {"conditions": [ready]}})


def test_each_part_is_cached_by_its_own_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHEE_CACHE", str(tmp_path))
    comp = get("kube")
    assert isinstance(comp, Kube)
    assert [p.cache_dir for p in comp.parts()] == [
        tmp_path / "kube" / "1.33.13",
        tmp_path / "etcd" / "3.5.1",
        tmp_path / "kwok" / "0.8.0",
    ]
    assert not comp.is_cached()
    for part in (KubeBinaries(), Etcd()):
        part.cache_dir.mkdir(parents=True)
        (part.cache_dir / ".fetched").write_text("x")
    assert not comp.is_cached()  # kwok still missing: a kwok bump rebuilds only kwok
    Kwok().cache_dir.mkdir(parents=True)
    (Kwok().cache_dir / ".fetched").write_text("x")
    assert comp.is_cached()
    assert comp.fetch() is False


def test_kwok_stages_are_one_multi_document_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHEE_CACHE", str(tmp_path))
    kwok = Kwok()
    for stage in KWOK_STAGES:
        path = kwok.stage_dir / stage
        path.parent.mkdir(parents=True, exist_ok=True)
        name = Path(stage).stem
        path.write_text(
            f"apiVersion: kwok.x-k8s.io/v1alpha1\nkind: Stage\nmetadata:\n  name: {name}\n"
        )
    docs = list(yaml.safe_load_all(kwok.stages_yaml()))
    assert [d["metadata"]["name"] for d in docs] == [
        "node-initialize",
        "node-heartbeat-with-lease",
        "pod-ready",
        "pod-complete",
        "pod-delete",
    ]


def test_stop_goes_in_reverse_start_order(monkeypatch: pytest.MonkeyPatch) -> None:
    stopped: list[int] = []
    monkeypatch.setattr(kube_module, "stop_pid", lambda pid, *_args: stopped.append(pid))
    run = Running(
        name="kube", version="1.33.13", pid=12, workdir="/x", log_path="/x/a.log", ready_s=1.0,
        extra={"pids": [11, 12, 13, 14, 15]},
    )  # fmt: skip
    Kube().stop(run)
    assert stopped == [15, 14, 13, 12, 11]
