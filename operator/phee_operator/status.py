"""Pure status computation: the children's actual state -> conditions, phase and columns.

Nothing here remembers anything between calls: what the operator knows about an engine is what
the API server says now (its children's status) plus what it last wrote into the engine's own
status (the previous conditions, for lastTransitionTime and for "was it Ready before").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Condition = dict[str, Any]

READY = "Ready"
RECONCILED = "Reconciled"
DATABASE_READY = "DatabaseReady"
NODES_READY = "EngineNodesReady"
WORKERS_READY = "WorkersReady"
UP_TO_DATE = "UpToDate"
CDC_REGISTERED = "CdcRegistered"
ROUTER_READY = "RouterReady"
BACKOFFICE_READY = "BackOfficeReady"
CONNECT_READY = "ConnectReady"
#: what the operator does not do yet on a version change (DESIGN 5, step 3)
SCHEMA_PATCH_TODO = (
    "database schema patches between engine versions are not applied by the operator yet "
    "(docs/decisions/0017-engine-database.md): apply the Operaton upgrade script first"
)


@dataclass(frozen=True)
class Outcome:
    """What the last apply did: None when this refresh did not apply (keep the old condition)."""

    ok: bool
    reason: str
    message: str
    generation: int


@dataclass(frozen=True)
class Workload:
    """A StatefulSet's or Deployment's observed state, or absent."""

    exists: bool = False
    desired: int = 0
    ready: int = 0
    current: bool = True  # the controller has seen the latest spec
    update_revision: str = ""
    updated: int = 0  # replicas on the latest template (status.updatedReplicas)
    total: int = 0  # replicas on any template (status.replicas)


@dataclass(frozen=True)
class PodView:
    name: str
    revision: str
    image: str


@dataclass(frozen=True)
class EngineObservation:
    generation: int
    version: str  # spec.version: the engine image tag asked for
    desired_nodes: int
    desired_workers: int
    database: Workload
    nodes: Workload
    workers: Workload
    database_pods: list[PodView] = field(default_factory=list)
    node_pods: list[PodView] = field(default_factory=list)
    previous: dict[str, Any] = field(default_factory=dict)  # the engine's current status


def condition(ctype: str, ok: bool | None, reason: str, message: str, generation: int) -> Condition:
    status = "Unknown" if ok is None else ("True" if ok else "False")
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def merge_conditions(old: list[Condition], new: list[Condition], now: str) -> list[Condition]:
    """Stamp lastTransitionTime: kept while a condition's status stays the same."""
    before = {c.get("type"): c for c in old}
    out = []
    for cond in new:
        prev = before.get(cond["type"])
        same = prev is not None and prev.get("status") == cond["status"]
        stamped = dict(cond)
        stamped["lastTransitionTime"] = prev["lastTransitionTime"] if same and prev else now
        out.append(stamped)
    return out


def _find(conditions: list[Condition], ctype: str) -> Condition | None:
    return next((c for c in conditions if c.get("type") == ctype), None)


def _workload_condition(
    ctype: str, what: str, w: Workload, desired: int, generation: int
) -> Condition:
    if not w.exists:
        return condition(ctype, False, "NotCreated", f"no {what} yet", generation)
    if desired == 0:
        return condition(ctype, True, "ScaledToZero", f"no {what} requested", generation)
    ready = w.current and w.ready >= desired and w.desired == desired
    reason = "AllReady" if ready else ("Progressing" if not w.current else "NotReady")
    return condition(ctype, ready, reason, f"{w.ready}/{desired} {what} ready", generation)


def _up_to_date(obs: EngineObservation, stale: list[str], gen: int) -> Condition:
    n = obs.nodes
    rolling = n.exists and (not n.current or n.updated < obs.desired_nodes or n.total > n.updated)
    if not stale and not rolling:
        return condition(
            UP_TO_DATE, True, "AllCurrent", "every part runs its current template", gen
        )
    parts = []
    if rolling:
        parts.append(
            f"engine nodes rolling to version {obs.version}: {n.updated}/{obs.desired_nodes} "
            f"updated; {SCHEMA_PATCH_TODO}"
        )
    if stale:
        parts.append(
            f"{', '.join(stale)} run an older database template; the operator (or an SRE) "
            "restarts them (OnDelete)"
        )
    reason = "Rolling" if rolling else "RestartPending"
    return condition(UP_TO_DATE, False, reason, "; ".join(parts), gen)


def engine_status(
    obs: EngineObservation,
    outcome: Outcome | None,
    now: str,
    *,
    engine_url: str,
    topic_prefix: str,
    cdc: Outcome | None = None,
) -> dict[str, Any]:
    """The whole `status` of a PaymentEngine. `cdc`: this apply's connector registration (None:
    not attempted now, keep the previous condition)."""
    gen = obs.generation
    old_conditions: list[Condition] = list(obs.previous.get("conditions") or [])
    if outcome is not None:
        reconciled = condition(
            RECONCILED, outcome.ok, outcome.reason, outcome.message, outcome.generation
        )
    else:
        reconciled = _find(old_conditions, RECONCILED) or condition(
            RECONCILED, None, "Pending", "not reconciled yet", gen
        )
    if cdc is not None:
        registered = condition(CDC_REGISTERED, cdc.ok, cdc.reason, cdc.message, cdc.generation)
    else:
        registered = _find(old_conditions, CDC_REGISTERED) or condition(
            CDC_REGISTERED, None, "Pending", "connector not registered yet", gen
        )
    database = _workload_condition(DATABASE_READY, "database", obs.database, 1, gen)
    nodes = _workload_condition(NODES_READY, "engine nodes", obs.nodes, obs.desired_nodes, gen)
    workers = _workload_condition(WORKERS_READY, "workers", obs.workers, obs.desired_workers, gen)
    stale = sorted(
        p.name
        for p in obs.database_pods
        if obs.database.update_revision and p.revision != obs.database.update_revision
    )
    up_to_date = _up_to_date(obs, stale, gen)
    # Change data capture is not part of Ready: payments flow while the stream catches up later.
    parts = [reconciled, database, nodes, workers]
    failing = next((c for c in parts if c["status"] != "True"), None)
    ready = condition(
        READY,
        failing is None,
        "EngineReady" if failing is None else str(failing["reason"]),
        "database, engine nodes and workers ready" if failing is None else str(failing["message"]),
        gen,
    )
    conditions = merge_conditions(
        old_conditions, [ready, reconciled, database, nodes, workers, up_to_date, registered], now
    )

    refused = reconciled["status"] == "False" and reconciled["reason"] != "ApplyFailed"
    was_ready = obs.previous.get("phase") in ("Ready", "Degraded")
    if refused:
        phase = "Invalid"
    elif failing is None:
        phase = "Ready"
    elif not obs.database.exists and not obs.nodes.exists:
        phase = "Pending"
    else:
        phase = "Degraded" if was_ready else "Provisioning"
    images = {p.image for p in obs.node_pods}
    version = images.pop().rsplit(":", 1)[-1] if len(images) == 1 else ""
    return {
        "phase": phase,
        "observedGeneration": int(reconciled.get("observedGeneration") or 0),
        "version": version,
        "ready": f"{obs.nodes.ready if obs.nodes.exists else 0}/{obs.desired_nodes}",
        "readyNodes": obs.nodes.ready,
        "readyWorkers": obs.workers.ready,
        "databaseReady": database["status"] == "True",
        "restartPending": stale,
        "engineUrl": engine_url,
        "topicPrefix": topic_prefix,
        "conditions": conditions,
    }


def with_registration(status: dict[str, Any], cdc: Outcome, now: str) -> dict[str, Any]:
    """`status` with its CdcRegistered condition replaced by this registration's outcome."""
    old: list[Condition] = list(status.get("conditions") or [])
    fresh = condition(CDC_REGISTERED, cdc.ok, cdc.reason, cdc.message, cdc.generation)
    others = [c for c in old if c.get("type") != CDC_REGISTERED]
    return {**status, "conditions": merge_conditions(old, [*others, fresh], now)}


def hub_status(
    generation: int,
    previous: dict[str, Any],
    router: Workload,
    router_desired: int,
    backoffice: list[tuple[str, Workload, int]],
    engines: int,
    accepting: list[str],
    now: str,
    *,
    connect: tuple[Workload, int] | None = None,
) -> dict[str, Any]:
    """The whole `status` of a PaymentHub. `connect`: the Kafka Connect workers and how many
    are asked for (None: not observed, the condition is left out)."""
    r = _workload_condition(ROUTER_READY, "router replicas", router, router_desired, generation)
    stream = (
        [_workload_condition(CONNECT_READY, "Kafka Connect workers", *connect, generation)]
        if connect is not None
        else []
    )
    bo_parts = [
        _workload_condition(BACKOFFICE_READY, n, w, d, generation) for n, w, d in backoffice
    ]
    bo_bad = next((c for c in bo_parts if c["status"] != "True"), None)
    bo = condition(
        BACKOFFICE_READY,
        bo_bad is None,
        "AllReady" if bo_bad is None else str(bo_bad["reason"]),
        "; ".join(str(c["message"]) for c in bo_parts),
        generation,
    )
    has_accepting = bool(accepting)
    serving = condition(
        "AcceptingPayments",
        has_accepting,
        "EnginesAccepting" if has_accepting else "NoAcceptingEngine",
        f"{len(accepting)}/{engines} engines accept new payments",
        generation,
    )
    failing = next((c for c in (r, bo, *stream) if c["status"] != "True"), None)
    ready = condition(
        READY,
        failing is None,
        "HubReady" if failing is None else str(failing["reason"]),
        "router, back office and Kafka Connect ready"
        if failing is None
        else str(failing["message"]),
        generation,
    )
    old = list(previous.get("conditions") or [])
    conditions = merge_conditions(old, [ready, r, bo, *stream, serving], now)
    was_ready = previous.get("phase") in ("Ready", "Degraded")
    phase = "Ready" if failing is None else ("Degraded" if was_ready else "Pending")
    return {
        "phase": phase,
        "observedGeneration": generation,
        "engines": f"{len(accepting)}/{engines}",
        "engineCount": engines,
        "acceptingEngines": sorted(accepting),
        "conditions": conditions,
    }


def workload_of(obj: dict[str, Any] | None, desired: int) -> Workload:
    """Read a StatefulSet or Deployment (as a dict) into a Workload."""
    if not obj:
        return Workload()
    st = obj.get("status") or {}
    md = obj.get("metadata") or {}
    kind = obj.get("kind")
    ready_key = "readyReplicas" if kind == "StatefulSet" else "availableReplicas"
    return Workload(
        exists=True,
        desired=int((obj.get("spec") or {}).get("replicas", desired)),
        ready=int(st.get(ready_key) or 0),
        current=int(st.get("observedGeneration") or 0) >= int(md.get("generation") or 0),
        update_revision=str(st.get("updateRevision") or ""),
        updated=int(st.get("updatedReplicas") or 0),
        total=int(st.get("replicas") or 0),
    )


def pod_view(pod: dict[str, Any]) -> PodView:
    md = pod.get("metadata") or {}
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    return PodView(
        name=str(md.get("name")),
        revision=str((md.get("labels") or {}).get("controller-revision-hash", "")),
        image=str(containers[0].get("image", "")),
    )


def is_ready(status: dict[str, Any] | None) -> bool:
    """Whether an engine's stored status says Ready (the registry's notion of "up")."""
    cond = _find(list((status or {}).get("conditions") or []), READY)
    return bool(cond and cond.get("status") == "True")
