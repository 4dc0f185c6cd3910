"""Reconciliation: read what is there, apply what should be, write status from what is there.

Every entry point is idempotent and starts from fresh reads, so it is safe to call from a create
handler, a timer, a child's event or after the operator restarted halfway through a previous
run: children have fixed names and are written by server-side apply, so nothing is duplicated.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
from collections.abc import Callable
from typing import Any

import pydantic

from phee_operator import cdc_manifests as cdc
from phee_operator import database_manifests as dbm
from phee_operator import engine_manifests as em
from phee_operator import hub_manifests as hm
from phee_operator import status as st
from phee_operator.connect import ConnectError, ConnectorRegistry, HttpConnect
from phee_operator.kube import SERVICE_MONITOR_CRD, Kube, Rejected
from phee_operator.model import (
    API_VERSION,
    Engine,
    Hub,
    clash_of,
    engine_of,
    hub_of,
    refusal_of,
)

log = logging.getLogger("phee_operator")

#: (object, type Normal|Warning, reason, message): posts a Kubernetes Event about `object`
EventSink = Callable[[dict[str, Any], str, str, str], None]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _deleting(body: dict[str, Any]) -> bool:
    return bool((body.get("metadata") or {}).get("deletionTimestamp"))


class Reconciler:
    """`connect`: where connectors are registered; `connect_url`: the Connect REST API to use
    instead of the hub's in-cluster Service (an operator running outside the cluster)."""

    def __init__(
        self,
        kube: Kube,
        events: EventSink | None = None,
        *,
        connect: ConnectorRegistry | None = None,
        connect_url: str | None = None,
    ) -> None:
        self.kube = kube
        self.events = events or (lambda *_: None)
        self.connect = connect or HttpConnect()
        self.connect_url = connect_url
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}

    def _lock(self, kind: str, ns: str, name: str) -> asyncio.Lock:
        return self._locks.setdefault((kind, ns, name), asyncio.Lock())

    # -- reads ---------------------------------------------------------------------------------
    async def _engine_bodies(self, ns: str, hub: str) -> list[dict[str, Any]]:
        bodies = await self.kube.list(API_VERSION, "PaymentEngine", ns)
        return [b for b in bodies if (b.get("spec") or {}).get("hubRef") == hub]

    async def _hub(self, ns: str, name: str) -> Hub | None:
        body = await self.kube.get(API_VERSION, "PaymentHub", name, ns)
        if body is None or _deleting(body):
            return None
        return hub_of(body)

    @staticmethod
    def _parse_all(bodies: list[dict[str, Any]]) -> list[tuple[dict[str, Any], Engine]]:
        out = []
        for body in bodies:
            try:
                out.append((body, engine_of(body)))
            except pydantic.ValidationError:
                continue  # refused on its own reconcile; it cannot take part in the hub
        return out

    # -- engines -------------------------------------------------------------------------------
    async def engine(self, ns: str, name: str, *, apply: bool, announce: bool = False) -> str:
        """Reconcile one engine; returns its phase ("" when it is gone).

        `apply`: write the children (spec changes, resync, a deleted child); without it only the
        status is refreshed from the children. `announce`: post an event for the apply.
        """
        async with self._lock("engine", ns, name):
            body = await self.kube.get(API_VERSION, "PaymentEngine", name, ns)
            if body is None or _deleting(body):
                return ""
            outcome, registered = (
                await self._apply_engine(body, announce) if apply else (None, None)
            )
            phase, ready_changed, new = await self._engine_status(body, outcome, registered)
            if not apply and _registration_waits(body) and new.get("databaseReady"):
                # after the status write: a late registration never delays Ready
                await self._register_waiting(body, new)
        hub_name = (body.get("spec") or {}).get("hubRef")
        # The registry depends on the spec (written on apply) and on readiness; a status refresh
        # that changed neither leaves the hub alone (children's events are the hot path).
        if hub_name and (apply or ready_changed):
            await self.hub(ns, str(hub_name), apply_all=False)
        return phase

    async def _apply_engine(
        self, body: dict[str, Any], announce: bool
    ) -> tuple[st.Outcome, st.Outcome | None]:
        """Apply the children; returns the apply's outcome and the connector registration's
        (None when nothing was applied)."""
        gen = int(body["metadata"].get("generation") or 0)
        try:
            engine = engine_of(body)
        except pydantic.ValidationError as err:
            msg = f"spec is invalid: {err.errors()[0]['loc']}: {err.errors()[0]['msg']}"
            self.events(body, "Warning", "InvalidSpec", msg)
            return st.Outcome(False, "InvalidSpec", msg, gen), None
        hub = await self._hub(engine.meta.namespace, engine.spec.hub_ref)
        siblings = [
            e
            for _, e in self._parse_all(
                await self._engine_bodies(engine.meta.namespace, engine.spec.hub_ref)
            )
        ]
        refusal = refusal_of(engine, hub, siblings)
        if refusal is not None or hub is None:
            reason = "HubNotFound" if hub is None else "Conflict"
            message = refusal or "no hub"
            self.events(body, "Warning", reason, message)
            return st.Outcome(False, reason, message, gen), None
        monitors = await self.kube.has_crd(SERVICE_MONITOR_CRD)
        children = em.engine_children(engine, hub, service_monitors=monitors)
        try:
            # Written once: PostgreSQL keeps the password it was initialised with.
            password = secrets.token_hex(24)
            if await self.kube.create(dbm.credentials_secret(engine, password)):
                self.events(body, "Normal", "SecretCreated", f"{dbm.secret_name(engine)} created")
            for child in children:
                await self.kube.apply(child)
        except Rejected as err:
            self.events(body, "Warning", "ApplyFailed", str(err))
            return st.Outcome(False, "ApplyFailed", str(err), gen), None
        message = f"{len(children) + 1} children applied for generation {gen}"
        if announce:
            self.events(body, "Normal", "Applied", message)
        return st.Outcome(True, "Applied", message, gen), await self._register(engine, hub)

    async def _register(self, engine: Engine, hub: Hub) -> st.Outcome:
        """Register the engine's connector with the hub's Kafka Connect (idempotent PUT). A
        failure is reported in the CdcRegistered condition and retried at the next resync;
        it never holds up the engine (payments flow; the stream catches up).

        Debezium validates a config by connecting to the database, so nothing is sent before
        the database is ready; a status refresh retries once it is (`_registration_waits`)."""
        gen = engine.meta.generation
        name = cdc.connector_name(engine)
        ns = hub.meta.namespace
        db = await self.kube.get("apps/v1", "StatefulSet", dbm.db_name(engine), ns)
        if not st.workload_of(db, 1).ready:
            msg = f"waiting for the database {dbm.db_name(engine)} before registering {name}"
            return st.Outcome(False, WAIT_DATABASE, msg, gen)
        dep = await self.kube.get("apps/v1", "Deployment", cdc.connect_name(hub), ns)
        if self.connect_url is None and not st.workload_of(dep, 1).ready:
            msg = f"Kafka Connect {cdc.connect_name(hub)} has no available worker yet"
            return st.Outcome(False, WAIT_CONNECT, msg, gen)
        url = self.connect_url or cdc.connect_url(hub)
        try:
            created = await self.connect.put_config(url, name, cdc.connector_config(engine))
        except ConnectError as err:
            log.info("connector %s not registered: %s", name, err)
            return st.Outcome(False, err.reason, str(err)[:1000], gen)
        verb = "created" if created else "updated"
        return st.Outcome(True, "Registered", f"connector {name} {verb} on {url}", gen)

    async def _register_waiting(self, body: dict[str, Any], status: dict[str, Any]) -> None:
        """Retry a registration that waited for the database or Connect, and write its
        condition into `status` (just written from the children)."""
        try:
            engine = engine_of(body)
        except pydantic.ValidationError:
            return
        hub = await self._hub(engine.meta.namespace, engine.spec.hub_ref)
        if hub is None:
            return
        registered = await self._register(engine, hub)
        new = st.with_registration(status, registered, _now())
        if new != status:
            await self.kube.patch_status("PaymentEngine", engine.meta.name, hub.meta.namespace, new)

    async def _engine_status(
        self, body: dict[str, Any], outcome: st.Outcome | None, registered: st.Outcome | None
    ) -> tuple[str, bool, dict[str, Any]]:
        """Write the status; returns the phase, whether readiness changed, and the status."""
        md, spec = body["metadata"], body.get("spec") or {}
        ns, name = md["namespace"], md["name"]
        nodes_spec, workers = spec.get("engine") or {}, spec.get("workers") or {}
        desired_nodes = int(nodes_spec.get("nodes", 2))
        desired_workers = int(workers.get("replicas", 2))
        db = await self.kube.get("apps/v1", "StatefulSet", f"{name}-db", ns)
        nodes = await self.kube.get("apps/v1", "Deployment", f"{name}-operaton", ns)
        dep = await self.kube.get("apps/v1", "Deployment", f"{name}-workers", ns)
        previous = body.get("status") or {}
        obs = st.EngineObservation(
            generation=int(md.get("generation") or 0),
            version=str(spec.get("version") or ""),
            desired_nodes=desired_nodes,
            desired_workers=desired_workers,
            database=st.workload_of(db, 1),
            nodes=st.workload_of(nodes, desired_nodes),
            workers=st.workload_of(dep, desired_workers),
            database_pods=await self._pods(db, ns),
            node_pods=await self._pods(nodes, ns),
            previous=previous,
        )
        url = f"http://{name}-operaton.{ns}.svc:{em.ENGINE_PORT}{em.REST_PATH}"
        new = st.engine_status(
            obs, outcome, _now(), engine_url=url, topic_prefix=name, cdc=registered
        )
        if new != previous:
            await self.kube.patch_status("PaymentEngine", name, ns, new)
        if previous.get("phase") != new["phase"] and new["phase"] in ("Ready", "Degraded"):
            kind = "Normal" if new["phase"] == "Ready" else "Warning"
            self.events(body, kind, new["phase"], _ready_message(new))
        return str(new["phase"]), st.is_ready(previous) != st.is_ready(new), new

    async def _pods(self, owner: dict[str, Any] | None, ns: str) -> list[st.PodView]:
        """The pods a StatefulSet's or Deployment's selector matches."""
        if owner is None:
            return []
        match = ((owner.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        return [st.pod_view(p) for p in await self.kube.list("v1", "Pod", ns, match)]

    async def engine_deleted(self, ns: str, name: str, hub: str | None) -> None:
        """An engine is going: take it out of the registry first, so that the router stops
        sending it work before its pods go (the garbage collector removes the children)."""
        if hub:
            await self.hub(ns, hub, apply_all=False, leaving=name)
            url = self.connect_url or f"http://{hub}-connect.{ns}.svc:{cdc.CONNECT_PORT}"
            try:  # best effort: the connector is Connect's, not a Kubernetes object
                await self.connect.delete(url, f"{name}-cdc")
            except ConnectError as err:
                log.info("connector %s-cdc not removed: %s", name, err)

    # -- hubs ----------------------------------------------------------------------------------
    async def hub(self, ns: str, name: str, *, apply_all: bool, leaving: str | None = None) -> str:
        """Write the hub's registry (always) and, with `apply_all`, every other hub child; then
        its status. `leaving`: an engine being deleted, already left out of the registry."""
        async with self._lock("hub", ns, name):
            body = await self.kube.get(API_VERSION, "PaymentHub", name, ns)
            if body is None or _deleting(body):
                return ""
            hub = hub_of(body)
            members = registry_members(
                [
                    (b, e)
                    for b, e in self._parse_all(await self._engine_bodies(ns, name))
                    if e.meta.name != leaving and not _deleting(b)
                ]
            )
            children = (
                hm.hub_children(hub, members) if apply_all else hm.engine_dependent(hub, members)
            )
            for child in children:
                await self.kube.apply(child)
            return await self._hub_status(body, hub, members)

    async def _hub_status(
        self, body: dict[str, Any], hub: Hub, members: list[hm.EngineView]
    ) -> str:
        ns, name = hub.meta.namespace, hub.meta.name
        router = await self.kube.get("apps/v1", "Deployment", f"{name}-router", ns)
        parts = []
        b = hub.spec.back_office
        for suffix, desired in (
            ("backoffice-importer", b.importer_replicas),
            ("backoffice-api", b.api_replicas),
        ):
            dep = await self.kube.get("apps/v1", "Deployment", f"{name}-{suffix}", ns)
            parts.append((suffix, st.workload_of(dep, desired), desired))
        connect = await self.kube.get("apps/v1", "Deployment", cdc.connect_name(hub), ns)
        c = hub.spec.connect.replicas
        accepting = [v.engine.meta.name for v in members if hm.engine_state(v).value == "accepting"]
        previous = body.get("status") or {}
        new = st.hub_status(
            hub.meta.generation,
            previous,
            st.workload_of(router, hub.spec.router.replicas),
            hub.spec.router.replicas,
            parts,
            len(members),
            accepting,
            _now(),
            connect=(st.workload_of(connect, c), c),
        )
        if new != previous:
            await self.kube.patch_status("PaymentHub", name, ns, new)
        if previous.get("engines") != new["engines"]:
            self.events(
                body, "Normal", "RegistryUpdated", f"{new['engines']} engines accept new payments"
            )
        return str(new["phase"])

    async def hub_engines(self, ns: str, name: str) -> list[str]:
        """Engines naming this hub (to re-reconcile them after the hub changed)."""
        return [b["metadata"]["name"] for b in await self._engine_bodies(ns, name)]


WAIT_DATABASE = "DatabaseNotReady"
WAIT_CONNECT = "ConnectNotReady"


def _registration_waits(body: dict[str, Any]) -> bool:
    """Whether the last registration waited for a part that may be ready by now."""
    conds = (body.get("status") or {}).get("conditions") or []
    cdc_cond = next((c for c in conds if c.get("type") == st.CDC_REGISTERED), None)
    return bool(cdc_cond and cdc_cond.get("reason") in (WAIT_DATABASE, WAIT_CONNECT))


def registry_members(engines: list[tuple[dict[str, Any], Engine]]) -> list[hm.EngineView]:
    """Engines that belong in the registry: not refused (a slot clash keeps the older engine)."""
    parsed = [e for _, e in engines]
    out = []
    for body, engine in engines:
        if clash_of(engine, parsed) is None:
            out.append(hm.EngineView(engine, st.is_ready(body.get("status"))))
    return out


def _ready_message(status: dict[str, Any]) -> str:
    return (
        f"{status['ready']} engine nodes, {status['readyWorkers']} workers ready, "
        f"version {status['version'] or 'unknown'}"
    )
