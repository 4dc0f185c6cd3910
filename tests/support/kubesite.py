"""Helpers for tests and benchmarks against the real control plane: conditions, PVs, CRDs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.kubectl import Kubectl

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
EXAMPLES = CRDS / "examples"


def condition(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return None


def is_ready(obj: dict[str, Any] | None) -> bool:
    cond = condition(obj, "Ready")
    return bool(cond and cond["status"] == "True")


def persistent_volumes(
    count: int, size: str = "20Gi", prefix: str = "phee-test-pv"
) -> list[dict[str, Any]]:
    """Static hostPath volumes with no storage class: the real PV controller binds broker
    claims to them (no provisioner runs here, and no kubelet ever mounts them)."""
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"{prefix}-{i}", "labels": {"phee.io/test": "true"}},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": f"/var/lib/phee-test/{prefix}-{i}"},
            },
        }
        for i in range(count)
    ]


def example_docs(name: str = "site.yaml") -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def install_crds(kubectl: Kubectl) -> None:
    kubectl.run("apply", "-f", str(CRDS))
    kubectl.run(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/paymenthubs.phee.io",
        "crd/paymentengines.phee.io",
    )
