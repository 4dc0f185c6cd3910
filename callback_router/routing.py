"""Pure routing decisions: which engine gets an inbound FSPIOP message, and as what.

No I/O here: the caller passes the registry, the party waits of one party and the payee table
entry it looked up, and gets back a decision (`Publish`, `Start` or `Unroutable`) to execute.
The rules (DESIGN.md section 4, `phee.contract`):
- payer-side callbacks (`PUT /quotes/{id}`, `PUT /transfers/{id}`) go to the engine whose slot
  is inside the id, whatever its state: only that engine holds the waiting process;
- `PUT /parties/...` goes to every transaction that registered a wait for that party and whose
  wait has not expired, one message each, on the engine named by the wait;
- new payee work (`GET /parties`, `POST /quotes`) goes to an ACCEPTING engine, the one chosen
  least recently first (the others follow as fail-over candidates); none accepting -> 2003;
- payee follow-ups (`POST /transfers`, `PATCH /transfers`) go to the engine that holds the
  transaction or transfer (looked up by the caller), draining or not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from phee import contract
from phee.contract import EngineInfo, EngineRegistry
from phee.fspiop import ids
from phee.fspiop.errors import FspiopError


@dataclass(frozen=True)
class Publish:
    """Correlate one message on one engine (`message_id` names it in logs and the outbox)."""

    engine: str
    name: str
    correlation_key: str
    variables: dict[str, Any]
    message_id: str
    ttl_ms: int


@dataclass(frozen=True)
class Start:
    """Create one process instance on the first candidate engine that takes it."""

    candidates: tuple[str, ...]
    process_id: str
    variables: dict[str, Any]


@dataclass(frozen=True)
class Unroutable:
    """Nobody owns this message; the caller logs and counts it under `reason`."""

    reason: str
    detail: str


@dataclass(frozen=True)
class PartyWait:
    """A transaction waiting for `PUT /parties/<party>` (registered by its engine)."""

    party: str
    transaction_id: str
    engine: str
    expires_at: float


@dataclass(frozen=True)
class PartyFanout:
    """What one party callback becomes: messages, the waits they satisfy, what was skipped."""

    publishes: list[Publish] = field(default_factory=list)
    satisfied: list[PartyWait] = field(default_factory=list)
    skipped: list[Unroutable] = field(default_factory=list)


def message_id(kind: str, key: str, *, ok: bool, content_hash: str) -> str:
    """A message id: the same content gets the same id (logs, outbox, duplicate detection)."""
    return f"{kind}:{key}:{'' if ok else 'error:'}{content_hash}"


def owner_of_id(registry: EngineRegistry, id_value: str) -> EngineInfo | None:
    """The engine whose slot an id we created carries (None: not an id, or no such engine)."""
    slot = ids.slot_of(id_value)
    return None if slot is None else registry.by_slot(slot)


def callback_for_id(
    registry: EngineRegistry,
    message: str,
    id_value: str,
    *,
    ok: bool,
    body: Any,
    headers: dict[str, str],
    content_hash: str,
    ttl_ms: int,
    known_owner: str | None = None,
) -> Publish | Unroutable:
    """A quote or transfer callback, correlated by its id, for the engine that owns the id.

    `known_owner` (from the payee table) wins over the slot: a `PUT /transfers/{id}/error` the
    switch sends us as payee names an id another DFSP created, whose "slot" means nothing.
    """
    if known_owner is not None:
        engine = registry.by_name(known_owner)
        if engine is None:
            return Unroutable("unknown-engine", f"{id_value} belongs to {known_owner}, not listed")
    else:
        engine = owner_of_id(registry, id_value)
        if engine is None:
            return Unroutable("no-owner", f"no engine has the slot of {id_value}")
    kind = "quote" if message == contract.MSG_QUOTE_CALLBACK else "transfer"
    return Publish(
        engine=engine.name,
        name=message,
        correlation_key=id_value,
        variables=contract.callback_variables(message, ok=ok, body=body, headers=headers),
        message_id=message_id(kind, id_value, ok=ok, content_hash=content_hash),
        ttl_ms=ttl_ms,
    )


def party_callbacks(
    registry: EngineRegistry,
    waits: Iterable[PartyWait],
    party: str,
    now: float,
    *,
    ok: bool,
    body: Any,
    headers: dict[str, str],
    content_hash: str,
    ttl_ms: int,
) -> PartyFanout:
    """One `MSG_PARTY_CALLBACK` per live wait for `party`, correlated by its transactionId."""
    fanout = PartyFanout()
    variables = contract.callback_variables(
        contract.MSG_PARTY_CALLBACK, ok=ok, body=body, headers=headers
    )
    for wait in sorted(waits, key=lambda w: (w.engine, w.transaction_id)):
        if wait.party != party or wait.expires_at <= now:
            continue
        if registry.by_name(wait.engine) is None:
            fanout.skipped.append(
                Unroutable("unknown-engine", f"{wait.transaction_id} waits on {wait.engine}")
            )
            continue
        fanout.publishes.append(
            Publish(
                engine=wait.engine,
                name=contract.MSG_PARTY_CALLBACK,
                correlation_key=wait.transaction_id,
                variables=variables,
                message_id=message_id(
                    "party", wait.transaction_id, ok=ok, content_hash=content_hash
                ),
                ttl_ms=ttl_ms,
            )
        )
        fanout.satisfied.append(wait)
    return fanout


def new_work_engines(registry: EngineRegistry, last_chosen: Mapping[str, int]) -> list[str]:
    """Accepting engines, least recently chosen first (never chosen: by slot); 2003 if none."""
    accepting = registry.accepting()
    if not accepting:
        raise FspiopError("2003", "no engine accepts new work")
    ordered = sorted(accepting, key=lambda e: (last_chosen.get(e.name, -1), e.slot))
    return [e.name for e in ordered]


def payee_lookup(
    registry: EngineRegistry,
    last_chosen: Mapping[str, int],
    *,
    id_type: str,
    id_value: str,
    sub_id: str | None,
    requester: str,
    version: str,
    tenant: str,
) -> Start:
    """`GET /parties/...` from the switch: a payee party lookup on an accepting engine."""
    variables: dict[str, Any] = {
        "tenant": tenant,
        "partyIdType": id_type,
        "partyIdentifier": id_value,
        "requester": requester,
        "fspiopVersion": version,
    }
    if sub_id is not None:
        variables["partySubIdOrType"] = sub_id
    return Start(
        tuple(new_work_engines(registry, last_chosen)), contract.PAYEE_PARTY_LOOKUP, variables
    )


def payee_quote(
    registry: EngineRegistry,
    last_chosen: Mapping[str, int],
    *,
    body: dict[str, Any],
    requester: str,
    version: str,
    tenant: str,
) -> Start:
    """`POST /quotes`: the payee quote-and-transfer process on an accepting engine."""
    variables = {
        "tenant": tenant,
        "quoteRequest": body,
        "quoteId": body["quoteId"],
        "transactionId": body["transactionId"],
        "requester": requester,
        "fspiopVersion": version,
    }
    return Start(
        tuple(new_work_engines(registry, last_chosen)), contract.PAYEE_QUOTE_TRANSFER, variables
    )


def _held_by(registry: EngineRegistry, engine: str | None, what: str) -> EngineInfo | Unroutable:
    if engine is None:
        return Unroutable("unknown-payee-id", f"no engine holds {what}")
    info = registry.by_name(engine)
    if info is None:
        return Unroutable("unknown-engine", f"{what} is held by {engine}, not listed")
    return info


def transfer_request(
    registry: EngineRegistry,
    holder: str | None,
    *,
    transaction_id: str,
    transfer_id: str,
    body: Any,
    headers: dict[str, str],
    content_hash: str,
    ttl_ms: int,
) -> Publish | Unroutable:
    """`POST /transfers` for a quote we gave: to the engine holding its transaction."""
    return _to_holder(
        registry,
        holder,
        what=f"transaction {transaction_id}",
        message=contract.MSG_TRANSFER_REQUEST,
        correlation_key=transaction_id,
        kind="transfer-request",
        transfer_id=transfer_id,
        body=body,
        headers=headers,
        content_hash=content_hash,
        ttl_ms=ttl_ms,
    )


def transfer_patch(
    registry: EngineRegistry,
    holder: str | None,
    *,
    transfer_id: str,
    body: Any,
    headers: dict[str, str],
    content_hash: str,
    ttl_ms: int,
) -> Publish | Unroutable:
    """`PATCH /transfers/{id}` (final state after RESERVED): to the engine holding the transfer."""
    return _to_holder(
        registry,
        holder,
        what=f"transfer {transfer_id}",
        message=contract.MSG_TRANSFER_PATCH,
        correlation_key=transfer_id,
        kind="transfer-patch",
        transfer_id=transfer_id,
        body=body,
        headers=headers,
        content_hash=content_hash,
        ttl_ms=ttl_ms,
    )


def _to_holder(
    registry: EngineRegistry,
    holder: str | None,
    *,
    what: str,
    message: str,
    correlation_key: str,
    kind: str,
    transfer_id: str,
    body: Any,
    headers: dict[str, str],
    content_hash: str,
    ttl_ms: int,
) -> Publish | Unroutable:
    """A payee-side message for the engine recorded as holding `what`."""
    engine = _held_by(registry, holder, what)
    if isinstance(engine, Unroutable):
        return engine
    return Publish(
        engine=engine.name,
        name=message,
        correlation_key=correlation_key,
        variables=contract.callback_variables(message, ok=True, body=body, headers=headers),
        message_id=message_id(kind, transfer_id, ok=True, content_hash=content_hash),
        ttl_ms=ttl_ms,
    )
