"""Pieces every manifest builder shares: names, labels, owner references, hashing.

Labels follow the recommended `app.kubernetes.io/*` set plus `phee.io/hub` and `phee.io/engine`,
so that the operator finds every child with one label selector and an SRE can `kubectl get -l`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from phee_operator.model import API_VERSION, MANAGED_BY, Meta

Manifest = dict[str, Any]

LABEL_HUB = "phee.io/hub"
LABEL_ENGINE = "phee.io/engine"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
#: a pod template annotation: the hash of the configuration the pods must run with, so a
#: configuration change is a template change (a new StatefulSet revision the operator rolls)
ANNOTATION_CONFIG_HASH = "phee.io/config-hash"


def labels(*, hub: str, component: str, name: str, engine: str | None = None) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": engine or hub,
        LABEL_COMPONENT: component,
        "app.kubernetes.io/part-of": "phee",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_HUB: hub,
    }
    if engine:
        out[LABEL_ENGINE] = engine
    return out


def selector(labels_: dict[str, str]) -> dict[str, str]:
    """The immutable subset used in selectors (never the version or anything that changes)."""
    keys = ("app.kubernetes.io/name", "app.kubernetes.io/instance", LABEL_COMPONENT)
    return {k: labels_[k] for k in keys}


def owner_reference(kind: str, owner: Meta) -> dict[str, Any]:
    """A controller reference: the garbage collector deletes the child with its owner."""
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(
    name: str, owner_kind: str, owner: Meta, labels_: dict[str, str], **extra: Any
) -> dict[str, Any]:
    md: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels_,
        "ownerReferences": [owner_reference(owner_kind, owner)],
    }
    md.update(extra)
    return md


def content_hash(value: Any) -> str:
    """A short stable hash of JSON-able data (key order does not matter)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    """An environment variable read from a key of a Secret (never a literal value)."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


#: where the image holds the FSPIOP OpenAPI documents (`@mojaloop/api-snippets` docs/)
FSPIOP_SCHEMAS_DIR = "/opt/phee/fspiop-schemas"


def secret_volume(name: str, secret: str) -> dict[str, Any]:
    return {"name": name, "secret": {"secretName": secret, "defaultMode": 0o440}}


def restricted_security() -> dict[str, Any]:
    """Container security context that passes the `restricted` Pod Security Standard."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def http_probe(path: str, port: str, period: int = 5, failures: int = 3) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }


def key_of(manifest: Manifest) -> tuple[str, str, str]:
    """(apiVersion, kind, name): how children are compared between desired and actual."""
    return (manifest["apiVersion"], manifest["kind"], manifest["metadata"]["name"])


def deployment(
    name: str,
    owner_kind: str,
    owner: Meta,
    labels_: dict[str, str],
    replicas: int,
    containers: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
) -> Manifest:
    """A Deployment that never drops below its replica count while rolling (surge one first);
    its pods get 30 s after SIGTERM to finish what they hold."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, owner_kind, owner, labels_),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector(labels_)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": labels_},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "containers": containers,
                    # the API server drops an empty list; leaving it out keeps apply == read
                    **({"volumes": volumes} if volumes else {}),
                },
            },
        },
    }
