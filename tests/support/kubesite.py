"""Helpers for tests and benchmarks against the real control plane: kubectl, polling, PVs."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from phee.components import Running

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
EXAMPLES = CRDS / "examples"
T = TypeVar("T")


class Kubectl:
    """kubectl bound to one kubeconfig; failures raise with kubectl's own message."""

    def __init__(self, binary: str, kubeconfig: str) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig
        # kubectl caches discovery under ~/.kube unless told otherwise
        self.cache_dir = Path(kubeconfig).parent / "kubectl-cache"

    @classmethod
    def of(cls, kube: Running) -> Kubectl:
        return cls(str(kube.extra["kubectl"]), kube.endpoint("kubeconfig"))

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout_s: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [
                self.binary,
                f"--kubeconfig={self.kubeconfig}",
                f"--cache-dir={self.cache_dir}",
                *args,
            ],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}"
            )
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def get(self, kind: str, name: str, ns: str) -> dict[str, Any] | None:
        proc = self.run("get", kind, name, "-n", ns, "-o", "json", check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            raise AssertionError(proc.stderr)
        out: dict[str, Any] = json.loads(proc.stdout)
        return out

    def items(self, kind: str, ns: str, selector: str = "") -> list[dict[str, Any]]:
        args = ["get", kind, "-n", ns]
        if selector:
            args += ["-l", selector]
        return list(self.json(*args)["items"])

    def apply(self, docs: list[dict[str, Any]] | str, ns: str, *extra: str) -> str:
        text = docs if isinstance(docs, str) else yaml.safe_dump_all(docs)
        return self.run("apply", "-n", ns, *extra, "-f", "-", input=text).stdout


def poll(
    check: Callable[[], T | None], *, what: str, deadline_s: float, interval_s: float = 0.1
) -> T:
    """Call `check` until it returns something truthy; fail with `what` at the deadline."""
    end = time.monotonic() + deadline_s
    last: object = None
    while True:
        got = check()
        if got:
            return got
        last = got
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline_s:.0f} s: {what} (last: {last!r})")
        time.sleep(interval_s)  # poll interval of a deadline loop


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
