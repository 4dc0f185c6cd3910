"""Pure builders: a PaymentHub (with its engines) -> the router, back office and engine registry.

The registry ConfigMap is the router's and the importer's view of the site (which engines exist,
where their REST APIs are, whether they take new work). It is mounted as a directory, not with
subPath, so the kubelet refreshes the file in place and both re-read it without a restart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from phee import contract
from phee_operator import cdc_manifests as cdc
from phee_operator.common import (
    FSPIOP_SCHEMAS_DIR,
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
from phee_operator.engine_manifests import CHANNEL_PORT, engine_url
from phee_operator.model import SECRET_KEY_AUDIT, SECRET_KEY_ROUTER_ADMIN, Engine, Hub

KIND = "PaymentHub"
REGISTRY_DIR = "/etc/phee/registry"
REGISTRY_KEY = "registry.json"
API_PORT = 8080
IMPORTER_METRICS_PORT = 9100


@dataclass(frozen=True)
class EngineView:
    """An engine as the registry needs it: its spec and whether it is Ready right now."""

    engine: Engine
    ready: bool


def registry_name(hub: Hub) -> str:
    return f"{hub.meta.name}-engine-registry"


def engine_state(view: EngineView) -> contract.EngineState:
    """Draining is the SRE's (or an upgrade's) decision; an engine that is not Ready is down."""
    if view.engine.spec.traffic_state == "draining":
        return contract.EngineState.DRAINING
    return contract.EngineState.ACCEPTING if view.ready else contract.EngineState.DOWN


def registry(views: list[EngineView]) -> contract.EngineRegistry:
    ordered = sorted(views, key=lambda v: v.engine.spec.slot)
    return contract.EngineRegistry(
        engines=[
            contract.EngineInfo(
                name=v.engine.meta.name,
                slot=v.engine.spec.slot,
                engine_url=engine_url(v.engine),
                channel_url=(
                    f"http://{v.engine.meta.name}-channel.{v.engine.meta.namespace}.svc:"
                    f"{CHANNEL_PORT}"
                ),
                state=engine_state(v),
            )
            for v in ordered
        ]
    )


def registry_config_map(hub: Hub, views: list[EngineView]) -> Manifest:
    body = registry(views).model_dump(mode="json")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(
            registry_name(hub),
            KIND,
            hub.meta,
            labels(hub=hub.meta.name, component="registry", name="phee-registry"),
        ),
        "data": {REGISTRY_KEY: json.dumps(body, indent=2, sort_keys=True)},
    }


def _database_url(name: str, secret: str) -> dict[str, Any]:
    return secret_env(name, secret, "url")


def _deployment(
    hub: Hub,
    name: str,
    component: str,
    replicas: int,
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
) -> Manifest:
    lbl = labels(hub=hub.meta.name, component=component, name=f"phee-{component}")
    container = {
        "image": hub.spec.image,
        "securityContext": restricted_security(),
        **container,
    }
    return deployment(name, KIND, hub.meta, lbl, replicas, [container], volumes)


def _registry_volume(hub: Hub) -> dict[str, Any]:
    return {"name": "registry", "configMap": {"name": registry_name(hub)}}


def router(hub: Hub) -> list[Manifest]:
    r = hub.spec.router
    certs = hub.spec.certificates
    env: list[dict[str, Any]] = [
        {"name": "PHEE_HOST", "value": "0.0.0.0"},  # noqa: S104 - pod network
        {"name": "PHEE_PORT", "value": str(r.port)},
        {"name": "PHEE_ROUTER_FSP_ID", "value": hub.spec.dfsp_id},
        {"name": "PHEE_ROUTER_TENANT", "value": hub.spec.tenants[0].name},
        {"name": "PHEE_ROUTER_REGISTRY_FILE", "value": f"{REGISTRY_DIR}/{REGISTRY_KEY}"},
        {"name": "PHEE_ROUTER_SWITCH_URL", "value": hub.spec.switch.url},
        secret_env("PHEE_ROUTER_ADMIN_TOKEN", hub.secret_name, SECRET_KEY_ROUTER_ADMIN),
        {"name": "PHEE_FSPIOP_SCHEMAS_DIR", "value": FSPIOP_SCHEMAS_DIR},
    ]
    volumes = [_registry_volume(hub), {"name": "state", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [
        {"name": "registry", "mountPath": REGISTRY_DIR, "readOnly": True},
        {"name": "state", "mountPath": "/var/lib/phee"},
    ]
    if r.database_secret_name:
        env.append(_database_url("PHEE_ROUTER_DATABASE_URL", r.database_secret_name))
    else:
        env.append(
            {"name": "PHEE_ROUTER_DATABASE_URL", "value": "sqlite:////var/lib/phee/router.db"}
        )
    if certs.peer_jws_secret_name:
        volumes.append(secret_volume("peer-jws", certs.peer_jws_secret_name))
        mounts.append({"name": "peer-jws", "mountPath": "/etc/phee/peer-jws", "readOnly": True})
        env.append({"name": "PHEE_ROUTER_JWS_KEYS_DIR", "value": "/etc/phee/peer-jws"})
    if certs.router_tls_secret_name:
        volumes.append(secret_volume("router-tls", certs.router_tls_secret_name))
        mounts.append({"name": "router-tls", "mountPath": "/etc/phee/tls", "readOnly": True})
    container = {
        "name": "router",
        "command": ["python", "-m", "callback_router"],
        "env": env,
        "ports": [{"name": "fspiop", "containerPort": r.port}],
        "readinessProbe": http_probe("/readyz", "fspiop"),
        "livenessProbe": http_probe("/healthz", "fspiop", period=10, failures=6),
        "resources": r.resources.as_dict(),
        "volumeMounts": mounts,
    }
    name = f"{hub.meta.name}-router"
    deployment = _deployment(hub, name, "router", r.replicas, container, volumes)
    lbl = deployment["metadata"]["labels"]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, KIND, hub.meta, lbl),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(lbl),
            "ports": [{"name": "fspiop", "port": r.port, "targetPort": "fspiop"}],
        },
    }
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(name, KIND, hub.meta, lbl),
        # The router is the DFSP's only FSPIOP endpoint: a drain never takes every replica.
        "spec": {"minAvailable": 1, "selector": {"matchLabels": selector(lbl)}},
    }
    return [deployment, service, budget]


def _backoffice_env(hub: Hub) -> list[dict[str, Any]]:
    b = hub.spec.back_office
    env: list[dict[str, Any]] = [
        _database_url("PHEE_BACKOFFICE_DATABASE_URL", b.database_secret_name),
        secret_env("PHEE_BACKOFFICE_AUDIT_KEY", hub.secret_name, SECRET_KEY_AUDIT),
        {
            "name": "PHEE_BACKOFFICE_TENANTS",
            "value": json.dumps([t.name for t in hub.spec.tenants]),
        },
        {"name": "PHEE_BACKOFFICE_KAFKA_BOOTSTRAP", "value": hub.spec.kafka.bootstrap_servers},
        {"name": "PHEE_BACKOFFICE_REGISTRY_FILE", "value": f"{REGISTRY_DIR}/{REGISTRY_KEY}"},
    ]
    if b.opensearch_url:
        env.append({"name": "PHEE_BACKOFFICE_OPENSEARCH_URL", "value": b.opensearch_url})
    return env


def back_office(hub: Hub) -> list[Manifest]:
    b = hub.spec.back_office
    mounts = [{"name": "registry", "mountPath": REGISTRY_DIR, "readOnly": True}]
    importer = _deployment(
        hub,
        f"{hub.meta.name}-backoffice-importer",
        "importer",
        b.importer_replicas,
        {
            "name": "importer",
            "command": ["python", "-m", "backoffice", "importer"],
            "env": [
                *_backoffice_env(hub),
                # the importer serves /healthz, /readyz and /metrics
                {"name": "PHEE_HOST", "value": "0.0.0.0"},  # noqa: S104 - pod network
                {"name": "PHEE_PORT", "value": str(IMPORTER_METRICS_PORT)},
            ],
            "ports": [{"name": "metrics", "containerPort": IMPORTER_METRICS_PORT}],
            "resources": b.resources.as_dict(),
            "volumeMounts": mounts,
        },
        [_registry_volume(hub)],
    )
    api_name = f"{hub.meta.name}-backoffice-api"
    api = _deployment(
        hub,
        api_name,
        "operations-api",
        b.api_replicas,
        {
            "name": "api",
            "command": ["python", "-m", "backoffice", "api"],
            "env": [
                *_backoffice_env(hub),
                {"name": "PHEE_HOST", "value": "0.0.0.0"},  # noqa: S104 - pod network
                {"name": "PHEE_PORT", "value": str(API_PORT)},
            ],
            "ports": [{"name": "http", "containerPort": API_PORT}],
            "readinessProbe": http_probe("/readyz", "http"),
            "resources": b.resources.as_dict(),
            "volumeMounts": mounts,
        },
        [_registry_volume(hub)],
    )
    lbl = api["metadata"]["labels"]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(api_name, KIND, hub.meta, lbl),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(lbl),
            "ports": [{"name": "http", "port": API_PORT, "targetPort": "http"}],
        },
    }
    return [importer, api, service]


def engine_dependent(hub: Hub, views: list[EngineView]) -> list[Manifest]:
    """The hub's objects that change with its engines: the registry, and Kafka Connect (it
    mounts every engine's database password). Applied whenever an engine changes."""
    return [registry_config_map(hub, views), *cdc.connect(hub, [v.engine for v in views])]


def hub_children(hub: Hub, views: list[EngineView]) -> list[Manifest]:
    """Every object the hub needs, in apply order (the registry before its readers)."""
    return [*engine_dependent(hub, views), *router(hub), *back_office(hub)]
