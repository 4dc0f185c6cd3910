"""Benchmark: `kubectl apply` of a PaymentEngine -> every child created and status Ready.

Starts the real control plane (component `kube`: etcd, kube-apiserver, controller-manager,
scheduler, kwok nodes), installs the CRDs and the operator's RBAC, runs the operator as a local
process with its service account, applies a hub, then applies N engines one after another and
times each from the start of `kubectl apply` until the engine's Ready condition is True (which
needs its StatefulSet and Deployment ready, so every child exists). Prints median and p95.

    uv run --frozen python benchmarks/operator_ready.py [--engines 20] [--storage persistent]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from lightkube import Client, KubeConfig
from phee_operator.kube import PaymentEngine
from phee_operator.local import service_account_kubeconfig, start_operator

from phee.components import get
from phee.components.base import stop_pid

ROOT = Path(__file__).resolve().parents[1]
NS = "bench"
CHILD_KINDS = (
    "configmap",
    "service",
    "statefulset",
    "deployment",
    "poddisruptionbudget",
    "networkpolicy",
)


def _kubectl(kubectl: str, kubeconfig: str, *args: str, input: str | None = None) -> str:
    proc = subprocess.run(
        [kubectl, f"--kubeconfig={kubeconfig}", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def _engine(i: int, storage: str) -> dict[str, Any]:
    return {
        "apiVersion": "phee.io/v1alpha1",
        "kind": "PaymentEngine",
        "metadata": {"name": f"engine-{i:02d}"},
        "spec": {
            "hubRef": "acme",
            "slot": 100 + i,
            "version": "8.5.8",
            "zeebe": {
                "clusterSize": 3,
                "partitions": 3,
                "replicationFactor": 3,
                "storage": {"type": storage, "size": "20Gi"},
            },
            "workers": {"replicas": 2},
        },
    }


def _ready(client: Client, name: str) -> bool:
    body = client.get(PaymentEngine, name, namespace=NS)
    conds = (body.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def _pvs(count: int) -> str:
    docs = [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"bench-pv-{i}"},
            "spec": {
                "capacity": {"storage": "20Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": f"/var/lib/phee-bench/{i}"},
            },
        }
        for i in range(count)
    ]
    return yaml.safe_dump_all(docs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", type=int, default=20)
    parser.add_argument("--storage", choices=["persistent", "ephemeral"], default="persistent")
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds per engine")
    args = parser.parse_args()

    kube = get("kube")
    fetch_start = time.monotonic()
    kube.fetch()
    print(f"control plane fetched/cached in {time.monotonic() - fetch_start:.1f} s")
    work = Path(tempfile.mkdtemp(prefix="phee-bench-operator-"))
    run = kube.start(work)
    operator = None
    try:
        kubectl, kubeconfig = str(run.extra["kubectl"]), run.endpoint("kubeconfig")
        print(f"control plane ready in {run.ready_s} s (Kubernetes {kube.version})")
        _kubectl(kubectl, kubeconfig, "apply", "-f", str(ROOT / "crds"))
        _kubectl(
            kubectl,
            kubeconfig,
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/paymenthubs.phee.io",
            "crd/paymentengines.phee.io",
        )
        sa = service_account_kubeconfig(kubectl, Path(kubeconfig), work / "sa.kubeconfig")
        _kubectl(kubectl, kubeconfig, "create", "namespace", NS)
        if args.storage == "persistent":
            _kubectl(kubectl, kubeconfig, "apply", "-f", "-", input=_pvs(3 * args.engines))
        operator = start_operator(work, sa, identity="bench-operator")
        site = [
            d
            for d in yaml.safe_load_all((ROOT / "crds/examples/site.yaml").read_text())
            if d and d["kind"] != "PaymentEngine"
        ]
        _kubectl(kubectl, kubeconfig, "apply", "-n", NS, "-f", "-", input=yaml.safe_dump_all(site))
        client = Client(config=KubeConfig.from_file(kubeconfig))
        times: list[float] = []
        for i in range(args.engines):
            doc = yaml.safe_dump(_engine(i, args.storage))
            name = f"engine-{i:02d}"
            start = time.monotonic()
            _kubectl(kubectl, kubeconfig, "apply", "-n", NS, "-f", "-", input=doc)
            while not _ready(client, name):
                if time.monotonic() - start > args.deadline:
                    raise SystemExit(f"{name} not Ready within {args.deadline} s")
                time.sleep(0.02)  # poll interval of a deadline loop
            took = time.monotonic() - start
            times.append(took)
            kids = sum(
                len(
                    yaml.safe_load(
                        _kubectl(
                            kubectl,
                            kubeconfig,
                            "get",
                            k,
                            "-n",
                            NS,
                            "-l",
                            f"phee.io/engine={name}",
                            "-o",
                            "yaml",
                        )
                    )["items"]
                )
                for k in CHILD_KINDS
            )
            print(f"{name}: Ready after {took:.3f} s, {kids} children")
            if kids != 8:
                raise SystemExit(f"{name}: expected 8 children, found {kids}")
        times.sort()
        p95 = times[max(0, round(0.95 * len(times)) - 1)]
        print(
            f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, Kubernetes {kube.version}, storage {args.storage}"
        )
        print(
            f"apply -> Ready over {len(times)} engines: median {statistics.median(times):.3f} s,"
            f" p95 {p95:.3f} s, min {times[0]:.3f} s, max {times[-1]:.3f} s"
        )
        goal = statistics.median(times) < 2.0
        print(f"goal median < 2 s: {'MET' if goal else 'NOT MET'}")
        return 0 if goal else 1
    finally:
        if operator is not None:
            stop_pid(operator.pid)
        kube.stop(run)


if __name__ == "__main__":
    sys.exit(main())
