"""Benchmark: `kubectl apply` of a PaymentEngine -> every child created and status Ready.

Starts the real control plane (component `kube`: etcd, kube-apiserver, controller-manager,
scheduler, kwok nodes), installs the CRDs and the operator's RBAC, runs the operator as a local
process with its service account, applies a hub, then applies N engines one after another and
times each from the start of `kubectl apply` until the engine's Ready condition is True (which
needs its database StatefulSet and its engine and workers Deployments ready, so every child
exists). Prints median and p95.

    uv run --frozen python benchmarks/operator_ready.py [--engines 20] [--storage persistent]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from phee_operator.kube import Kube
from phee_operator.model import API_VERSION

from harness.components import get
from harness.components.base import stop_pid
from harness.kubectl import Kubectl
from harness.local_operator import service_account_kubeconfig, start_operator

ROOT = Path(__file__).resolve().parents[1]
NS = "bench"
CHILD_KINDS = (
    "configmap",
    "secret",
    "service",
    "statefulset",
    "deployment",
    "poddisruptionbudget",
    "networkpolicy",
)
#: per engine: 2 ConfigMaps (database init, CDC connector), the credentials Secret, 3 Services
#: (database, engine, channel), the database StatefulSet, 2 Deployments (engine, workers), a
#: PodDisruptionBudget and 2 NetworkPolicies
CHILDREN = 12


def _engine(i: int, storage: str) -> dict[str, Any]:
    return {
        "apiVersion": "phee.io/v1alpha1",
        "kind": "PaymentEngine",
        "metadata": {"name": f"engine-{i:02d}"},
        "spec": {
            "hubRef": "acme",
            "slot": 100 + i,
            "version": "1.0.3",
            "engine": {"nodes": 2},
            "database": {"storage": {"type": storage, "size": "20Gi"}},
            "workers": {"replicas": 2},
        },
    }


async def _ready(api: Kube, name: str) -> bool:
    body = await api.get(API_VERSION, "PaymentEngine", name, NS) or {}
    conds = (body.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


async def _apply_each(kc: Kubectl, engines: int, storage: str, deadline_s: float) -> list[float]:
    """Apply the engines one by one; seconds from each `kubectl apply` until it is Ready
    (readiness read through the operator's own Kubernetes adapter)."""
    api = Kube.from_kubeconfig(kc.kubeconfig)
    times: list[float] = []
    try:
        for i in range(engines):
            doc = yaml.safe_dump(_engine(i, storage))
            name = f"engine-{i:02d}"
            start = time.monotonic()
            kc.apply(doc, NS)
            while not await _ready(api, name):
                if time.monotonic() - start > deadline_s:
                    raise SystemExit(f"{name} not Ready within {deadline_s} s")
                await asyncio.sleep(0.02)  # poll interval of a deadline loop
            took = time.monotonic() - start
            times.append(took)
            kids = sum(len(kc.items(k, NS, f"phee.io/engine={name}")) for k in CHILD_KINDS)
            print(f"{name}: Ready after {took:.3f} s, {kids} children")
            if kids != CHILDREN:
                raise SystemExit(f"{name}: expected {CHILDREN} children, found {kids}")
    finally:
        await api.close()
    return times


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
        kc = Kubectl.of(run)
        print(f"control plane ready in {run.ready_s} s (Kubernetes {kube.version})")
        kc.out("apply", "-f", str(ROOT / "crds"))
        kc.out(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/paymenthubs.phee.io",
            "crd/paymentengines.phee.io",
        )
        sa = service_account_kubeconfig(kc, work / "sa.kubeconfig")
        kc.out("create", "namespace", NS)
        if args.storage == "persistent":
            kc.apply(_pvs(args.engines))
        operator = start_operator(work, sa, identity="bench-operator")
        site = [
            d
            for d in yaml.safe_load_all((ROOT / "crds/examples/site.yaml").read_text())
            if d and d["kind"] != "PaymentEngine"
        ]
        kc.apply(site, NS)
        times = asyncio.run(_apply_each(kc, args.engines, args.storage, args.deadline))
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
