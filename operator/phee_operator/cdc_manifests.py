"""Pure builders: change data capture from each engine's database into Kafka.

The hub runs one Kafka Connect cluster (distributed mode, group `<hub>-connect`) with the
Debezium PostgreSQL connector; each engine gets one connector, described by a ConfigMap
`<engine>-cdc` (keys `name` and `config.json`) that the reconciler registers with the Connect
REST API (`PUT /connectors/<name>/config`, idempotent).

The connector's database password is never in the ConfigMap nor in Connect's config topic: the
config holds a reference (`${dir:<dir>:password}`) that Kafka's DirectoryConfigProvider resolves
from the engine's credentials Secret, mounted into the Connect pods (docs/decisions/0013).
"""

from __future__ import annotations

import json
from typing import Any

from phee_operator import database_manifests as dbm
from phee_operator.common import (
    Manifest,
    deployment,
    http_probe,
    labels,
    metadata,
    restricted_security,
    selector,
)
from phee_operator.model import Engine, Hub

CONNECT_PORT = 8083
#: where each engine's database password appears in the Connect pods: <dir>/<engine>/password
SECRETS_DIR = "/etc/phee/engine-db"
CONNECT_UID = 1000
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
CONFIG_KEY = "config.json"


def connector_name(engine: Engine) -> str:
    return f"{engine.meta.name}-cdc"


def _pg_identifier(engine: Engine) -> str:
    """Engine names are DNS labels; replication slot and publication names take [a-z0-9_]."""
    return engine.meta.name.replace("-", "_")


def connector_config(engine: Engine) -> dict[str, str]:
    """The Debezium connector's configuration (all values strings, as Connect stores them)."""
    ident = _pg_identifier(engine)
    return {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "tasks.max": "1",
        "plugin.name": "pgoutput",
        "database.hostname": dbm.host(engine),
        "database.port": str(dbm.PORT),
        "database.user": dbm.USER,
        "database.password": f"${{dir:{SECRETS_DIR}/{engine.meta.name}:{dbm.SECRET_KEY_PASSWORD}}}",
        "database.dbname": dbm.ENGINE_DB,
        "topic.prefix": engine.topic_prefix,
        "slot.name": ident,
        "publication.name": ident,
        "publication.autocreate.mode": "filtered",
        "table.include.list": "public.act_hi_.*",
        "key.converter": JSON_CONVERTER,
        "key.converter.schemas.enable": "false",
        "value.converter": JSON_CONVERTER,
        "value.converter.schemas.enable": "false",
    }


def connector_config_map(engine: Engine) -> Manifest:
    lbl = labels(hub=engine.spec.hub_ref, engine=engine.meta.name, component="cdc", name="debezium")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(connector_name(engine), "PaymentEngine", engine.meta, lbl),
        "data": {
            "name": connector_name(engine),
            CONFIG_KEY: json.dumps(connector_config(engine), indent=2, sort_keys=True),
        },
    }


# -- the hub's Kafka Connect cluster -------------------------------------------------------------
def connect_name(hub: Hub) -> str:
    return f"{hub.meta.name}-connect"


def connect_url(hub: Hub) -> str:
    """The Connect REST API inside the cluster."""
    return f"http://{connect_name(hub)}.{hub.meta.namespace}.svc:{CONNECT_PORT}"


def connect_labels(hub: Hub) -> dict[str, str]:
    return labels(hub=hub.meta.name, component="connect", name="kafka-connect")


def _secrets_volume(engines: list[Engine]) -> dict[str, Any]:
    """Every engine's database password at <SECRETS_DIR>/<engine>/password (optional: an engine's
    Secret appears after the hub's Connect pods may have started)."""
    return {
        "name": "engine-db",
        "projected": {
            "defaultMode": 0o440,
            "sources": [
                {
                    "secret": {
                        "name": dbm.secret_name(e),
                        "optional": True,
                        "items": [
                            {
                                "key": dbm.SECRET_KEY_PASSWORD,
                                "path": f"{e.meta.name}/{dbm.SECRET_KEY_PASSWORD}",
                            }
                        ],
                    }
                }
                for e in sorted(engines, key=lambda e: e.meta.name)
            ],
        },
    }


def connect(hub: Hub, engines: list[Engine]) -> list[Manifest]:
    """Kafka Connect in distributed mode: a Deployment and its Service.

    The image follows the environment contract of Debezium's Connect image (BOOTSTRAP_SERVERS,
    GROUP_ID, *_STORAGE_TOPIC, and CONNECT_* for any other worker property).
    """
    c = hub.spec.connect
    name = connect_name(hub)
    lbl = connect_labels(hub)
    env: list[dict[str, Any]] = [
        {"name": "BOOTSTRAP_SERVERS", "value": hub.spec.kafka.bootstrap_servers},
        {"name": "GROUP_ID", "value": name},
        {"name": "CONFIG_STORAGE_TOPIC", "value": f"{name}-configs"},
        {"name": "OFFSET_STORAGE_TOPIC", "value": f"{name}-offsets"},
        {"name": "STATUS_STORAGE_TOPIC", "value": f"{name}-status"},
        {"name": "REST_PORT", "value": str(CONNECT_PORT)},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        # workers forward REST calls to the leader by this address
        {"name": "CONNECT_REST_ADVERTISED_HOST_NAME", "value": "$(POD_IP)"},
        {"name": "CONNECT_CONFIG_PROVIDERS", "value": "dir"},
        {
            "name": "CONNECT_CONFIG_PROVIDERS_DIR_CLASS",
            "value": "org.apache.kafka.common.config.provider.DirectoryConfigProvider",
        },
    ]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if engines:
        volumes.append(_secrets_volume(engines))
        mounts.append({"name": "engine-db", "mountPath": SECRETS_DIR, "readOnly": True})
    container = {
        "name": "connect",
        "image": c.image,
        "env": env,
        "ports": [{"name": "rest", "containerPort": CONNECT_PORT}],
        "readinessProbe": http_probe("/", "rest", period=10),
        "resources": c.resources.as_dict(),
        "securityContext": restricted_security(),
        "volumeMounts": mounts,
    }
    dep = deployment(name, "PaymentHub", hub.meta, lbl, c.replicas, [container], volumes)
    dep["spec"]["template"]["spec"]["securityContext"] = {
        "runAsUser": CONNECT_UID,
        "runAsGroup": CONNECT_UID,
        "fsGroup": CONNECT_UID,
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, "PaymentHub", hub.meta, lbl),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(lbl),
            "ports": [{"name": "rest", "port": CONNECT_PORT, "targetPort": "rest"}],
        },
    }
    return [dep, service]
