"""The operator against the real control plane: CRDs, the example site, spec changes, deletion,
restarts mid-reconcile, leadership, and what the API server and the operator refuse.

The operator runs as its own process with the service account and RBAC of operator/deploy, so
a missing permission fails here exactly as it would in a cluster.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import Client, KubeConfig
from lightkube.resources.core_v1 import ConfigMap
from phee_operator import database_manifests as dbm
from phee_operator import engine_manifests as em
from phee_operator import hub_manifests as hm
from phee_operator.model import engine_of, hub_of

from harness.components import Running
from harness.components.base import stop_pid
from harness.components.kubebuild import ServiceMonitorCrd
from harness.components.registry import get_fetchable
from harness.kubectl import Kubectl
from harness.local_operator import service_account_kubeconfig, start_operator
from phee import contract
from tests.conftest import STARTED
from tests.support import poll
from tests.support.kubesite import (
    condition,
    example_docs,
    install_crds,
    is_ready,
    persistent_volumes,
)

NS = "payments"
ENGINE_KINDS = [
    "configmap",
    "secret",
    "service",
    "statefulset",
    "deployment",
    "poddisruptionbudget",
    "networkpolicy",
]
OPERATOR_ENV = {
    "PHEE_OPERATOR_RESYNC_S": "20",
    "PHEE_OPERATOR_LEASE_DURATION_S": "6",
    "PHEE_OPERATOR_RENEW_EVERY_S": "2",
}


@dataclass
class Operators:
    """The operator processes of this module (a test kills and restarts them)."""

    workdir: Path
    kubeconfig: Path
    running: list[Running] = field(default_factory=list)

    def start(self, identity: str) -> Running:
        run = start_operator(self.workdir, self.kubeconfig, identity=identity, env=OPERATOR_ENV)
        STARTED.append(run)  # the end-of-run leak check covers it
        self.running.append(run)
        return run

    def kill(self, run: Running) -> None:
        stop_pid(run.pid, grace_s=0.0, sig=signal.SIGKILL)
        self.running.remove(run)

    def stop_all(self) -> None:
        for run in list(self.running):
            stop_pid(run.pid, grace_s=10.0)
            self.running.remove(run)


@pytest.fixture(scope="module")
def operators(
    kube: Running, kc: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operators]:
    workdir = tmp_path_factory.mktemp("operator")
    install_crds(kc)
    sa = service_account_kubeconfig(kc, workdir / "sa.kubeconfig")
    kc.apply(persistent_volumes(12), NS)
    kc.run("create", "namespace", NS)
    ops = Operators(workdir, sa)
    ops.start("operator-a")
    try:
        yield ops
    finally:
        ops.stop_all()


@pytest.fixture(scope="module")
def site(operators: Operators, kc: Kubectl) -> dict[str, float]:
    """The example site (a hub and two engines) applied once; returns seconds to Ready."""
    start = time.monotonic()
    print("\n" + kc.apply(example_docs(), NS).strip())
    took: dict[str, float] = {}
    for name in ("engine-a", "engine-b"):
        poll(
            _ready_check(kc, name),
            what=f"{name} Ready",
            deadline_s=120,
        )
        took[name] = round(time.monotonic() - start, 2)
    poll(lambda: is_ready(kc.get("paymenthub", "acme", NS)), what="hub Ready", deadline_s=60)
    took["acme"] = round(time.monotonic() - start, 2)
    print(f"seconds from apply to Ready: {took}")
    return took


def _patch_engine(kc: Kubectl, name: str, patch: dict[str, Any]) -> None:
    kc.run("patch", "paymentengine", name, "-n", NS, "--type=merge", "-p", json.dumps(patch))


def _ready_check(kc: Kubectl, name: str) -> Callable[[], bool]:
    return lambda: is_ready(kc.get("paymentengine", name, NS))


def _registration_tried(kc: Kubectl, name: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        cond = condition(kc.get("paymentengine", name, NS), "CdcRegistered")
        return cond if cond and cond["reason"] == "ConnectUnreachable" else None

    return check


def _subset(want: Any, have: Any, path: str = "") -> list[str]:
    """Where `have` (the live object) differs from `want` (what the builder asked for)."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return [f"{path}: {have!r} is not an object"]
        out = []
        for key, value in want.items():
            out += _subset(value, have.get(key), f"{path}.{key}")
        return out
    if isinstance(want, list):
        if not isinstance(have, list) or len(have) != len(want):
            return [f"{path}: {have!r} != {want!r}"]
        return [
            m
            for i, (w, h) in enumerate(zip(want, have, strict=True))
            for m in _subset(w, h, f"{path}[{i}]")
        ]
    return [] if want == have else [f"{path}: {have!r} != {want!r}"]


def _desired(kc: Kubectl, engine: str) -> list[dict[str, Any]]:
    body = kc.get("paymentengine", engine, NS)
    hub = kc.get("paymenthub", "acme", NS)
    assert body is not None
    assert hub is not None
    monitors = (
        kc.run("get", "crd", "servicemonitors.monitoring.coreos.com", check=False).returncode == 0
    )
    return em.engine_children(engine_of(body), hub_of(hub), service_monitors=monitors)


def _children(kc: Kubectl, engine: str) -> dict[str, list[str]]:
    sel = f"phee.io/engine={engine},app.kubernetes.io/managed-by=phee-operator"
    return {k: sorted(o["metadata"]["name"] for o in kc.items(k, NS, sel)) for k in ENGINE_KINDS}


def _registry(kc: Kubectl) -> contract.EngineRegistry:
    cm = kc.get("configmap", "acme-engine-registry", NS)
    assert cm is not None
    return contract.EngineRegistry.model_validate_json(cm["data"][hm.REGISTRY_KEY])


def test_example_site_builds_every_child_with_the_expected_spec(
    site: dict[str, float], kc: Kubectl
) -> None:
    for engine in ("engine-a", "engine-b"):
        desired = _desired(kc, engine)
        assert len(desired) >= 8
        for want in desired:
            kind, name = want["kind"].lower(), want["metadata"]["name"]
            have = kc.get(kind, name, NS)
            assert have is not None, f"{kind} {name} missing"
            diff = _subset(want, have)
            assert not diff, f"{kind} {name} differs: {diff[:5]}"
        db = kc.items("pods", NS, f"phee.io/engine={engine},app.kubernetes.io/component=database")
        assert [p["metadata"]["name"] for p in db] == [f"{engine}-db-0"]
        nodes = kc.items("pods", NS, f"phee.io/engine={engine},app.kubernetes.io/component=engine")
        assert len(nodes) == 2
        assert {p["spec"]["containers"][0]["image"] for p in nodes} == {"ghcr.io/phee/engine:1.0.3"}
        claims = kc.items("pvc", NS, f"phee.io/engine={engine}")
        assert [c["status"]["phase"] for c in claims] == ["Bound"]
        secret = kc.get("secret", f"{engine}-db", NS) or {}
        assert set(secret["data"]) == {"username", "password"}
        assert secret["metadata"]["ownerReferences"][0]["name"] == engine
        body = kc.get("paymentengine", engine, NS)
        assert body is not None
        st = body["status"]
        assert (st["phase"], st["ready"], st["version"]) == ("Ready", "2/2", "1.0.3")
        assert st["engineUrl"] == f"http://{engine}-operaton.{NS}.svc:8080/engine-rest"
        for ctype in (
            "Ready",
            "Reconciled",
            "DatabaseReady",
            "EngineNodesReady",
            "WorkersReady",
            "UpToDate",
        ):
            cond = condition(body, ctype)
            assert cond is not None, ctype
            assert cond["status"] == "True", (ctype, cond)
            assert cond["observedGeneration"] == body["metadata"]["generation"]
            assert cond["lastTransitionTime"].endswith("Z")
        # No Connect server runs here (kwok runs no containers, and the operator runs outside
        # the cluster): the registration is reported, and Ready does not wait for it. It is
        # tried once the database is ready (Debezium validates a config by connecting).
        cdc = poll(
            _registration_tried(kc, engine),
            what=f"{engine}'s connector registration tried",
            deadline_s=45,
        )
        assert cdc["status"] == "False"
        assert f"acme-connect.{NS}.svc:8083/connectors/{engine}-cdc/config" in cdc["message"]
        print(
            f"{engine}: {len(desired)} children match, status {st['phase']} {st['ready']}, "
            f"CdcRegistered {cdc['status']} ({cdc['reason']})"
        )
    views = [
        hm.EngineView(engine_of(kc.get("paymentengine", n, NS) or {}), True)
        for n in ("engine-a", "engine-b")
    ]
    hub_children = hm.hub_children(hub_of(kc.get("paymenthub", "acme", NS) or {}), views)
    for want in hub_children[1:]:  # the registry's content is checked below
        have = kc.get(want["kind"].lower(), want["metadata"]["name"], NS)
        assert have is not None, want["metadata"]["name"]
        assert not _subset(want, have), want["metadata"]["name"]
    reg = _registry(kc)
    assert [(e.name, e.slot, e.state.value) for e in reg.engines] == [
        ("engine-a", 1, "accepting"),
        ("engine-b", 2, "accepting"),
    ]
    hub = kc.get("paymenthub", "acme", NS) or {}
    assert hub["status"]["engines"] == "2/2"
    connect = condition(hub, "ConnectReady")
    assert connect is not None
    assert connect["status"] == "True", connect
    connect_dep = kc.get("deployment", "acme-connect", NS) or {}
    (projected,) = [
        v for v in connect_dep["spec"]["template"]["spec"]["volumes"] if "projected" in v
    ]
    assert [s["secret"]["name"] for s in projected["projected"]["sources"]] == [
        "engine-a-db",
        "engine-b-db",
    ]
    events = kc.items("events", NS)
    reasons = {(e["involvedObject"]["name"], e["reason"]) for e in events}
    assert {("engine-a", "Applied"), ("engine-a", "Ready"), ("acme", "RegistryUpdated")} <= reasons


def test_get_paymentengines_shows_phase_version_and_readiness(
    site: dict[str, float], kc: Kubectl
) -> None:
    out = kc.run("get", "paymentengines", "-n", NS).stdout
    print("\n" + out)
    header, *rows = out.strip().splitlines()
    assert header.split() == ["NAME", "HUB", "PHASE", "VERSION", "READY", "TRAFFIC", "AGE"]
    cells = {r.split()[0]: r.split()[1:6] for r in rows}
    assert cells["engine-a"] == ["acme", "Ready", "1.0.3", "2/2", "accepting"]
    assert cells["engine-b"] == ["acme", "Ready", "1.0.3", "2/2", "accepting"]
    hubs = kc.run("get", "ph", "-n", NS).stdout
    assert hubs.split()[:5] == ["NAME", "DFSP", "PHASE", "ENGINES", "READY"]


def _applied(kc: Kubectl, name: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        body = kc.get("paymentengine", name, NS)
        cond = condition(body, "Reconciled")
        gen = (body or {}).get("metadata", {}).get("generation")
        return body if cond and cond["observedGeneration"] == gen and is_ready(body) else None

    return check


def test_spec_change_rolls_the_engine_and_the_database_waits_for_the_operator(
    site: dict[str, float], kc: Kubectl
) -> None:
    before = kc.get("paymentengine", "engine-a", NS) or {}
    secret_before = kc.get("secret", "engine-a-db", NS) or {}
    patch = {
        "spec": {
            "workers": {"replicas": 3},
            "engine": {"resources": {"requests": {"cpu": "2"}}},
            "database": {"resources": {"requests": {"cpu": "1"}}},
        }
    }
    _patch_engine(kc, "engine-a", patch)
    body = poll(_applied(kc, "engine-a"), what="engine-a at its new generation", deadline_s=60)
    assert body["metadata"]["generation"] == before["metadata"]["generation"] + 1
    workers = kc.get("deployment", "engine-a-workers", NS) or {}
    assert workers["spec"]["replicas"] == 3
    assert workers["status"].get("availableReplicas") == 3
    nodes = kc.get("deployment", "engine-a-operaton", NS) or {}
    node = nodes["spec"]["template"]["spec"]["containers"][0]
    assert node["resources"]["requests"]["cpu"] == "2"
    sts = kc.get("statefulset", "engine-a-db", NS) or {}
    assert sts["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "1"
    # OnDelete: the only database instance keeps running its old template until the operator
    # (or an SRE) restarts it; the engine nodes rolled on their own
    pending = poll(
        lambda: (
            (b := kc.get("paymentengine", "engine-a", NS) or {})
            and (condition(b, "UpToDate") or {}).get("reason") == "RestartPending"
            and b["status"]["restartPending"]
        ),
        what="database restart pending reported",
        deadline_s=30,
    )
    assert pending == ["engine-a-db-0"]
    # the password is created once: a reconcile never writes a new one
    secret_after = kc.get("secret", "engine-a-db", NS) or {}
    assert secret_after["data"] == secret_before["data"]
    assert (
        secret_after["metadata"]["resourceVersion"] == secret_before["metadata"]["resourceVersion"]
    )
    print(
        f"\nengine-a generation {body['metadata']['generation']}: workers 3/3, engine cpu 2, "
        f"database restart pending for {pending}, credentials unchanged"
    )


def test_a_version_change_rolls_the_engine_nodes_to_the_new_image(
    site: dict[str, float], kc: Kubectl
) -> None:
    db_before = kc.get("statefulset", "engine-b-db", NS) or {}
    _patch_engine(kc, "engine-b", {"spec": {"version": "1.0.4"}})
    body = poll(
        lambda: (
            (b := _applied(kc, "engine-b")())
            and b["status"]["version"] == "1.0.4"
            and (condition(b, "UpToDate") or {}).get("status") == "True"
            and b
        ),
        what="engine-b's nodes on 1.0.4",
        deadline_s=60,
    )
    nodes = kc.items("pods", NS, "phee.io/engine=engine-b,app.kubernetes.io/component=engine")
    images = sorted(p["spec"]["containers"][0]["image"] for p in nodes)
    assert images == ["ghcr.io/phee/engine:1.0.4"] * 2
    db_after = kc.get("statefulset", "engine-b-db", NS) or {}
    assert db_after["metadata"]["generation"] == db_before["metadata"]["generation"]
    print(f"\nengine-b rolled to {body['status']['version']}: {images}; database untouched")


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("engine without hubRef", {"spec": {"slot": 7, "version": "1.0.3"}}, "spec.hubRef: Required"),
    (
        "engine of zero nodes",
        {"spec": {"engine": {"nodes": 0}}},
        "spec.engine.nodes in body should be greater than or equal to 1",
    ),
    (
        "unknown traffic state",
        {"spec": {"trafficState": "paused"}},
        'spec.trafficState: Unsupported value: "paused"',
    ),
    (
        "storage size that is not a quantity",
        {"spec": {"database": {"storage": {"size": "lots"}}}},
        "spec.database.storage.size: Invalid value",
    ),
    (
        "fewer WAL senders than replication slots",
        {"spec": {"database": {"maxReplicationSlots": 8, "maxWalSenders": 2}}},
        "database.maxWalSenders must be at least database.maxReplicationSlots",
    ),
    ("version that is not a release", {"spec": {"version": "latest"}}, "spec.version: Invalid"),
    ("slot out of range", {"spec": {"slot": 2000}}, "should be less than or equal to 1023"),
    (
        "cpu that is not a quantity",
        {"spec": {"workers": {"resources": {"requests": {"cpu": "lots"}}}}},
        "spec.workers.resources.requests.cpu: Invalid value",
    ),
]


def _engine(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "phee.io/v1alpha1",
        "kind": "PaymentEngine",
        "metadata": {"name": name},
        "spec": {
            "hubRef": "acme",
            "slot": 7,
            "version": "1.0.3",
            "database": {"storage": {"type": "ephemeral"}},
        },
    }
    _merge(body["spec"], spec)
    return body


def _merge(into: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


@pytest.mark.parametrize(("case", "patch", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_engine_is_rejected_by_the_api_server(
    site: dict[str, float], kc: Kubectl, case: str, patch: dict[str, Any], message: str
) -> None:
    doc = _engine("bad-engine", **patch.get("spec", {}))
    if case == "engine without hubRef":
        del doc["spec"]["hubRef"]
    proc = kc.run("apply", "-n", NS, "-f", "-", input=yaml.safe_dump(doc), check=False)
    print(f"\n{case}: {proc.stderr.strip()[:300]}")
    assert proc.returncode != 0
    assert message in proc.stderr
    assert kc.get("paymentengine", "bad-engine", NS) is None


HUB_INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("dfspId with a space", {"dfspId": "acme bank"}, "spec.dfspId: Invalid value"),
    (
        "duplicate tenants",
        {"tenants": [{"name": "retail"}, {"name": "retail"}]},
        "spec.tenants[1]: Duplicate value",
    ),
    (
        "plain http switch",
        {"switch": {"url": "http://switch:80"}},
        "switch.url must use https unless switch.allowInsecure is true",
    ),
    (
        "shared router without a database",
        {"router": {"replicas": 3}},
        "router.databaseSecretName is required when router.replicas > 1",
    ),
    (
        "bad Kafka address",
        {"kafka": {"bootstrapServers": "kafka"}},
        "spec.kafka.bootstrapServers: Invalid value",
    ),
]


@pytest.mark.parametrize(("case", "spec", "message"), HUB_INVALID, ids=[c[0] for c in HUB_INVALID])
def test_invalid_hub_is_rejected_by_the_api_server(
    site: dict[str, float], kc: Kubectl, case: str, spec: dict[str, Any], message: str
) -> None:
    hub = next(d for d in example_docs() if d["kind"] == "PaymentHub")
    hub["metadata"]["name"] = "bad-hub"
    hub["spec"].update(spec)
    proc = kc.run("apply", "-n", NS, "-f", "-", input=yaml.safe_dump(hub), check=False)
    print(f"\n{case}: {proc.stderr.strip()[:300]}")
    assert proc.returncode != 0
    assert message in proc.stderr
    assert kc.get("paymenthub", "bad-hub", NS) is None


@pytest.mark.parametrize(
    ("case", "patch", "message"),
    [
        ("moving an engine to another hub", {"spec": {"hubRef": "other"}}, "hubRef is immutable"),
        ("changing the slot", {"spec": {"slot": 5}}, "slot is immutable"),
        (
            "changing the database storage",
            {"spec": {"database": {"storage": {"size": "30Gi"}}}},
            "database.storage is immutable",
        ),
    ],
)
def test_forbidden_updates_are_rejected_and_change_nothing(
    site: dict[str, float], kc: Kubectl, case: str, patch: dict[str, Any], message: str
) -> None:
    before = kc.get("paymentengine", "engine-b", NS) or {}
    proc = kc.run(
        "patch",
        "paymentengine",
        "engine-b",
        "-n",
        NS,
        "--type=merge",
        "-p",
        json.dumps(patch),
        check=False,
    )
    print(f"\n{case}: {proc.stderr.strip()[:300]}")
    assert proc.returncode != 0
    assert message in proc.stderr
    after = kc.get("paymentengine", "engine-b", NS) or {}
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"] == before["spec"]


@pytest.mark.parametrize(
    ("case", "doc", "reason", "message"),
    [
        (
            "engine naming a hub that does not exist",
            _engine("orphan", hubRef="no-such-hub", slot=11),
            "HubNotFound",
            "PaymentHub 'no-such-hub' does not exist",
        ),
        (
            "engine reusing another engine's slot",
            _engine("slot-thief", slot=1),
            "Conflict",
            "slot 1 is already used by engine 'engine-a'",
        ),
    ],
)
def test_operator_refuses_what_the_api_server_cannot_check(
    site: dict[str, float],
    kc: Kubectl,
    case: str,
    doc: dict[str, Any],
    reason: str,
    message: str,
) -> None:
    name = doc["metadata"]["name"]
    registry_before = _registry(kc)
    kc.apply([doc], NS)
    try:
        body = poll(
            lambda: (
                (b := kc.get("paymentengine", name, NS))
                and (b.get("status") or {}).get("phase") == "Invalid"
                and b
            ),
            what=f"{name} refused",
            deadline_s=30,
        )
        cond = condition(body, "Ready")
        assert cond is not None
        assert cond["reason"] == reason
        assert message in cond["message"]
        print(f"\n{case}: {cond['reason']}: {cond['message']}")
        events = [
            e
            for e in kc.items("events", NS)
            if e["involvedObject"]["name"] == name and e["type"] == "Warning"
        ]
        assert any(message in e["message"] for e in events)
        assert _children(kc, name) == {k: [] for k in ENGINE_KINDS}
        assert _registry(kc) == registry_before
    finally:
        kc.run("delete", "paymentengine", name, "-n", NS, "--wait=true")


def test_every_generated_object_passes_a_server_side_dry_run(
    site: dict[str, float], kc: Kubectl
) -> None:
    hub_body = kc.get("paymenthub", "acme", NS) or {}
    engines = [engine_of(kc.get("paymentengine", n, NS) or {}) for n in ("engine-a", "engine-b")]
    hub = hub_of(hub_body)
    docs = hm.hub_children(hub, [hm.EngineView(e, True) for e in engines])
    for engine in engines:
        docs += em.engine_children(engine, hub, service_monitors=False)
        docs.append(dbm.credentials_secret(engine, "dry-run-password"))
    eph = engine_of(
        {
            **next(d for d in example_docs("engine-ephemeral.yaml")),
            "metadata": {"name": "engine-dev", "namespace": NS, "uid": "x"},
        }
    )
    docs += em.engine_children(eph, hub, service_monitors=False)
    out = kc.apply(
        docs,
        NS,
        "--dry-run=server",
        "--server-side",
        "--field-manager=phee-operator",
        "--force-conflicts",
    )
    lines = [ln for ln in out.splitlines() if ln.strip()]
    print(f"\n{len(docs)} generated objects, server dry run:\n" + "\n".join(lines[:6]) + "\n...")
    assert len(lines) == len(docs)
    assert all("(server dry run)" in ln for ln in lines)
    deploy = kc.run(
        "apply", "-k", str(Path(__file__).parents[2] / "operator" / "deploy"), "--dry-run=server"
    ).stdout
    assert deploy.count("(server dry run)") >= 7
    # the examples as a newcomer applies them: into a namespace of their own
    kc.run("create", "namespace", "examples-dry-run")
    examples = kc.run(
        "apply",
        "-n",
        "examples-dry-run",
        "-f",
        str(Path(__file__).parents[2] / "crds" / "examples"),
        "--dry-run=server",
    ).stdout
    assert examples.count("(server dry run)") == 6


def test_operator_restart_mid_reconcile_converges_without_duplicates(
    site: dict[str, float], kc: Kubectl, operators: Operators
) -> None:
    names = [f"burst-{i}" for i in range(10)]
    docs = [_engine(n, slot=20 + i, engine={"nodes": 1}) for i, n in enumerate(names)]
    selector = f"phee.io/engine in ({','.join(names)})"

    def written() -> int:
        kinds = ",".join(ENGINE_KINDS)
        return len(kc.run("get", kinds, "-n", NS, "-l", selector, "-o", "name").stdout.split())

    client = Client(config=KubeConfig.from_file(kc.kubeconfig))
    listing = client.list(ConfigMap, namespace=NS)
    assert all(cm.metadata is not None for cm in listing)
    since = listing.resourceVersion
    kc.apply(docs, NS)
    # Kill the leader the moment the first child of the burst exists: a watch, not a poll, so
    # the kill lands while the other children are still being written.
    for _, cm in client.watch(
        ConfigMap,
        namespace=NS,
        resource_version=since,
        labels={"app.kubernetes.io/managed-by": "phee-operator"},
    ):
        labels = cm.metadata.labels if cm.metadata else None
        if str((labels or {}).get("phee.io/engine")) in names:
            break
    (leader,) = [r for r in operators.running if r.extra["identity"] == "operator-a"]
    operators.kill(leader)
    at_kill = written()
    per_engine = [d for d in _desired(kc, "engine-a") if d["kind"] != "ServiceMonitor"]
    total = len(names) * (len(per_engine) + 1)  # and the credentials Secret
    print(f"\nkilled the operator with {at_kill} of {total} children written")
    assert 0 < at_kill < total
    operators.start("operator-b")
    for n in names:
        poll(_ready_check(kc, n), what=f"{n} Ready", deadline_s=90)
    for n in names:
        kids = _children(kc, n)
        assert kids == {
            "configmap": [f"{n}-cdc", f"{n}-db-init"],
            "secret": [f"{n}-db"],
            "service": [f"{n}-channel", f"{n}-db", f"{n}-operaton"],
            "statefulset": [f"{n}-db"],
            "deployment": [f"{n}-operaton", f"{n}-workers"],
            "poddisruptionbudget": [f"{n}-operaton"],
            "networkpolicy": [f"{n}-db", f"{n}-operaton"],
        }
        pods = kc.items("pods", NS, f"phee.io/engine={n},app.kubernetes.io/component=database")
        assert [p["metadata"]["name"] for p in pods] == [f"{n}-db-0"]
    assert written() == total
    reg = _registry(kc)
    assert sorted(e.name for e in reg.engines if e.name.startswith("burst-")) == sorted(names)
    assert len({e.slot for e in reg.engines}) == len(reg.engines)
    print(f"after the restart: {written()} of {total} children, each engine once in the registry")
    kc.run("delete", "paymentengine", *names, "-n", NS, "--wait=true", timeout_s=120)


def test_standby_takes_over_when_the_leader_dies(
    site: dict[str, float], kc: Kubectl, operators: Operators
) -> None:
    (leader,) = operators.running
    standby = operators.start("operator-c")
    log = Path(standby.log_path).read_text()
    assert "operator-c is standby" in log
    lease = kc.get("lease", "phee-operator", "phee-system") or {}
    assert lease["spec"]["holderIdentity"] == leader.extra["identity"]
    operators.kill(leader)
    killed = time.monotonic()
    poll(
        lambda: (
            (kc.get("lease", "phee-operator", "phee-system") or {})
            .get("spec", {})
            .get("holderIdentity")
            == "operator-c"
        ),
        what="operator-c holds the lease",
        deadline_s=30,
    )
    took = time.monotonic() - killed
    _patch_engine(kc, "engine-b", {"spec": {"workers": {"replicas": 1}}})
    poll(
        lambda: (
            (kc.get("deployment", "engine-b-workers", NS) or {}).get("spec", {}).get("replicas")
            == 1
        ),
        what="the new leader applies",
        deadline_s=30,
    )
    print(f"\nstandby took over {took:.1f} s after the leader was killed (lease 6 s)")
    assert took < 6 + 2 * 2 + 2


def test_service_monitors_appear_once_their_crd_exists(site: dict[str, float], kc: Kubectl) -> None:
    name = "servicemonitors.monitoring.coreos.com"
    assert kc.run("get", "crd", name, check=False).returncode != 0
    assert "ServiceMonitor" not in {d["kind"] for d in _desired(kc, "engine-a")}
    crd = get_fetchable("servicemonitor-crd")
    crd.fetch()
    assert isinstance(crd, ServiceMonitorCrd)
    kc.run("apply", "--server-side", "-f", str(crd.path))
    kc.run("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")
    # a spec change reconciles at once (the resync timer would within 20 s)
    _patch_engine(kc, "engine-a", {"spec": {"workers": {"replicas": 2}}})
    monitor = poll(
        lambda: kc.get("servicemonitor", "engine-a", NS),
        what="engine-a's ServiceMonitor",
        deadline_s=30,
    )
    (want,) = [d for d in _desired(kc, "engine-a") if d["kind"] == "ServiceMonitor"]
    assert not _subset(want, monitor)
    assert monitor["metadata"]["ownerReferences"][0]["name"] == "engine-a"
    ports = [e["port"] for e in monitor["spec"]["endpoints"]]
    assert ports == ["rest", "http"]
    out = kc.apply(
        [want],
        NS,
        "--dry-run=server",
        "--server-side",
        "--field-manager=phee-operator",
        "--force-conflicts",
    )
    assert "(server dry run)" in out
    print(
        f"\nServiceMonitor engine-a created against prometheus-operator "
        f"{crd.version}'s CRD, endpoints {ports}"
    )


def test_deleting_an_engine_removes_its_children_and_its_registry_entry(
    site: dict[str, float], kc: Kubectl
) -> None:
    kc.run("delete", "paymentengine", "engine-b", "-n", NS, "--wait=true", timeout_s=90)
    poll(
        lambda: _children(kc, "engine-b") == {k: [] for k in ENGINE_KINDS},
        what="engine-b's children garbage-collected",
        deadline_s=60,
    )
    poll(
        lambda: not kc.items("pods", NS, "phee.io/engine=engine-b"),
        what="engine-b's pods gone",
        deadline_s=60,
    )
    assert [e.name for e in _registry(kc).engines] == ["engine-a"]
    assert (kc.get("paymenthub", "acme", NS) or {})["status"]["engines"] == "1/1"
    # the database outlives an accidental delete (persistentVolumeClaimRetentionPolicy: Retain)
    poll(
        lambda: kc.get("servicemonitor", "engine-b", NS) is None,
        what="engine-b's ServiceMonitor garbage-collected",
        deadline_s=30,
    )
    claims = kc.items("pvc", NS, "phee.io/engine=engine-b")
    assert len(claims) == 1
    assert _children(kc, "engine-a")["statefulset"] == ["engine-a-db"]
    # Connect no longer mounts the deleted engine's password
    connect = kc.get("deployment", "acme-connect", NS) or {}
    volumes = connect["spec"]["template"]["spec"]["volumes"]
    sources = [
        s["secret"]["name"] for v in volumes if "projected" in v for s in v["projected"]["sources"]
    ]
    assert sources == ["engine-a-db"]
    print(
        f"\nengine-b deleted: 0 children, 0 pods, registry ['engine-a'], "
        f"{len(claims)} claims retained"
    )


def test_deleting_the_hub_removes_its_parts_and_leaves_running_engines_alone(
    site: dict[str, float], kc: Kubectl
) -> None:
    kc.run("delete", "paymenthub", "acme", "-n", NS, "--wait=true", timeout_s=90)
    hub_parts = "app.kubernetes.io/managed-by=phee-operator,!phee.io/engine,phee.io/hub=acme"

    def remaining() -> list[str]:
        return kc.run(
            "get",
            "configmap,service,deployment,poddisruptionbudget",
            "-n",
            NS,
            "-l",
            hub_parts,
            "-o",
            "name",
        ).stdout.split()

    poll(
        lambda: remaining() == [],
        what="the hub's router, back office and registry gone",
        deadline_s=60,
    )
    # An engine whose hub is gone is refused from now on, but what runs is not torn down: a
    # deleted hub must not take payments in flight with it.
    _patch_engine(kc, "engine-a", {"spec": {"workers": {"replicas": 1}}})
    body = poll(
        lambda: (
            (b := kc.get("paymentengine", "engine-a", NS))
            and (b.get("status") or {}).get("phase") == "Invalid"
            and b
        ),
        what="engine-a refused without its hub",
        deadline_s=30,
    )
    reason = (condition(body, "Reconciled") or {}).get("reason")
    assert reason == "HubNotFound"
    assert _children(kc, "engine-a")["statefulset"] == ["engine-a-db"]
    workers = kc.get("deployment", "engine-a-workers", NS) or {}
    assert workers["spec"]["replicas"] == 2  # the refused change was not applied
    print(
        f"\nhub deleted: 0 hub parts left; engine-a {body['status']['phase']} ({reason}), "
        "its database, nodes and workers untouched"
    )
