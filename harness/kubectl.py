"""The one `kubectl` wrapper, bound to a kubeconfig: for the harness, the tests and benchmarks.

Failures raise KubectlError with kubectl's own message. Discovery is cached beside the
kubeconfig, not under ~/.kube, so two control planes never share a cache.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from harness.components.base import Running

DEFAULT_TIMEOUT_S = 60.0


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message carries its stderr."""


class Kubectl:
    """kubectl bound to one kubeconfig."""

    def __init__(self, binary: str, kubeconfig: str | Path) -> None:
        self.binary = binary
        self.kubeconfig = str(kubeconfig)
        self.cache_dir = Path(kubeconfig).parent / "kubectl-cache"

    @classmethod
    def of(cls, kube: Running) -> Kubectl:
        """The kubectl of a running `kube` component, as its admin."""
        return cls(str(kube.extra["kubectl"]), kube.endpoint("kubeconfig"))

    def run(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout_s: float = DEFAULT_TIMEOUT_S,
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
            raise KubectlError(
                f"kubectl {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}"
            )
        return proc

    def out(
        self, *args: str, input: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> str:
        """stdout of a command that must succeed."""
        return self.run(*args, input=input, timeout_s=timeout_s).stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.out(*args, "-o", "json"))

    def get(self, kind: str, name: str, ns: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        proc = self.run("get", kind, name, "-n", ns, "-o", "json", check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            raise KubectlError(proc.stderr.strip())
        out: dict[str, Any] = json.loads(proc.stdout)
        return out

    def items(self, kind: str, ns: str, selector: str = "") -> list[dict[str, Any]]:
        args = ["get", kind, "-n", ns]
        if selector:
            args += ["-l", selector]
        return list(self.json(*args)["items"])

    def apply(self, docs: list[dict[str, Any]] | str, ns: str | None = None, *extra: str) -> str:
        """`kubectl apply -f -` of manifests (dicts or YAML text)."""
        text = docs if isinstance(docs, str) else yaml.safe_dump_all(docs)
        where = ["-n", ns] if ns else []
        return self.out("apply", *where, *extra, "-f", "-", input=text)
