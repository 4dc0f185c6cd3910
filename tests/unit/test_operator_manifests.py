"""The operator's pure parts: spec parsing against the CRDs, builders, registry, refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from phee_operator import cdc_manifests as cdc
from phee_operator import database_manifests as dbm
from phee_operator import engine_manifests as em
from phee_operator import hub_manifests as hm
from phee_operator.common import key_of
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
        ("paymentengine", EngineSpec, {"hubRef": "h", "slot": 1, "version": "1.0.3"}),
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
    names = sorted((c["kind"], c["metadata"]["name"]) for c in children)
    assert names == sorted(
        [
            ("ConfigMap", "engine-a-db-init"),
            ("ConfigMap", "engine-a-cdc"),
            ("Service", "engine-a-db"),
            ("Service", "engine-a-operaton"),
            ("Service", "engine-a-channel"),
            ("StatefulSet", "engine-a-db"),
            ("Deployment", "engine-a-operaton"),
            ("Deployment", "engine-a-workers"),
            ("PodDisruptionBudget", "engine-a-operaton"),
            ("NetworkPolicy", "engine-a-operaton"),
            ("NetworkPolicy", "engine-a-db"),
            ("ServiceMonitor", "engine-a"),
        ]
    )
    assert len({key_of(c) for c in children}) == len(children)
    for child in [*children, dbm.credentials_secret(engine, "pw")]:
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
    # nothing the operator applies again and again carries a password
    assert "Secret" not in {c["kind"] for c in children}


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def _secret_ref(var: dict[str, Any]) -> tuple[str, str]:
    ref = var["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def test_database_is_one_postgres_with_logical_decoding_and_a_claim() -> None:
    _, (engine, _) = _site()
    sts = dbm.stateful_set(engine)
    spec = sts["spec"]
    assert sts["metadata"]["name"] == "engine-a-db"
    assert spec["replicas"] == 1
    assert spec["serviceName"] == "engine-a-db"
    assert spec["updateStrategy"] == {"type": "OnDelete"}
    (pg,) = spec["template"]["spec"]["containers"]
    assert pg["image"] == "postgres:15"
    args = " ".join(pg["args"])
    assert "-c wal_level=logical" in args
    assert "-c max_replication_slots=4" in args
    assert "-c max_wal_senders=4" in args
    assert pg["readinessProbe"]["exec"]["command"][0] == "pg_isready"
    assert pg["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}}
    env = _env(pg)
    assert _secret_ref(env["POSTGRES_PASSWORD"]) == ("engine-a-db", "password")
    assert _secret_ref(env["POSTGRES_USER"]) == ("engine-a-db", "username")
    assert env["POSTGRES_DB"]["value"] == "engine"
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert "storageClassName" not in claim["spec"]
    assert spec["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    # the workers' database is created next to the engine's on first start
    init = dbm.init_config_map(engine)
    assert "CREATE DATABASE payments" in next(iter(init["data"].values()))
    svc = dbm.service(engine)
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["ports"][0]["port"] == 5432
    # the selector never contains anything that changes with the spec
    assert set(spec["selector"]["matchLabels"]) == {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
    }


def _with_database(engine: Engine, **storage: Any) -> Engine:
    d = engine.spec.database
    database = d.model_copy(update={"storage": d.storage.model_copy(update=storage)})
    return engine.model_copy(update={"spec": engine.spec.model_copy(update={"database": database})})


def test_storage_class_and_ephemeral_storage() -> None:
    _, (engine, _) = _site()
    fast = dbm.stateful_set(_with_database(engine, storage_class_name="fast-ssd"))["spec"]
    assert fast["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "fast-ssd"
    eph = dbm.stateful_set(_with_database(engine, type="ephemeral"))["spec"]
    assert "volumeClaimTemplates" not in eph
    assert {"name": "data", "emptyDir": {}} in eph["template"]["spec"]["volumes"]


def test_credentials_secret_holds_the_password_it_is_given() -> None:
    _, (engine, _) = _site()
    secret = dbm.credentials_secret(engine, "s3cret-value")
    assert secret["metadata"]["name"] == "engine-a-db"
    assert secret["stringData"] == {"username": "engine", "password": "s3cret-value"}


def test_operaton_nodes_use_the_database_and_roll_as_a_deployment() -> None:
    _, (engine, _) = _site()
    dep = em.operaton_deployment(engine)
    assert dep["metadata"]["name"] == "engine-a-operaton"
    spec = dep["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pod = spec["template"]["spec"]
    (node,) = pod["containers"]
    assert node["image"] == "ghcr.io/phee/engine:1.0.3"
    env = _env(node)
    assert env["SPRING_DATASOURCE_URL"]["value"] == (
        "jdbc:postgresql://engine-a-db.payments.svc:5432/engine"
    )
    assert _secret_ref(env["SPRING_DATASOURCE_USERNAME"]) == ("engine-a-db", "username")
    assert _secret_ref(env["SPRING_DATASOURCE_PASSWORD"]) == ("engine-a-db", "password")
    assert env["SERVER_PORT"]["value"] == "8080"
    assert env["JAVA_TOOL_OPTIONS"]["value"] == "-Xmx384m -XX:+UseSerialGC"
    assert node["readinessProbe"]["httpGet"]["path"] == "/actuator/health/readiness"
    assert node["livenessProbe"]["httpGet"]["path"] == "/actuator/health/liveness"
    assert pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    rest, _channel = em.services(engine)
    assert rest["metadata"]["name"] == "engine-a-operaton"
    assert rest["spec"]["ports"] == [{"name": "rest", "port": 8080, "targetPort": "http"}]
    assert em.engine_url(engine) == "http://engine-a-operaton.payments.svc:8080/engine-rest"


def test_disruption_budget_keeps_a_node_only_when_there_are_several() -> None:
    _, (engine, _) = _site()
    assert em.disruption_budget(engine)["spec"]["minAvailable"] == 1
    one = engine.model_copy(
        update={
            "spec": engine.spec.model_copy(
                update={"engine": engine.spec.engine.model_copy(update={"nodes": 1})}
            )
        }
    )
    budget = em.disruption_budget(one)["spec"]
    assert "minAvailable" not in budget
    assert budget["maxUnavailable"] == 1


def test_a_version_change_rolls_the_engine_nodes_and_leaves_the_database() -> None:
    hub, (engine, _) = _site()
    newer = engine.model_copy(update={"spec": engine.spec.model_copy(update={"version": "1.1.0"})})
    before = em.engine_children(engine, hub, service_monitors=False)
    after = em.engine_children(newer, hub, service_monitors=False)
    changed = sorted(
        (a["kind"], a["metadata"]["name"]) for a, b in zip(before, after, strict=True) if a != b
    )
    assert changed == [("Deployment", "engine-a-operaton")]
    (node,) = em.operaton_deployment(newer)["spec"]["template"]["spec"]["containers"]
    assert node["image"] == "ghcr.io/phee/engine:1.1.0"


def test_workers_point_at_their_engine_and_their_database() -> None:
    hub, (engine, _) = _site()
    dep = em.workers_deployment(engine, hub)
    env = _env(dep["spec"]["template"]["spec"]["containers"][0])
    values = {k: v.get("value") for k, v in env.items()}
    assert values["PHEE_ENGINE_ENGINE_URL"] == (
        "http://engine-a-operaton.payments.svc:8080/engine-rest"
    )
    assert values["PHEE_ENGINE_STORE_URL"] == (
        "postgresql+psycopg://engine@engine-a-db.payments.svc:5432/payments"
    )
    assert _secret_ref(env["PHEE_ENGINE_STORE_PASSWORD"]) == ("engine-a-db", "password")
    assert "PHEE_ENGINE_GATEWAY" not in env
    assert "PHEE_ENGINE_JOB_STREAMING" not in env
    assert values["PHEE_ENGINE_ROUTER_URL"] == "http://acme-router.payments.svc:8443"
    assert values["PHEE_ENGINE_SLOT"] == "1"
    assert values["PHEE_ENGINE_FSP_ID"] == "acmebank"
    assert dep["spec"]["replicas"] == 2


def test_connector_config_streams_the_history_tables_of_the_engine_database() -> None:
    _, (engine, _) = _site()
    cm = cdc.connector_config_map(engine)
    assert cm["metadata"]["name"] == "engine-a-cdc"
    assert cm["data"]["name"] == "engine-a-cdc"
    config = json.loads(cm["data"]["config.json"])
    assert config == cdc.connector_config(engine)
    assert config["connector.class"] == "io.debezium.connector.postgresql.PostgresConnector"
    assert config["plugin.name"] == "pgoutput"
    assert config["database.hostname"] == "engine-a-db.payments.svc"
    assert config["database.dbname"] == "engine"
    assert config["topic.prefix"] == "engine-a"
    assert config["slot.name"] == config["publication.name"] == "engine_a"
    assert config["table.include.list"] == "public.act_hi_.*"
    assert config["value.converter"] == "org.apache.kafka.connect.json.JsonConverter"
    assert config["value.converter.schemas.enable"] == "false"
    assert config["key.converter.schemas.enable"] == "false"
    # a reference Connect resolves from the mounted Secret, never the password itself
    assert config["database.password"] == "${dir:/etc/phee/engine-db/engine-a:password}"
    assert all(isinstance(v, str) for v in config.values())


def test_hub_connect_mounts_every_engine_password_where_the_connectors_look() -> None:
    hub, engines = _site()
    dep, svc = cdc.connect(hub, engines)
    assert dep["metadata"]["name"] == "acme-connect"
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/phee/connect:3.6.1"
    env = {k: v.get("value") for k, v in _env(container).items()}
    assert env["BOOTSTRAP_SERVERS"] == "kafka-0.kafka.svc:9092,kafka-1.kafka.svc:9092"
    assert env["GROUP_ID"] == "acme-connect"
    (projected,) = [v for v in pod["volumes"] if "projected" in v]
    paths = [s["secret"]["items"][0]["path"] for s in projected["projected"]["sources"]]
    assert paths == ["engine-a/password", "engine-b/password"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == projected["name"])
    assert mount["mountPath"] == cdc.SECRETS_DIR
    assert svc["spec"]["ports"][0]["port"] == 8083
    assert cdc.connect_url(hub) == "http://acme-connect.payments.svc:8083"


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
    assert reg.engines[0].engine_url == "http://engine-a-operaton.payments.svc:8080/engine-rest"
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
    assert ("Deployment", "acme-connect") in names
    assert ("Service", "acme-connect") in names
    # what an engine change re-applies: the registry and Connect (it mounts engine passwords)
    dependent = hm.engine_dependent(hub, [hm.EngineView(e, True) for e in engines])
    assert [(c["kind"], c["metadata"]["name"]) for c in dependent] == [
        ("ConfigMap", "acme-engine-registry"),
        ("Deployment", "acme-connect"),
        ("Service", "acme-connect"),
    ]
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
