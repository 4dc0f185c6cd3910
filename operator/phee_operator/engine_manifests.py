"""Pure builders: a PaymentEngine (with its hub) -> the Kubernetes objects that run it.

Children: the broker configuration ConfigMap, headless and gateway Services, the broker
StatefulSet (OnDelete: the operator, not the StatefulSet controller, restarts brokers, one at a
time and gated on partition health), the workers Deployment and its channel Service, a
PodDisruptionBudget, a NetworkPolicy, and a ServiceMonitor when the cluster has that CRD.
"""

from __future__ import annotations

import json
from typing import Any

from phee.zeebe_export import kafka_exporter
from phee_operator.common import (
    ANNOTATION_CONFIG_HASH,
    LABEL_ENGINE,
    LABEL_HUB,
    Manifest,
    content_hash,
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
GATEWAY_PORT = 26500
COMMAND_PORT = 26501
INTERNAL_PORT = 26502
MONITORING_PORT = 9600
CHANNEL_PORT = 8080
#: where the phee image keeps the Kafka exporter jar; an init container copies it for Zeebe
EXPORTER_JAR_IN_IMAGE = "/opt/phee/exporters/zeebe-kafka-exporter.jar"
EXPORTER_DIR = "/usr/local/zeebe/exporters"
CONFIG_DIR = "/usr/local/zeebe/config-phee"
DATA_DIR = "/usr/local/zeebe/data"
ZEEBE_UID = 1001


def broker_name(engine: Engine) -> str:
    return f"{engine.meta.name}-zeebe"


def gateway_service(engine: Engine) -> str:
    return f"{engine.meta.name}-zeebe-gateway"


def workers_name(engine: Engine) -> str:
    return f"{engine.meta.name}-workers"


def gateway_address(engine: Engine) -> str:
    return f"{gateway_service(engine)}.{engine.meta.namespace}.svc:{GATEWAY_PORT}"


def broker_labels(engine: Engine) -> dict[str, str]:
    return labels(
        hub=engine.spec.hub_ref, engine=engine.meta.name, component="broker", name="zeebe"
    )


def workers_labels(engine: Engine) -> dict[str, str]:
    return labels(
        hub=engine.spec.hub_ref, engine=engine.meta.name, component="workers", name="phee-workers"
    )


def broker_config(engine: Engine, hub: Hub) -> dict[str, Any]:
    """The broker's application.yaml (as data): cluster shape, threads and the Kafka exporter.

    Node id, advertised host and contact points depend on the pod and come from its environment.
    """
    z = engine.spec.zeebe
    return {
        "zeebe": {
            "broker": {
                "gateway": {"enable": True, "network": {"port": GATEWAY_PORT}},
                "network": {
                    "host": "0.0.0.0",  # noqa: S104 - inside the pod; the NetworkPolicy limits it
                    "commandApi": {"port": COMMAND_PORT},
                    "internalApi": {"port": INTERNAL_PORT},
                },
                "data": {"directory": DATA_DIR},
                "cluster": {
                    "clusterName": engine.meta.name,
                    "clusterSize": z.cluster_size,
                    "partitionsCount": z.partitions,
                    "replicationFactor": z.replication_factor,
                },
                "threads": {"cpuThreadCount": z.cpu_threads, "ioThreadCount": z.io_threads},
                "exporters": {
                    "kafka": kafka_exporter(
                        f"{EXPORTER_DIR}/zeebe-kafka-exporter.jar",
                        hub.spec.kafka.bootstrap_servers,
                        client_id=f"zeebe-{engine.meta.name}",
                        topic=engine.topic,
                        max_batch_size=z.exporter.max_batch_size,
                        flush_interval_ms=z.exporter.flush_interval_ms,
                    )
                },
            }
        },
        "management": {"server": {"port": MONITORING_PORT}},
    }


def config_map(engine: Engine, hub: Hub) -> Manifest:
    data = {"application.yaml": json.dumps(broker_config(engine, hub), indent=2, sort_keys=True)}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(
            f"{broker_name(engine)}-config", KIND, engine.meta, broker_labels(engine)
        ),
        "data": data,
    }


def _contact_points(engine: Engine) -> str:
    name, ns = broker_name(engine), engine.meta.namespace
    return ",".join(
        f"{name}-{i}.{name}.{ns}.svc:{INTERNAL_PORT}" for i in range(engine.spec.zeebe.cluster_size)
    )


def _broker_ports() -> list[dict[str, Any]]:
    return [
        {"name": "gateway", "containerPort": GATEWAY_PORT},
        {"name": "command", "containerPort": COMMAND_PORT},
        {"name": "internal", "containerPort": INTERNAL_PORT},
        {"name": "monitoring", "containerPort": MONITORING_PORT},
    ]


def _data_volume(engine: Engine) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pod volumes, volume claim templates) for the broker data directory."""
    storage = engine.spec.zeebe.storage
    if storage.type == "ephemeral":
        return [{"name": "data", "emptyDir": {}}], []
    claim: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "labels": broker_labels(engine)},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": storage.size}},
        },
    }
    if storage.storage_class_name:
        claim["spec"]["storageClassName"] = storage.storage_class_name
    return [], [claim]


def stateful_set(engine: Engine, hub: Hub) -> Manifest:
    z = engine.spec.zeebe
    lbl = broker_labels(engine)
    name = broker_name(engine)
    volumes, claims = _data_volume(engine)
    volumes += [
        {"name": "config", "configMap": {"name": f"{name}-config"}},
        {"name": "exporters", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
    ]
    container: dict[str, Any] = {
        "name": "zeebe",
        "image": f"{engine.spec.image}:{engine.spec.version}",
        # The node id is the pod ordinal: stable across restarts, which Zeebe requires.
        "command": [
            "sh",
            "-c",
            'export ZEEBE_BROKER_CLUSTER_NODEID="${K8S_NAME##*-}"; '
            "exec /usr/local/zeebe/bin/broker",
        ],
        "env": [
            {"name": "K8S_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "ZEEBE_BROKER_NETWORK_ADVERTISEDHOST",
                "value": f"$(K8S_NAME).{name}.{engine.meta.namespace}.svc",
            },
            {"name": "ZEEBE_BROKER_CLUSTER_INITIALCONTACTPOINTS", "value": _contact_points(engine)},
            {"name": "SPRING_CONFIG_ADDITIONALLOCATION", "value": f"{CONFIG_DIR}/application.yaml"},
            {"name": "JAVA_TOOL_OPTIONS", "value": z.java_opts},
        ],
        "ports": _broker_ports(),
        # Ready means the broker joined and its partitions are healthy, not just "JVM is up".
        "readinessProbe": http_probe("/actuator/health/readiness", "monitoring", period=10),
        "resources": z.resources.as_dict(),
        "securityContext": restricted_security(),
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "exporters", "mountPath": EXPORTER_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the JVM's scratch space
        ],
    }
    init = {
        "name": "exporter",
        "image": hub.spec.image,
        "command": ["cp", EXPORTER_JAR_IN_IMAGE, f"{EXPORTER_DIR}/"],
        "securityContext": restricted_security(),
        "volumeMounts": [{"name": "exporters", "mountPath": EXPORTER_DIR}],
    }
    spec: dict[str, Any] = {
        "replicas": z.cluster_size,
        "serviceName": name,
        # Brokers must all start to form the cluster; ordered start would deadlock on quorum.
        "podManagementPolicy": "Parallel",
        "updateStrategy": {"type": "OnDelete"},
        "selector": {"matchLabels": selector(lbl)},
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
        "template": {
            "metadata": {
                "labels": lbl,
                "annotations": {ANNOTATION_CONFIG_HASH: content_hash(broker_config(engine, hub))},
            },
            "spec": {
                "terminationGracePeriodSeconds": 60,
                "securityContext": {
                    "runAsUser": ZEEBE_UID,
                    "runAsGroup": ZEEBE_UID,
                    "fsGroup": ZEEBE_UID,
                    "runAsNonRoot": True,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "affinity": _spread(lbl),
                "initContainers": [init],
                "containers": [container],
                "volumes": volumes,
            },
        },
    }
    if claims:
        spec["volumeClaimTemplates"] = claims
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(name, KIND, engine.meta, lbl),
        "spec": spec,
    }


def _spread(lbl: dict[str, str]) -> dict[str, Any]:
    """Prefer one broker per node: losing a node then costs one replica of each partition."""
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": selector(lbl)},
                    },
                }
            ]
        }
    }


def services(engine: Engine) -> list[Manifest]:
    lbl = broker_labels(engine)
    name = broker_name(engine)
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, KIND, engine.meta, lbl),
        "spec": {
            "clusterIP": "None",
            # Brokers find each other before they are ready (they cannot be ready alone).
            "publishNotReadyAddresses": True,
            "selector": selector(lbl),
            "ports": [
                {"name": "command", "port": COMMAND_PORT, "targetPort": "command"},
                {"name": "internal", "port": INTERNAL_PORT, "targetPort": "internal"},
                {"name": "monitoring", "port": MONITORING_PORT, "targetPort": "monitoring"},
            ],
        },
    }
    gateway = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(gateway_service(engine), KIND, engine.meta, lbl),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(lbl),
            "ports": [
                {
                    "name": "gateway",
                    "port": GATEWAY_PORT,
                    "targetPort": "gateway",
                    "appProtocol": "grpc",
                },
            ],
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
    return [headless, gateway, channel]


def workers_deployment(engine: Engine, hub: Hub) -> Manifest:
    w = engine.spec.workers
    lbl = workers_labels(engine)
    certs = hub.spec.certificates
    env: list[dict[str, Any]] = [
        {"name": "PHEE_HOST", "value": "0.0.0.0"},  # noqa: S104 - pod network
        {"name": "PHEE_PORT", "value": str(CHANNEL_PORT)},
        {"name": "PHEE_ENGINE_NAME", "value": engine.meta.name},
        {"name": "PHEE_ENGINE_SLOT", "value": str(engine.spec.slot)},
        {"name": "PHEE_ENGINE_GATEWAY", "value": gateway_address(engine)},
        {"name": "PHEE_ENGINE_FSP_ID", "value": hub.spec.dfsp_id},
        {"name": "PHEE_ENGINE_SWITCH_URL", "value": hub.spec.switch.url},
        {"name": "PHEE_ENGINE_ROUTER_URL", "value": router_url(hub)},
        {"name": "PHEE_ENGINE_FSPIOP_VERSION", "value": hub.spec.switch.fspiop_version},
        {"name": "PHEE_ENGINE_MAX_JOBS", "value": str(w.max_jobs)},
        {"name": "PHEE_ENGINE_STORE_URL", "value": "sqlite:////var/lib/phee/engine.db"},
        secret_env("PHEE_ENGINE_ILP_SECRET", hub.secret_name, SECRET_KEY_ILP),
        secret_env("PHEE_ENGINE_ROUTER_ADMIN_TOKEN", hub.secret_name, SECRET_KEY_ROUTER_ADMIN),
    ]
    if hub.spec.ams_url:
        env.append({"name": "PHEE_ENGINE_AMS_URL", "value": hub.spec.ams_url})
    volumes: list[dict[str, Any]] = [{"name": "state", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "state", "mountPath": "/var/lib/phee"}]
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
        "volumeMounts": mounts,
    }
    # SIGTERM: the workers finish in-flight jobs and requests first (engine_workers.__main__)
    return deployment(
        workers_name(engine), KIND, engine.meta, lbl, w.replicas, [container], volumes
    )


def router_url(hub: Hub) -> str:
    return f"http://{hub.meta.name}-router.{hub.meta.namespace}.svc:{hub.spec.router.port}"


def disruption_budget(engine: Engine) -> Manifest:
    lbl = broker_labels(engine)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(broker_name(engine), KIND, engine.meta, lbl),
        # One broker at a time: with replication factor 3 a partition keeps its quorum.
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(lbl)}},
    }


def network_policy(engine: Engine) -> Manifest:
    """Brokers accept their cluster peers, their engine's workers, the hub's router (gateway
    only), and monitoring scrapes from the operator and Prometheus."""
    lbl = broker_labels(engine)
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

    def port(n: int) -> dict[str, Any]:
        return {"protocol": "TCP", "port": n}

    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(broker_name(engine), KIND, engine.meta, lbl),
        "spec": {
            "podSelector": {"matchLabels": selector(lbl)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [same_engine],
                    "ports": [
                        port(GATEWAY_PORT),
                        port(COMMAND_PORT),
                        port(INTERNAL_PORT),
                        port(MONITORING_PORT),
                    ],
                },
                {"from": [router], "ports": [port(GATEWAY_PORT)]},
                {"from": [monitors], "ports": [port(MONITORING_PORT)]},
            ],
        },
    }


def service_monitor(engine: Engine) -> Manifest:
    lbl = labels(
        hub=engine.spec.hub_ref, engine=engine.meta.name, component="monitoring", name="zeebe"
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
                {"port": "monitoring", "path": "/actuator/prometheus", "interval": "30s"},
                {"port": "http", "path": "/metrics", "interval": "30s"},
            ],
        },
    }


def engine_children(engine: Engine, hub: Hub, *, service_monitors: bool) -> list[Manifest]:
    """Every object the engine needs, in apply order."""
    out = [
        config_map(engine, hub),
        *services(engine),
        stateful_set(engine, hub),
        workers_deployment(engine, hub),
        disruption_budget(engine),
        network_policy(engine),
    ]
    if service_monitors:
        out.append(service_monitor(engine))
    return out
