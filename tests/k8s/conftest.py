"""A real control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok nodes) for the
whole session, and a `kubectl` helper bound to its kubeconfig."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from phee.components import Running, get
from tests.conftest import start_component

KUBECTL_TIMEOUT_S = 60.0


@pytest.fixture(scope="session")
def kube(components_dir: Path) -> Iterator[Running]:
    run = start_component("kube", components_dir)
    try:
        yield run
    finally:
        get("kube").stop(run)


def kubectl(
    kube: Running,
    *args: str,
    input: str | None = None,
    check: bool = True,
    timeout_s: float = KUBECTL_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """Run the control plane's kubectl; a failure raises with kubectl's own stderr."""
    cmd = [
        kube.extra["kubectl"],
        f"--kubeconfig={kube.endpoint('kubeconfig')}",
        f"--cache-dir={Path(kube.workdir) / 'kubectl-cache'}",  # not ~/.kube/cache
        *args,
    ]
    proc = subprocess.run(
        cmd, input=input, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"`kubectl {' '.join(args)}` exited {proc.returncode}: {proc.stderr.strip()}"
        )
    return proc
