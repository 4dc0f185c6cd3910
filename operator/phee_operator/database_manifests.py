"""Pure builders: an engine's own PostgreSQL (docs/decisions/0017-engine-database.md).

One PostgreSQL instance per engine, as a StatefulSet of one replica with a volume claim
template, a headless Service, an init ConfigMap (creates the workers' `payments` database next
to the engine's `engine` database) and a NetworkPolicy. Logical decoding is on
(`wal_level=logical`) so that Debezium can stream the engine's history tables.

The credentials Secret is created once by the reconciler (a random password that is never
regenerated: PostgreSQL keeps the one it was initialised with); `credentials_secret` only builds
it around the password it is given.
"""

from __future__ import annotations

from typing import Any

from phee_operator.common import (
    LABEL_ENGINE,
    LABEL_HUB,
    Manifest,
    labels,
    metadata,
    restricted_security,
    secret_env,
    selector,
)
from phee_operator.model import Engine

KIND = "PaymentEngine"
PORT = 5432
#: the engine's database (Operaton's ACT_* tables; Debezium reads it)
ENGINE_DB = "engine"
#: the workers' database (payments they track), in the same instance
PAYMENTS_DB = "payments"
USER = "engine"
SECRET_KEY_USERNAME = "username"  # noqa: S105 - a key name
SECRET_KEY_PASSWORD = "password"  # noqa: S105 - a key name, not a value
POSTGRES_UID = 999  # the postgres user of the official image
DATA_DIR = "/var/lib/postgresql/data"
INIT_DIR = "/docker-entrypoint-initdb.d"


def db_name(engine: Engine) -> str:
    """The StatefulSet, its headless Service, NetworkPolicy and credentials Secret."""
    return f"{engine.meta.name}-db"


def secret_name(engine: Engine) -> str:
    return db_name(engine)


def init_name(engine: Engine) -> str:
    return f"{engine.meta.name}-db-init"


def host(engine: Engine) -> str:
    """The database's address: its headless Service (one instance, so one address)."""
    return f"{db_name(engine)}.{engine.meta.namespace}.svc"


def jdbc_url(engine: Engine) -> str:
    return f"jdbc:postgresql://{host(engine)}:{PORT}/{ENGINE_DB}"


def store_url(engine: Engine) -> str:
    """The workers' SQLAlchemy URL, without the password (PHEE_ENGINE_STORE_PASSWORD adds it)."""
    return f"postgresql+psycopg://{USER}@{host(engine)}:{PORT}/{PAYMENTS_DB}"


def db_labels(engine: Engine) -> dict[str, str]:
    return labels(
        hub=engine.spec.hub_ref, engine=engine.meta.name, component="database", name="postgresql"
    )


def password_env(name: str, engine: Engine) -> dict[str, Any]:
    return secret_env(name, secret_name(engine), SECRET_KEY_PASSWORD)


def username_env(name: str, engine: Engine) -> dict[str, Any]:
    return secret_env(name, secret_name(engine), SECRET_KEY_USERNAME)


def credentials_secret(engine: Engine, password: str) -> Manifest:
    """The database credentials; created once, owned by the engine (deleted with it)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(secret_name(engine), KIND, engine.meta, db_labels(engine)),
        "type": "Opaque",
        "stringData": {SECRET_KEY_USERNAME: USER, SECRET_KEY_PASSWORD: password},
    }


def init_config_map(engine: Engine) -> Manifest:
    """Run once by the image's entrypoint on an empty data directory."""
    sql = f"CREATE DATABASE {PAYMENTS_DB} OWNER {USER};\n"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(init_name(engine), KIND, engine.meta, db_labels(engine)),
        "data": {"10-payments.sql": sql},
    }


def service(engine: Engine) -> Manifest:
    lbl = db_labels(engine)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(db_name(engine), KIND, engine.meta, lbl),
        "spec": {
            "clusterIP": "None",
            "selector": selector(lbl),
            "ports": [{"name": "postgres", "port": PORT, "targetPort": "postgres"}],
        },
    }


def server_args(engine: Engine) -> list[str]:
    d = engine.spec.database
    settings = {
        "wal_level": "logical",
        "max_replication_slots": str(d.max_replication_slots),
        "max_wal_senders": str(d.max_wal_senders),
    }
    return [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]


def _claims(engine: Engine) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pod volumes, volume claim templates) for the data directory."""
    storage = engine.spec.database.storage
    if storage.type == "ephemeral":
        return [{"name": "data", "emptyDir": {}}], []
    claim: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "labels": db_labels(engine)},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": storage.size}},
        },
    }
    if storage.storage_class_name:
        claim["spec"]["storageClassName"] = storage.storage_class_name
    return [], [claim]


def stateful_set(engine: Engine) -> Manifest:
    d = engine.spec.database
    lbl = db_labels(engine)
    name = db_name(engine)
    volumes, claims = _claims(engine)
    volumes += [
        {"name": "init", "configMap": {"name": init_name(engine)}},
        {"name": "run", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
    ]
    ready = ["pg_isready", "-h", "127.0.0.1", "-p", str(PORT), "-U", USER, "-d", ENGINE_DB]
    container: dict[str, Any] = {
        "name": "postgres",
        "image": d.image,
        "args": server_args(engine),
        "env": [
            username_env("POSTGRES_USER", engine),
            password_env("POSTGRES_PASSWORD", engine),
            {"name": "POSTGRES_DB", "value": ENGINE_DB},
            # a subdirectory: the volume's root may hold lost+found
            {"name": "PGDATA", "value": f"{DATA_DIR}/pgdata"},
        ],
        "ports": [{"name": "postgres", "containerPort": PORT}],
        "readinessProbe": {
            "exec": {"command": ready},
            "periodSeconds": 5,
            "failureThreshold": 3,
            "timeoutSeconds": 3,
        },
        "livenessProbe": {
            "exec": {"command": ready},
            "initialDelaySeconds": 30,
            "periodSeconds": 10,
            "failureThreshold": 6,
            "timeoutSeconds": 5,
        },
        "resources": d.resources.as_dict(),
        "securityContext": restricted_security(),
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "init", "mountPath": INIT_DIR, "readOnly": True},
            {"name": "run", "mountPath": "/var/run/postgresql"},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the server's scratch space
        ],
    }
    spec: dict[str, Any] = {
        "replicas": 1,
        "serviceName": name,
        # A restart of the only instance stops the engine for a moment: the operator (or an
        # SRE) decides when, as for any engine part (status.restartPending lists the pod).
        "updateStrategy": {"type": "OnDelete"},
        "selector": {"matchLabels": selector(lbl)},
        # payment data outlives an accidental delete of the engine
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
        "template": {
            "metadata": {"labels": lbl},
            "spec": {
                "terminationGracePeriodSeconds": 60,
                "securityContext": {
                    "runAsUser": POSTGRES_UID,
                    "runAsGroup": POSTGRES_UID,
                    "fsGroup": POSTGRES_UID,
                    "runAsNonRoot": True,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
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


def network_policy(engine: Engine) -> Manifest:
    """The database accepts its own engine's pods (engine nodes, workers) and the hub's Kafka
    Connect workers (Debezium's replication connection), nothing else."""
    lbl = db_labels(engine)
    same_engine = {"podSelector": {"matchLabels": {LABEL_ENGINE: engine.meta.name}}}
    connect = {
        "podSelector": {
            "matchLabels": {
                LABEL_HUB: engine.spec.hub_ref,
                "app.kubernetes.io/component": "connect",
            }
        }
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(db_name(engine), KIND, engine.meta, lbl),
        "spec": {
            "podSelector": {"matchLabels": selector(lbl)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [same_engine, connect], "ports": [{"protocol": "TCP", "port": PORT}]}
            ],
        },
    }


def database_children(engine: Engine) -> list[Manifest]:
    """The database's objects in apply order (the Secret is the reconciler's, created once)."""
    return [init_config_map(engine), service(engine), stateful_set(engine), network_policy(engine)]
