"""Typed views of the custom resources (crds/*.yaml is the source of truth; defaults mirror it).

The API server has already validated and defaulted what we read; parsing again gives the pure
builders typed input and catches an object written before a CRD change. Cross-resource rules the
API server cannot check (the hub exists, slots are unique in a hub) live in `refusal_of`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

GROUP = "phee.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
FIELD_MANAGER = "phee-operator"
MANAGED_BY = "phee-operator"

Quantity = int | str


class _Spec(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class ResourceList(_Spec):
    cpu: Quantity | None = None
    memory: Quantity | None = None

    def as_dict(self) -> dict[str, Quantity]:
        return {k: v for k, v in (("cpu", self.cpu), ("memory", self.memory)) if v is not None}


class Resources(_Spec):
    requests: ResourceList = ResourceList()
    limits: ResourceList = ResourceList()

    def as_dict(self) -> dict[str, dict[str, Quantity]]:
        out = {"requests": self.requests.as_dict(), "limits": self.limits.as_dict()}
        return {k: v for k, v in out.items() if v}


class Storage(_Spec):
    type: Literal["persistent", "ephemeral"] = "persistent"
    size: Quantity = "10Gi"
    storage_class_name: str | None = Field(default=None, alias="storageClassName")


#: the engine image: our Spring Boot application around Operaton (built from engine/)
ENGINE_IMAGE = "ghcr.io/phee/engine"


class OperatonSpec(_Spec):
    """The Operaton engine nodes: stateless, they share the engine's database."""

    image: str = ENGINE_IMAGE
    nodes: int = 2
    java_options: str = Field(default="-Xmx384m -XX:+UseSerialGC", alias="javaOptions")
    resources: Resources = Resources()


class DatabaseSpec(_Spec):
    """The engine's own PostgreSQL (one instance; logical decoding on for change data capture)."""

    image: str = "postgres:15"
    storage: Storage = Storage()
    max_replication_slots: int = Field(default=4, alias="maxReplicationSlots")
    max_wal_senders: int = Field(default=4, alias="maxWalSenders")
    resources: Resources = Resources()


class WorkersSpec(_Spec):
    replicas: int = 2
    max_jobs: int = Field(default=32, alias="maxJobs")
    resources: Resources = Resources()


class EngineSpec(_Spec):
    hub_ref: str = Field(alias="hubRef")
    slot: int
    #: the engine image tag (spec.engine.image:version); raising it rolls the engine nodes
    version: str
    traffic_state: Literal["accepting", "draining"] = Field(
        default="accepting", alias="trafficState"
    )
    engine: OperatonSpec = OperatonSpec()
    database: DatabaseSpec = DatabaseSpec()
    workers: WorkersSpec = WorkersSpec()


class Tenant(_Spec):
    name: str
    display_name: str | None = Field(default=None, alias="displayName")


class SwitchSpec(_Spec):
    url: str
    allow_insecure: bool = Field(default=False, alias="allowInsecure")
    fspiop_version: Literal["1.0", "1.1", "2.0"] = Field(default="1.1", alias="fspiopVersion")


class KafkaSpec(_Spec):
    bootstrap_servers: str = Field(alias="bootstrapServers")
    tls_secret_name: str | None = Field(default=None, alias="tlsSecretName")


class ConnectSpec(_Spec):
    """The hub's Kafka Connect cluster: Debezium streams every engine's history into Kafka."""

    image: str = "ghcr.io/phee/connect:3.6.1"
    replicas: int = 1
    resources: Resources = Resources()


class RouterSpec(_Spec):
    replicas: int = 2
    port: int = 8443
    database_secret_name: str | None = Field(default=None, alias="databaseSecretName")
    resources: Resources = Resources()


class BackOfficeSpec(_Spec):
    database_secret_name: str = Field(alias="databaseSecretName")
    opensearch_url: str | None = Field(default=None, alias="opensearchUrl")
    importer_replicas: int = Field(default=1, alias="importerReplicas")
    api_replicas: int = Field(default=2, alias="apiReplicas")
    resources: Resources = Resources()


class UpgradePolicy(_Spec):
    paused: bool = False
    drain_timeout_seconds: int = Field(default=300, alias="drainTimeoutSeconds")
    max_unavailable_engines: int = Field(default=1, alias="maxUnavailableEngines")


class Certificates(_Spec):
    router_tls_secret_name: str | None = Field(default=None, alias="routerTLSSecretName")
    switch_client_tls_secret_name: str | None = Field(
        default=None, alias="switchClientTLSSecretName"
    )
    jws_signing_secret_name: str | None = Field(default=None, alias="jwsSigningSecretName")
    peer_jws_secret_name: str | None = Field(default=None, alias="peerJwsSecretName")


# Key names (not values) in the hub's Secret (spec.secretName).
SECRET_KEY_ILP = "ilp-secret"  # noqa: S105
SECRET_KEY_ROUTER_ADMIN = "router-admin-token"  # noqa: S105
SECRET_KEY_AUDIT = "audit-key"  # noqa: S105


class HubSpec(_Spec):
    dfsp_id: str = Field(alias="dfspId")
    secret_name: str | None = Field(default=None, alias="secretName")
    image: str = "phee:0.1.0"
    tenants: list[Tenant] = Field(min_length=1)
    switch: SwitchSpec
    kafka: KafkaSpec
    ams_url: str | None = Field(default=None, alias="amsUrl")
    router: RouterSpec = RouterSpec()
    back_office: BackOfficeSpec = Field(alias="backOffice")
    connect: ConnectSpec = ConnectSpec()
    upgrade_policy: UpgradePolicy = Field(default=UpgradePolicy(), alias="upgradePolicy")
    certificates: Certificates = Certificates()


class Meta(_Spec):
    """The metadata builders need: where the object lives and how children point back to it."""

    name: str
    namespace: str
    uid: str
    generation: int = 0
    #: creationTimestamp (RFC 3339, so strings order like times): the older engine keeps a slot
    created: str = ""


class Engine(_Spec):
    meta: Meta
    spec: EngineSpec

    @property
    def topic_prefix(self) -> str:
        """The prefix of the engine's change-data-capture topics (`<prefix>.public.act_hi_*`)."""
        return self.meta.name


class Hub(_Spec):
    meta: Meta
    spec: HubSpec

    @property
    def secret_name(self) -> str:
        """The Secret with the site's own secrets (ILP secret, admin token, audit key)."""
        return self.spec.secret_name or f"{self.meta.name}-secrets"


def meta_of(body: dict[str, Any]) -> Meta:
    md = body["metadata"]
    return Meta(
        name=md["name"],
        namespace=md.get("namespace") or "default",
        uid=md.get("uid") or "",
        generation=int(md.get("generation") or 0),
        created=str(md.get("creationTimestamp") or ""),
    )


def engine_of(body: dict[str, Any]) -> Engine:
    """Parse a PaymentEngine object; raises pydantic.ValidationError on a malformed spec."""
    return Engine(meta=meta_of(body), spec=EngineSpec.model_validate(body.get("spec") or {}))


def hub_of(body: dict[str, Any]) -> Hub:
    """Parse a PaymentHub object; raises pydantic.ValidationError on a malformed spec."""
    return Hub(meta=meta_of(body), spec=HubSpec.model_validate(body.get("spec") or {}))


def refusal_of(engine: Engine, hub: Hub | None, siblings: list[Engine]) -> str | None:
    """Why the operator refuses to build this engine, or None. `siblings`: the hub's engines."""
    if hub is None:
        return (
            f"PaymentHub {engine.spec.hub_ref!r} does not exist in namespace "
            f"{engine.meta.namespace!r}; create it or fix spec.hubRef"
        )
    return clash_of(engine, siblings)


def clash_of(engine: Engine, siblings: list[Engine]) -> str | None:
    """A slot this engine shares with an older engine of its hub, or None.

    Only an older engine can refuse this one, so that of two clashing engines the one that was
    there first keeps running. (Topics cannot clash: their prefix is the engine's name, unique in
    the hub's namespace.)
    """
    mine = (engine.meta.created, engine.meta.name)
    for other in siblings:
        if other.meta.name == engine.meta.name or (other.meta.created, other.meta.name) > mine:
            continue
        if other.spec.slot == engine.spec.slot:
            return (
                f"slot {engine.spec.slot} is already used by engine {other.meta.name!r} in hub "
                f"{engine.spec.hub_ref!r}; ids carry the slot, so each engine needs its own"
            )
    return None
