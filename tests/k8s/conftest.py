"""A real control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok nodes) for the
whole session, and kubectl bound to its kubeconfig."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.components import Running, get
from harness.kubectl import Kubectl
from tests.conftest import start_component


@pytest.fixture(scope="session")
def kube(components_dir: Path) -> Iterator[Running]:
    run = start_component("kube", components_dir)
    try:
        yield run
    finally:
        get("kube").stop(run)


@pytest.fixture(scope="session")
def kc(kube: Running) -> Kubectl:
    """kubectl as the control plane's admin."""
    return Kubectl.of(kube)
