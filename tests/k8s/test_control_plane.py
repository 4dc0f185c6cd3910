"""The local control plane behaves like a real cluster where the operator depends on it: version,
Deployment and StatefulSet controllers with scheduling onto kwok nodes, garbage collection, RBAC
and server-side dry run."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.components import Running, StartError, get
from harness.components.base import pid_alive
from harness.components.kubebuild import Kwok
from harness.kubectl import Kubectl
from tests.support import poll

READY_DEADLINE_S = 60.0


def get_json(kc: Kubectl, *args: str) -> Any:
    return kc.json("get", *args)


@pytest.fixture
def namespace(kc: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace per test, usable once the service-account controller gave it its SA."""
    name = "t-" + request.node.name.removeprefix("test_").replace("_", "-")[:50].strip("-")
    kc.run("create", "namespace", name)
    poll(
        lambda: (
            kc.run("-n", name, "get", "serviceaccount", "default", check=False).returncode == 0
            or None
        ),
        what=f"service account default in {name}",
        deadline_s=30,
    )
    yield name
    kc.run("delete", "namespace", name, "--wait=false")


def pods(kc: Kubectl, namespace: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(kc, "-n", namespace, "pods", "-l", selector)["items"]
    return items


def test_server_is_the_pinned_kubernetes(kube: Running, kc: Kubectl) -> None:
    version = json.loads(kc.run("version", "-o", "json").stdout)
    server = version["serverVersion"]
    print(f"control plane ready in {kube.ready_s:.1f} s; server {server['gitVersion']}")
    assert server["gitVersion"] == f"v{kube.version}" == "v1.33.13"
    nodes = get_json(kc, "nodes")["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == [
        "kwok-node-0",
        "kwok-node-1",
        "kwok-node-2",
    ]
    assert all(not n["spec"].get("taints") for n in nodes)


def test_deployment_becomes_ready_on_fake_nodes_and_is_garbage_collected(
    kc: Kubectl, namespace: str
) -> None:
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.invalid/pause:1"}]},
            },
        },
    }
    start = time.monotonic()
    kc.run("apply", "-f", "-", input=json.dumps(manifest))
    poll(
        lambda: (
            get_json(kc, "-n", namespace, "deployment", "web")["status"].get("readyReplicas") == 2
            or None
        ),
        what="deployment web 2/2 ready",
        deadline_s=READY_DEADLINE_S,
    )
    print(f"deployment 2/2 ready in {time.monotonic() - start:.2f} s")
    running = pods(kc, namespace, "app=web")
    assert len(running) == 2
    assert all(p["spec"]["nodeName"].startswith("kwok-node-") for p in running)
    assert all(p["status"]["phase"] == "Running" for p in running)

    start = time.monotonic()
    kc.run("-n", namespace, "delete", "deployment", "web", "--wait=false")
    poll(
        lambda: not pods(kc, namespace, "app=web") or None,
        what="pods of the deleted deployment collected",
        deadline_s=READY_DEADLINE_S,
    )
    print(f"deployment's pods garbage-collected in {time.monotonic() - start:.2f} s")
    assert get_json(kc, "-n", namespace, "replicasets")["items"] == []


def test_ondelete_parallel_statefulset(kc: Kubectl, namespace: str) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "engine", "namespace": namespace},
        "spec": {"clusterIP": "None", "selector": {"app": "engine"}, "ports": [{"port": 26500}]},
    }
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "engine", "namespace": namespace},
        "spec": {
            "serviceName": "engine",
            "replicas": 3,
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "OnDelete"},
            "selector": {"matchLabels": {"app": "engine"}},
            "template": {
                "metadata": {"labels": {"app": "engine"}},
                "spec": {"containers": [{"name": "engine", "image": "registry.invalid/engine:1"}]},
            },
        },
    }
    start = time.monotonic()
    kc.run(
        "apply",
        "-f",
        "-",
        input=json.dumps({"kind": "List", "apiVersion": "v1", "items": [service, sts]}),
    )
    poll(
        lambda: (
            get_json(kc, "-n", namespace, "statefulset", "engine")["status"].get("readyReplicas")
            == 3
            or None
        ),
        what="statefulset engine 3/3 ready",
        deadline_s=READY_DEADLINE_S,
    )
    print(f"statefulset 3/3 ready in {time.monotonic() - start:.2f} s")
    names = sorted(p["metadata"]["name"] for p in pods(kc, namespace, "app=engine"))
    assert names == ["engine-0", "engine-1", "engine-2"]

    # OnDelete: a template change rolls nothing until a pod is deleted; then only that one.
    kc.run(
        "-n",
        namespace,
        "patch",
        "statefulset",
        "engine",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}}),
    )

    def new_revision() -> dict[str, Any] | None:
        status: dict[str, Any] = get_json(kc, "-n", namespace, "statefulset", "engine")["status"]
        return status if status.get("updateRevision") != status.get("currentRevision") else None

    status = poll(new_revision, what="statefulset sees a new revision", deadline_s=30)
    revisions = {
        p["metadata"]["name"]: p["metadata"]["labels"]["controller-revision-hash"]
        for p in pods(kc, namespace, "app=engine")
    }
    assert set(revisions.values()) == {status["currentRevision"]}, "OnDelete rolled a pod itself"
    kc.run("-n", namespace, "delete", "pod", "engine-1", "--wait=false")
    poll(
        lambda: (
            {
                p["metadata"]["name"]: p["metadata"]["labels"]["controller-revision-hash"]
                for p in pods(kc, namespace, "app=engine")
                if p["status"].get("phase") == "Running"
            }.get("engine-1")
            == status["updateRevision"]
            or None
        ),
        what="engine-1 recreated at the new revision",
        deadline_s=READY_DEADLINE_S,
    )
    after = {
        p["metadata"]["name"]: p["metadata"]["labels"]["controller-revision-hash"]
        for p in pods(kc, namespace, "app=engine")
    }
    assert after["engine-0"] == after["engine-2"] == status["currentRevision"]


def test_rbac_is_enforced(kc: Kubectl, namespace: str) -> None:
    who = f"system:serviceaccount:{namespace}:nobody"
    kc.run("-n", namespace, "create", "serviceaccount", "nobody")

    def can_list_secrets() -> str:
        proc = kc.run("-n", namespace, "auth", "can-i", "--as", who, "list", "secrets", check=False)
        return proc.stdout.strip()

    assert can_list_secrets() == "no"
    assert kc.run("auth", "can-i", "list", "secrets", "-A").stdout.strip() == "yes"
    # A role grants exactly what it says, so "no" above is RBAC, not a broken authorizer.
    kc.run("-n", namespace, "create", "role", "reader", "--verb=list", "--resource=secrets")
    kc.run(
        "-n",
        namespace,
        "create",
        "rolebinding",
        "reader",
        "--role=reader",
        f"--serviceaccount={namespace}:nobody",
    )
    assert poll(lambda: can_list_secrets() == "yes" or None, what="role granted", deadline_s=10)
    allowed = kc.run("-n", namespace, "get", "secrets", "--as", who, check=False)
    assert allowed.returncode == 0, allowed.stderr
    denied = kc.run("-n", namespace, "get", "configmaps", "--as", who, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr


def test_server_side_dry_run_creates_nothing(kc: Kubectl, namespace: str) -> None:
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "dry", "namespace": namespace},
        "data": {"engine": "a"},
    }
    out = kc.run("apply", "--dry-run=server", "-f", "-", input=json.dumps(cm)).stdout
    assert "configmap/dry created (server dry run)" in out
    missing = kc.run("-n", namespace, "get", "configmap", "dry", check=False)
    assert missing.returncode != 0
    assert "NotFound" in missing.stderr
    # The same object without dry run does exist afterwards (the check above can fail).
    kc.run("apply", "-f", "-", input=json.dumps(cm))
    assert get_json(kc, "-n", namespace, "configmap", "dry")["data"] == {"engine": "a"}


def test_a_failed_start_stops_everything_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kwok that exits at once: the start fails naming it, and no process of it survives."""
    comp = get("kube")
    comp.fetch()
    monkeypatch.setattr(Kwok, "binary", lambda _self: "/bin/false")
    with pytest.raises(StartError, match="kwok exited with code 1"):
        comp.start(tmp_path)

    def ours() -> list[int]:
        found = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                with contextlib.suppress(OSError):
                    if str(tmp_path).encode() in (proc / "cmdline").read_bytes():
                        found.append(int(proc.name))
        return [pid for pid in found if pid_alive(pid)]

    assert ours() == []
    assert (tmp_path / "kube" / "apiserver.log").stat().st_size > 0  # it did get that far
