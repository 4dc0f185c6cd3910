"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, and kwok playing kubelet for a few fake nodes.

The operator must be tested against the real API machinery (admission, RBAC, garbage collection,
StatefulSet and Deployment controllers, scheduling), not a mock; only the nodes are simulated:
kwok marks pods on them Running and Ready within a second and completes deletions, and renews
node leases so the node lifecycle controller neither taints the nodes nor evicts their pods. No
container runs, so nothing a pod would serve is reachable.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.components import versions
from harness.components.base import (
    Component,
    Running,
    StartError,
    free_ports,
    fresh_dir,
    http_status,
    launch,
    stop_pid,
    tail,
    wait_until,
)
from harness.components.kubebuild import Etcd, KubeBinaries, Kwok
from harness.components.kubecerts import SERVICE_CIDR, Pki, generate, write_kubeconfig

SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_SA = "/api/v1/namespaces/default/serviceaccounts/default"
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
FAKE_NODE_PREFIX = "kwok-node-"
#: what every fake node offers (roomy, so capacity never decides a test)
NODE_RESOURCES = {"cpu": "32", "memory": "256Gi", "pods": "110"}


def kubectl_path() -> str:
    """The kubectl to use with this control plane (the machine's when its version fits)."""
    return KubeBinaries().kubectl()


def fake_node(index: int) -> dict[str, Any]:
    """A Node that kwok manages (selected by annotation) and that workloads need no toleration
    for (no taint; resources as `NODE_RESOURCES`)."""
    name = f"{FAKE_NODE_PREFIX}{index}"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {FAKE_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
        "status": {"capacity": dict(NODE_RESOURCES), "allocatable": dict(NODE_RESOURCES)},
    }


def node_schedulable(node: dict[str, Any]) -> bool:
    """Ready, and the not-ready taint the API server puts on new nodes has been lifted."""
    conditions = node.get("status", {}).get("conditions", [])
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return ready and not node.get("spec", {}).get("taints")


class ApiClient:
    """Minimal JSON client for the API server with the admin certificate (start-up only)."""

    def __init__(self, base: str, pki: Pki) -> None:
        self.base = base
        self.context = ssl.create_default_context(cafile=str(pki.ca.cert_path))
        self.context.load_cert_chain(str(pki.admin.cert_path), str(pki.admin.key_path))

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(  # noqa: S310 - https on loopback only
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=5, context=self.context) as resp:  # noqa: S310
            return json.loads(resp.read().decode() or "{}")

    def status(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5, context=self.context) as resp:  # noqa: S310
                return int(resp.status)
        except urllib.error.HTTPError as err:
            return int(err.code)
        except OSError:
            return None


def _https_ok(port: int, context: ssl.SSLContext) -> bool:
    """A component's /healthz over its serving certificate (anonymous access is allowed)."""
    url = f"https://127.0.0.1:{port}/healthz"
    with urllib.request.urlopen(url, timeout=2, context=context) as resp:
        return int(resp.status) == 200


class Kube(Component):
    """The control plane; its fetch builds or downloads the three cached parts."""

    name = "kube"
    version = versions.KUBERNETES
    start_deadline_s = 120.0
    stop_grace_s = 10.0

    def parts(self) -> tuple[KubeBinaries, Etcd, Kwok]:
        return KubeBinaries(), Etcd(), Kwok()

    def is_cached(self) -> bool:
        return all(part.is_cached() for part in self.parts())

    def fetch(self) -> bool:
        """Fetch each part unless cached (a version bump rebuilds only that part)."""
        return any([part.fetch() for part in self.parts()])

    def _fetch(self) -> None:
        self.fetch()

    def start(self, workdir: Path, **options: Any) -> Running:
        root = fresh_dir(workdir / self.name)
        bins, etcd, kwok = self.parts()
        began = time.monotonic()
        pki = generate(root / "pki")
        p_etcd, p_peer, p_api, p_kcm, p_sched, p_kwok = free_ports(6)
        api_url = f"https://127.0.0.1:{p_api}"
        kubeconfigs = {
            who: write_kubeconfig(root / f"{who}.kubeconfig", api_url, pki.ca, cert, user=who)
            for who, cert in (
                ("controller-manager", pki.controller_manager),
                ("scheduler", pki.scheduler),
                ("kwok", pki.kwok),
            )
        }
        user_kubeconfig = write_kubeconfig(
            root / "kubeconfig", api_url, pki.ca, pki.admin, user="admin"
        )
        started: list[tuple[str, subprocess.Popen[bytes]]] = []

        def run(
            what: str, cmd: list[str], env: dict[str, str] | None = None
        ) -> subprocess.Popen[bytes]:
            proc = launch(cmd, log_path=root / f"{what}.log", cwd=root, env=env)
            started.append((what, proc))
            return proc

        def wait(what: str, proc: subprocess.Popen[bytes], check: Callable[[], bool]) -> None:
            left = max(1.0, self.start_deadline_s - (time.monotonic() - began))
            log = root / f"{what}.log"
            wait_until(check, what=what, deadline_s=left, log_path=log, proc=proc, interval_s=0.1)

        try:
            etcd_url = f"http://127.0.0.1:{p_etcd}"
            proc = run("etcd", self._etcd_cmd(etcd.binary(), root, etcd_url, p_peer))
            wait("etcd", proc, lambda: http_status(f"{etcd_url}/health") == 200)

            api = ApiClient(api_url, pki)
            proc = run("apiserver", self._apiserver_cmd(bins, pki, root, etcd_url, p_api))
            wait("apiserver", proc, lambda: api.status("/readyz") == 200)

            serving = self._serving_flags(pki)
            kcm = run(
                "controller-manager",
                [
                    bins.binary("kube-controller-manager"),
                    f"--kubeconfig={kubeconfigs['controller-manager']}",
                    "--leader-elect=false",
                    f"--secure-port={p_kcm}",
                    *serving,
                    f"--service-account-private-key-file={pki.sa_key_path}",
                    f"--root-ca-file={pki.ca.cert_path}",
                    "--use-service-account-credentials=true",
                    f"--cluster-signing-cert-file={pki.ca.cert_path}",
                    f"--cluster-signing-key-file={pki.ca.key_path}",
                    "--controllers=*",
                    # Its default is under /usr/libexec, which it would create.
                    f"--flex-volume-plugin-dir={root / 'flexvolume'}",
                    "--kube-api-qps=100",
                    "--kube-api-burst=200",
                ],
            )
            sched = run(
                "scheduler",
                [
                    bins.binary("kube-scheduler"),
                    f"--kubeconfig={kubeconfigs['scheduler']}",
                    "--leader-elect=false",
                    f"--secure-port={p_sched}",
                    *serving,
                ],
            )
            kwok_proc = run(
                "kwok",
                self._kwok_cmd(kwok, root, kubeconfigs["kwok"], p_kwok),
                env={"HOME": str(root / "kwok-home")},
            )  # no ~/.kwok config leaks in
            nodes = [fake_node(i) for i in range(int(options.get("nodes", 3)))]
            for node in nodes:
                try:
                    api.request("POST", "/api/v1/nodes", node)
                except OSError as err:
                    log = root / "apiserver.log"
                    raise StartError(
                        f"creating {node['metadata']['name']} failed: {err}; "
                        f"log {log}:\n{tail(log)}"
                    ) from err

            # Every process starts in parallel; waiting for them one after the other costs no time.
            loopback = ssl.create_default_context(cafile=str(pki.ca.cert_path))
            wait("controller-manager", kcm, lambda: _https_ok(p_kcm, loopback))
            wait("scheduler", sched, lambda: _https_ok(p_sched, loopback))
            wait(
                "kwok", kwok_proc, lambda: http_status(f"http://127.0.0.1:{p_kwok}/healthz") == 200
            )
            wait("kwok", kwok_proc, lambda: self._nodes_ready(api, len(nodes)))
            # Pods are refused until the service-account controller made their namespace's SA.
            wait("controller-manager", kcm, lambda: api.status(DEFAULT_SA) == 200)
        except BaseException:
            for _what, proc in reversed(started):
                stop_pid(proc.pid, grace_s=2.0)
            raise
        pids = {what: proc.pid for what, proc in started}
        return Running(
            name=self.name,
            version=self.version,
            pid=pids["apiserver"],
            workdir=str(root),
            log_path=str(root / "apiserver.log"),
            ready_s=round(time.monotonic() - began, 2),
            endpoints={"apiserver": api_url, "kubeconfig": str(user_kubeconfig)},
            ports={
                "etcd": p_etcd,
                "apiserver": p_api,
                "controller-manager": p_kcm,
                "scheduler": p_sched,
                "kwok": p_kwok,
            },
            extra={
                "kubectl": kubectl_path(),
                "pids": list(pids.values()),  # in start order: etcd, apiserver, ..., kwok
                "processes": list(pids),
                "nodes": [n["metadata"]["name"] for n in nodes],
            },
        )

    def stop(self, running: Running) -> None:
        """Stop every process, the last started first (kwok ... etcd)."""
        for pid in reversed(running.extra.get("pids", [running.pid])):
            stop_pid(int(pid), self.stop_grace_s, self.stop_signal)

    @staticmethod
    def _etcd_cmd(binary: str, root: Path, client_url: str, peer_port: int) -> list[str]:
        peer_url = f"http://127.0.0.1:{peer_port}"
        return [
            binary,
            "--name=phee",
            f"--data-dir={root / 'etcd-data'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=phee={peer_url}",
            "--unsafe-no-fsync",  # test data; fsync on every write is most of etcd's latency
            "--log-level=warn",
        ]

    @staticmethod
    def _apiserver_cmd(
        bins: KubeBinaries, pki: Pki, root: Path, etcd_url: str, port: int
    ) -> list[str]:
        return [
            bins.binary("kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            f"--secure-port={port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--cert-dir={root / 'apiserver-certs'}",
            f"--tls-cert-file={pki.apiserver.cert_path}",
            f"--tls-private-key-file={pki.apiserver.key_path}",
            f"--client-ca-file={pki.ca.cert_path}",
            f"--service-account-key-file={pki.sa_pub_path}",
            f"--service-account-signing-key-file={pki.sa_key_path}",
            f"--service-account-issuer={SA_ISSUER}",
            f"--api-audiences={SA_ISSUER}",
            "--authorization-mode=Node,RBAC",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--endpoint-reconciler-type=none",  # no real endpoint to publish for `kubernetes`
            "--allow-privileged=true",
        ]

    @staticmethod
    def _serving_flags(pki: Pki) -> list[str]:
        return [
            "--bind-address=127.0.0.1",
            f"--tls-cert-file={pki.loopback.cert_path}",
            f"--tls-private-key-file={pki.loopback.key_path}",
        ]

    @staticmethod
    def _kwok_cmd(kwok: Kwok, root: Path, kubeconfig: Path, port: int) -> list[str]:
        stages = root / "kwok-stages.yaml"
        stages.write_text(kwok.stages_yaml())
        (root / "kwok-home").mkdir()
        return [
            kwok.binary(),
            f"--kubeconfig={kubeconfig}",
            f"--config={stages}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
            "--cidr=10.244.0.1/16",  # pod IPs (the default /24 runs out at 254 pods)
            "--node-ip=10.240.0.1",
            # Renew node leases like a kubelet (standalone kwok's default is none), so the node
            # lifecycle controller sees live nodes and never taints them or evicts their pods.
            "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{port}",
        ]

    @staticmethod
    def _nodes_ready(api: ApiClient, count: int) -> bool:
        items = api.request("GET", "/api/v1/nodes?labelSelector=type%3Dkwok")["items"]
        return len(items) == count and all(node_schedulable(n) for n in items)
