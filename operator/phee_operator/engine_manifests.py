"""Pure builders: a PaymentEngine (with its hub) -> the Kubernetes objects that run it.

Children: the engine's PostgreSQL (database_manifests), the Operaton engine Deployment and its
Service, the workers Deployment and its channel Service, a PodDisruptionBudget and a
NetworkPolicy for the engine nodes, the change-data-capture connector's ConfigMap
(cdc_manifests), and a ServiceMonitor when the cluster has that CRD.

Engine nodes are stateless (the engine's state is its database), so they roll like any
Deployment: one new node first, never fewer ready nodes than asked for.
"""

from __future__ import annotations

from typing import Any

from phee_operator import cdc_manifests as cdc
from phee_operator import database_manifests as dbm
from phee_operator.common import (
    LABEL_ENGINE,
    LABEL_HUB,
    Manifest,
    deployment,
    http_probe,
    labels,
    metadata,
    restricted_security,
    secret_env,
    secret_volume,
    selector,
)
from phee_operator.model import SECRET_KEY_ILP, SECRET_KEY_ROUTER_ADMIN, Engine, Hub

KIND = "PaymentEngine"
ENGINE_PORT = 8080
CHANNEL_PORT = 8080
ENGINE_UID = 1000
REST_PATH = "/engine-rest"


def operaton_name(engine: Engine) -> str:
    """The engine Deployment, its Service, PodDisruptionBudget and NetworkPolicy."""
    return f"{engine.meta.name}-operaton"


def workers_name(engine: Engine) -> str:
    return f"{engine.meta.name}-workers"


def engine_url(engine: Engine) -> str:
    """The engine's REST API inside the cluster (Camunda 7 compatible)."""
    return f"http://{operaton_name(engine)}.{engine.meta.namespace}.svc:{ENGINE_PORT}{REST_PATH}"


def image(engine: Engine) -> str:
    return f"{engine.spec.engine.image}:{engine.spec.version}"


def operaton_labels(engine: Engine) -> dict[str, str]:
    return labels(
        hub=engine.spec.hub_ref, engine=engine.meta.name, component="engine", name="operaton"
    )


def workers_labels(engine: Engine) -> dict[str, str]:
    return labels(
        hub=engine.spec.hub_ref, engine=engine.meta.name, component="workers", name="phee-workers"
    )


def _spread(lbl: dict[str, str]) -> dict[str, Any]:
    """Prefer one engine node per Kubernetes node (and per zone): losing one costs one node."""
    term = {"labelSelector": {"matchLabels": selector(lbl)}}
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", **term},
                },
                {
                    "weight": 50,
                    "podAffinityTerm": {"topologyKey": "topology.kubernetes.io/zone", **term},
                },
            ]
        }
    }


def operaton_deployment(engine: Engine) -> Manifest:
    e = engine.spec.engine
    lbl = operaton_labels(engine)
    container: dict[str, Any] = {
        "name": "engine",
        "image": image(engine),
        "env": [
            {"name": "SPRING_DATASOURCE_URL", "value": dbm.jdbc_url(engine)},
            dbm.username_env("SPRING_DATASOURCE_USERNAME", engine),
            dbm.password_env("SPRING_DATASOURCE_PASSWORD", engine),
            {"name": "SERVER_PORT", "value": str(ENGINE_PORT)},
            {"name": "JAVA_TOOL_OPTIONS", "value": e.java_options},
        ],
        "ports": [{"name": "http", "containerPort": ENGINE_PORT}],
        # The JVM and the engine's schema check take a few seconds; liveness waits for startup.
        "startupProbe": http_probe("/actuator/health/liveness", "http", period=5, failures=60),
        "readinessProbe": http_probe("/actuator/health/readiness", "http"),
        "livenessProbe": http_probe("/actuator/health/liveness", "http", period=10, failures=6),
        "resources": e.resources.as_dict(),
        "securityContext": restricted_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - Tomcat's work dir
    }
    dep = deployment(
        operaton_name(engine),
        KIND,
        engine.meta,
        lbl,
        e.nodes,
        [container],
        [{"name": "tmp", "emptyDir": {}}],
    )
    pod = dep["spec"]["template"]["spec"]
    pod["securityContext"] = {"runAsUser": ENGINE_UID, "runAsGroup": ENGINE_UID}
    pod["affinity"] = _spread(lbl)
    return dep


def services(engine: Engine) -> list[Manifest]:
    lbl = operaton_labels(engine)
    rest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(operaton_name(engine), KIND, engine.meta, lbl),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(lbl),
            "ports": [{"name": "rest", "port": ENGINE_PORT, "targetPort": "http"}],
        },
    }
    wl = workers_labels(engine)
    channel = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(f"{engine.meta.name}-channel", KIND, engine.meta, wl),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(wl),
            "ports": [{"name": "http", "port": CHANNEL_PORT, "targetPort": "http"}],
        },
    }
    return [rest, channel]


def workers_deployment(engine: Engine, hub: Hub) -> Manifest:
    w = engine.spec.workers
    lbl = workers_labels(engine)
    certs = hub.spec.certificates
    env: list[dict[str, Any]] = [
        {"name": "PHEE_HOST", "value": "0.0.0.0"},  # noqa: S104 - pod network
        {"name": "PHEE_PORT", "value": str(CHANNEL_PORT)},
        {"name": "PHEE_ENGINE_NAME", "value": engine.meta.name},
        {"name": "PHEE_ENGINE_SLOT", "value": str(engine.spec.slot)},
        {"name": "PHEE_ENGINE_ENGINE_URL", "value": engine_url(engine)},
        {"name": "PHEE_ENGINE_FSP_ID", "value": hub.spec.dfsp_id},
        {"name": "PHEE_ENGINE_SWITCH_URL", "value": hub.spec.switch.url},
        {"name": "PHEE_ENGINE_ROUTER_URL", "value": router_url(hub)},
        {"name": "PHEE_ENGINE_FSPIOP_VERSION", "value": hub.spec.switch.fspiop_version},
        {"name": "PHEE_ENGINE_MAX_JOBS", "value": str(w.max_jobs)},
        # the URL names no password; the settings add PHEE_ENGINE_STORE_PASSWORD to it
        {"name": "PHEE_ENGINE_STORE_URL", "value": dbm.store_url(engine)},
        dbm.password_env("PHEE_ENGINE_STORE_PASSWORD", engine),
        secret_env("PHEE_ENGINE_ILP_SECRET", hub.secret_name, SECRET_KEY_ILP),
        secret_env("PHEE_ENGINE_ROUTER_ADMIN_TOKEN", hub.secret_name, SECRET_KEY_ROUTER_ADMIN),
    ]
    if hub.spec.ams_url:
        env.append({"name": "PHEE_ENGINE_AMS_URL", "value": hub.spec.ams_url})
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if certs.switch_client_tls_secret_name:
        volumes.append(secret_volume("switch-tls", certs.switch_client_tls_secret_name))
        mounts.append({"name": "switch-tls", "mountPath": "/etc/phee/switch-tls", "readOnly": True})
        env += [
            {"name": "PHEE_ENGINE_TLS_CLIENT_CERT", "value": "/etc/phee/switch-tls/tls.crt"},
            {"name": "PHEE_ENGINE_TLS_CLIENT_KEY", "value": "/etc/phee/switch-tls/tls.key"},
            {"name": "PHEE_ENGINE_TLS_CA", "value": "/etc/phee/switch-tls/ca.crt"},
        ]
    if certs.jws_signing_secret_name:
        volumes.append(secret_volume("jws", certs.jws_signing_secret_name))
        mounts.append({"name": "jws", "mountPath": "/etc/phee/jws", "readOnly": True})
        env.append({"name": "PHEE_ENGINE_JWS_PRIVATE_KEY", "value": "/etc/phee/jws/tls.key"})
    container = {
        "name": "workers",
        "image": hub.spec.image,
        "command": ["python", "-m", "engine_workers"],
        "env": env,
        "ports": [{"name": "http", "containerPort": CHANNEL_PORT}],
        "readinessProbe": http_probe("/readyz", "http"),
        "livenessProbe": http_probe("/healthz", "http", period=10, failures=6),
        "resources": w.resources.as_dict(),
        "securityContext": restricted_security(),
        **({"volumeMounts": mounts} if mounts else {}),
    }
    # SIGTERM: the workers finish in-flight tasks and requests first (engine_workers.__main__)
    return deployment(
        workers_name(engine), KIND, engine.meta, lbl, w.replicas, [container], volumes
    )


def router_url(hub: Hub) -> str:
    return f"http://{hub.meta.name}-router.{hub.meta.namespace}.svc:{hub.spec.router.port}"


def disruption_budget(engine: Engine) -> Manifest:
    """Keep one engine node through voluntary disruptions when there is more than one; a single
    node may be evicted (else a node drain would wait for ever)."""
    lbl = operaton_labels(engine)
    budget = {"minAvailable": 1} if engine.spec.engine.nodes > 1 else {"maxUnavailable": 1}
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(operaton_name(engine), KIND, engine.meta, lbl),
        "spec": {**budget, "selector": {"matchLabels": selector(lbl)}},
    }


def network_policy(engine: Engine) -> Manifest:
    """Engine nodes accept their engine's workers, the hub's router (message correlation), and
    monitoring scrapes from the operator and Prometheus, on the REST port only."""
    lbl = operaton_labels(engine)
    same_engine = {"podSelector": {"matchLabels": {LABEL_ENGINE: engine.meta.name}}}
    router = {
        "podSelector": {
            "matchLabels": {LABEL_HUB: engine.spec.hub_ref, "app.kubernetes.io/component": "router"}
        }
    }
    monitors = {
        "namespaceSelector": {},
        "podSelector": {
            "matchExpressions": [
                {
                    "key": "app.kubernetes.io/name",
                    "operator": "In",
                    "values": ["phee-operator", "prometheus"],
                }
            ]
        },
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(operaton_name(engine), KIND, engine.meta, lbl),
        "spec": {
            "podSelector": {"matchLabels": selector(lbl)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [same_engine, router, monitors],
                    "ports": [{"protocol": "TCP", "port": ENGINE_PORT}],
                }
            ],
        },
    }


def service_monitor(engine: Engine) -> Manifest:
    lbl = labels(
        hub=engine.spec.hub_ref, engine=engine.meta.name, component="monitoring", name="operaton"
    )
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata(engine.meta.name, KIND, engine.meta, lbl),
        "spec": {
            "selector": {
                "matchLabels": {LABEL_ENGINE: engine.meta.name, "app.kubernetes.io/part-of": "phee"}
            },
            "endpoints": [
                {"port": "rest", "path": "/actuator/prometheus", "interval": "30s"},
                {"port": "http", "path": "/metrics", "interval": "30s"},
            ],
        },
    }


def engine_children(engine: Engine, hub: Hub, *, service_monitors: bool) -> list[Manifest]:
    """Every object the engine needs, in apply order (the database first: the engine nodes wait
    for it). The database's credentials Secret is not here: it is created once, not applied."""
    out = [
        *dbm.database_children(engine),
        cdc.connector_config_map(engine),
        *services(engine),
        operaton_deployment(engine),
        workers_deployment(engine, hub),
        disruption_budget(engine),
        network_policy(engine),
    ]
    if service_monitors:
        out.append(service_monitor(engine))
    return out
