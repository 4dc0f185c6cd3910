"""The operator's pure parts: spec parsing against the CRDs, builders, registry, refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from phee_operator import engine_manifests as em
from phee_operator import hub_manifests as hm
from phee_operator.common import ANNOTATION_CONFIG_HASH, key_of
from phee_operator.model import Engine, EngineSpec, Hub, HubSpec, engine_of, hub_of, refusal_of

from phee import contract

ROOT = Path(__file__).resolve().parents[2]
CRDS = {p.stem: yaml.safe_load(p.read_text()) for p in (ROOT / "crds").glob("*.yaml")}


def _example(kind: str) -> list[dict[str, Any]]:
    docs = yaml.safe_load_all((ROOT / "crds" / "examples" / "site.yaml").read_text())
    return [d for d in docs if d and d["kind"] == kind]


def _with_meta(
    doc: dict[str, Any], uid: str, created: str = "2026-11-21T10:00:00Z"
) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(doc))
    out["metadata"].update(namespace="payments", uid=uid, generation=1, creationTimestamp=created)
    return out


def _site() -> tuple[Hub, list[Engine]]:
    hub = hub_of(_with_meta(_example("PaymentHub")[0], "hub-uid"))
    engines = [
        engine_of(_with_meta(e, f"uid-{i}")) for i, e in enumerate(_example("PaymentEngine"))
    ]
    return hub, engines


def _defaults(schema: dict[str, Any], path: str = "") -> dict[str, Any]:
    """Every leaf default in an OpenAPI schema, by dotted path."""
    out: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        here = f"{path}.{name}" if path else name
        if "default" in prop and prop["default"] != {}:
            out[here] = prop["default"]
        out.update(_defaults(prop, here))
    return out


def _dig(model: Any, dotted: str) -> Any:
    node = model.model_dump(by_alias=True)
    for part in dotted.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize(
    ("crd", "model", "required"),
    [
        ("paymentengine", EngineSpec, {"hubRef": "h", "slot": 1, "version": "8.5.8"}),
        (
            "paymenthub",
            HubSpec,
            {
                "dfspId": "d",
                "tenants": [{"name": "t"}],
                "switch": {"url": "https://s"},
                "kafka": {"bootstrapServers": "k:9092"},
                "backOffice": {"databaseSecretName": "db"},
            },
        ),
    ],
)
def test_model_defaults_are_the_crd_defaults(
    crd: str, model: Any, required: dict[str, Any]
) -> None:
    schema = CRDS[crd]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    defaults = _defaults(schema)
    parsed = model.model_validate(required)
    assert len(defaults) >= 5
    for dotted, value in defaults.items():
        got = _dig(parsed, dotted)
        assert got == value, f"{crd} {dotted}: model default {got!r} != CRD default {value!r}"


def test_engine_children_cover_every_kind_with_owner_references() -> None:
    hub, (engine, _) = _site()
    children = em.engine_children(engine, hub, service_monitors=True)
    kinds = sorted(c["kind"] for c in children)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Service",
            "Service",
            "Service",
            "StatefulSet",
            "Deployment",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "ServiceMonitor",
        ]
    )
    assert len({key_of(c) for c in children}) == len(children)
    for child in children:
        (ref,) = child["metadata"]["ownerReferences"]
        assert ref == {
            "apiVersion": "phee.io/v1alpha1",
            "kind": "PaymentEngine",
            "name": "engine-a",
            "uid": "uid-0",
            "controller": True,
            "blockOwnerDeletion": True,
        }
        assert child["metadata"]["namespace"] == "payments"
        assert child["metadata"]["labels"]["phee.io/engine"] == "engine-a"
    without = em.engine_children(engine, hub, service_monitors=False)
    assert "ServiceMonitor" not in {c["kind"] for c in without}


def test_broker_statefulset_is_on_delete_parallel_and_shaped_by_the_spec() -> None:
    hub, (engine, _) = _site()
    sts = em.stateful_set(engine, hub)
    spec = sts["spec"]
    assert spec["updateStrategy"] == {"type": "OnDelete"}
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["replicas"] == 3
    pod = spec["template"]["spec"]
    (zeebe,) = pod["containers"]
    assert zeebe["image"] == "camunda/zeebe:8.5.8"
    assert zeebe["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"memory": "2Gi"},
    }
    env = {e["name"]: e.get("value") for e in zeebe["env"]}
    assert env["ZEEBE_BROKER_CLUSTER_INITIALCONTACTPOINTS"].count(":26502") == 3
    assert spec["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert spec["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    # the selector never contains anything that changes with the spec
    assert set(spec["selector"]["matchLabels"]) == {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
    }


def test_broker_config_carries_the_cluster_shape_and_the_exporter_topic() -> None:
    hub, (engine, _) = _site()
    config = em.broker_config(engine, hub)["zeebe"]["broker"]
    assert config["cluster"]["partitionsCount"] == 3
    assert config["cluster"]["replicationFactor"] == 3
    kafka = config["exporters"]["kafka"]["args"]
    assert kafka["records"]["defaults"]["topic"] == "zeebe-engine-a"
    assert kafka["producer"]["servers"] == "kafka-0.kafka.svc:9092,kafka-1.kafka.svc:9092"


def test_a_config_change_changes_the_pod_template_hash() -> None:
    hub, (engine, _) = _site()
    before = em.stateful_set(engine, hub)["spec"]["template"]["metadata"]["annotations"]
    bigger = engine.model_copy(
        update={
            "spec": engine.spec.model_copy(
                update={"zeebe": engine.spec.zeebe.model_copy(update={"partitions": 6})}
            )
        }
    )
    after = em.stateful_set(bigger, hub)["spec"]["template"]["metadata"]["annotations"]
    assert before[ANNOTATION_CONFIG_HASH] != after[ANNOTATION_CONFIG_HASH]
    same = em.stateful_set(engine, hub)["spec"]["template"]["metadata"]["annotations"]
    assert before == same


def test_ephemeral_storage_uses_empty_dir_and_no_claims() -> None:
    hub, (engine, _) = _site()
    eph = engine.model_copy(
        update={
            "spec": engine.spec.model_copy(
                update={
                    "zeebe": engine.spec.zeebe.model_copy(
                        update={
                            "storage": engine.spec.zeebe.storage.model_copy(
                                update={"type": "ephemeral"}
                            )
                        }
                    )
                }
            )
        }
    )
    spec = em.stateful_set(eph, hub)["spec"]
    assert "volumeClaimTemplates" not in spec
    assert {"name": "data", "emptyDir": {}} in spec["template"]["spec"]["volumes"]


def test_workers_point_at_their_gateway_and_the_hub_router() -> None:
    hub, (engine, _) = _site()
    dep = em.workers_deployment(engine, hub)
    env = {
        e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["PHEE_ENGINE_GATEWAY"] == "engine-a-zeebe-gateway.payments.svc:26500"
    assert env["PHEE_ENGINE_ROUTER_URL"] == "http://acme-router.payments.svc:8443"
    assert env["PHEE_ENGINE_SLOT"] == "1"
    assert env["PHEE_ENGINE_FSP_ID"] == "acmebank"
    assert dep["spec"]["replicas"] == 2


def test_registry_lists_engines_with_their_traffic_state() -> None:
    hub, (a, b) = _site()
    draining = b.model_copy(
        update={"spec": b.spec.model_copy(update={"traffic_state": "draining"})}
    )
    views = [hm.EngineView(a, ready=True), hm.EngineView(draining, ready=True)]
    cm = hm.registry_config_map(hub, views)
    reg = contract.EngineRegistry.model_validate_json(cm["data"][hm.REGISTRY_KEY])
    assert [(e.name, e.slot, e.state) for e in reg.engines] == [
        ("engine-a", 1, contract.EngineState.ACCEPTING),
        ("engine-b", 2, contract.EngineState.DRAINING),
    ]
    not_ready = hm.registry([hm.EngineView(a, ready=False)])
    assert not_ready.engines[0].state == contract.EngineState.DOWN


def test_hub_children_mount_the_registry_as_a_directory() -> None:
    hub, engines = _site()
    children = hm.hub_children(hub, [hm.EngineView(e, True) for e in engines])
    names = [(c["kind"], c["metadata"]["name"]) for c in children]
    assert names[0] == ("ConfigMap", "acme-engine-registry")
    assert ("Deployment", "acme-router") in names
    assert ("Deployment", "acme-backoffice-importer") in names
    assert ("Deployment", "acme-backoffice-api") in names
    router = next(
        c for c in children if c["metadata"]["name"] == "acme-router" and c["kind"] == "Deployment"
    )
    mounts = router["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    registry_mount = next(m for m in mounts if m["name"] == "registry")
    assert "subPath" not in registry_mount  # a subPath mount never sees ConfigMap updates
    assert router["spec"]["replicas"] == 2


def test_refusals_name_the_problem() -> None:
    hub, (a, b) = _site()
    assert refusal_of(a, None, [a, b]) is not None
    assert "does not exist" in (refusal_of(a, None, []) or "")
    assert refusal_of(a, hub, [a, b]) is None
    clash = b.model_copy(
        update={
            "spec": b.spec.model_copy(update={"slot": 1}),
            "meta": b.meta.model_copy(update={"created": "2026-11-21T11:00:00Z"}),
        }
    )
    message = refusal_of(clash, hub, [a, clash]) or ""
    assert "slot 1 is already used by engine 'engine-a'" in message
    # the older engine keeps its slot
    assert refusal_of(a, hub, [a, clash]) is None
