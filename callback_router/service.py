"""What the router does with a valid request: decide (routing.py), then make the result safe.

"Safe" means correlated on the owning engine, or written to the durable outbox, before
the switch gets its 200/202 (DESIGN.md section 4). New payee work is started on an accepting
engine, failing over to the next one when an engine cannot be reached; if none takes it, the
switch gets 503/2003 and nothing is remembered. Duplicate POSTs never start a second instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from collections.abc import Coroutine
from typing import Any

import httpx

from callback_router import routing
from callback_router.delivery import Delivery, DeliveryError, with_retries
from callback_router.metrics import RouterMetrics
from callback_router.outbox import Outbox
from callback_router.registry import RegistryStore
from callback_router.settings import RouterSettings
from callback_router.state import Claim, State
from callback_router.switch_client import SwitchClient
from callback_router.validation import Inbound
from phee import contract
from phee.contract import EngineInfo, EngineState
from phee.fspiop.errors import FspiopError
from phee.httpclient import async_client

log = logging.getLogger(__name__)

#: how often expired party waits, payee routes and request hashes are purged
PURGE_INTERVAL_S = 60.0


class RouterService:
    """The router's behaviour, independent of HTTP."""

    def __init__(
        self,
        settings: RouterSettings,
        registry: RegistryStore,
        state: State,
        outbox: Outbox,
        delivery: Delivery,
        switch: SwitchClient,
        metrics: RouterMetrics,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.state = state
        self.outbox = outbox
        self.delivery = delivery
        self.switch = switch
        self.metrics = metrics
        self.ready = False
        self._last_chosen: dict[str, int] = {}
        self._sequence = itertools.count()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._maintenance: asyncio.Task[None] | None = None
        # The engines' channel APIs, for asking an engine to send a callback again.
        self._engines_http = async_client(timeout=settings.engine_timeout_s)

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._maintenance = asyncio.create_task(self._maintain(), name="router-maintenance")

    async def stop(self, grace_s: float) -> None:
        """Let background work (error callbacks) finish within `grace_s`, then cancel it."""
        self.ready = False
        if self._maintenance is not None:
            self._maintenance.cancel()
            await asyncio.gather(self._maintenance, return_exceptions=True)
            self._maintenance = None
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._engines_http.aclose()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _maintain(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                gone = await self.state.purge(time.time())
                if gone:
                    log.info("purged %d expired routing row(s)", gone)
            await asyncio.sleep(PURGE_INTERVAL_S)

    # --- making messages safe ----------------------------------------------------------------
    async def deliver(self, message: routing.Publish) -> str:
        """Publish now, or store in the outbox; returns the outcome. Only raises if neither."""
        engine = self.registry.get().by_name(message.engine)
        if engine is None:
            reason = "engine not in the registry"
        elif engine.state == EngineState.DOWN:
            reason = "engine is down"
        elif self.outbox.pending_for(engine.name):
            reason = "queued behind undelivered messages"
        else:
            target = engine
            try:
                await asyncio.wait_for(
                    with_retries(
                        lambda: self.delivery.publish(target, message),
                        attempts=self.settings.direct_attempts,
                        idempotent=True,
                    ),
                    timeout=self.settings.direct_budget_s,
                )
            except DeliveryError as exc:
                if not exc.retryable:  # refused (late): report it, never drop it silently
                    await self.outbox.put(message, str(exc), dead=True)
                    return "dead"
                reason = str(exc)
            except TimeoutError:  # it may have arrived: the message id makes a redelivery safe
                reason = f"no answer within {self.settings.direct_budget_s} s"
            else:
                self.metrics.deliveries.labels(engine.name, "delivered").inc()
                return "delivered"
        log.warning(
            "message %s for %s to the outbox: %s", message.message_id, message.engine, reason
        )
        await self.outbox.put(message, reason)
        return "outboxed"

    async def start_new(self, start: routing.Start) -> EngineInfo:
        """Create the instance on the first candidate that takes it; 2003 when none does."""
        registry = self.registry.get()
        for name in start.candidates:
            engine = registry.by_name(name)
            if engine is None or engine.state != EngineState.ACCEPTING:
                continue
            call = functools.partial(self.delivery.start, engine, start.process_id, start.variables)
            try:
                key: str = await with_retries(
                    call, attempts=self.settings.direct_attempts, idempotent=False
                )
            except DeliveryError as exc:
                self.metrics.deliveries.labels(name, "failed").inc()
                log.warning("cannot start %s on %s: %s", start.process_id, name, exc)
                if exc.ambiguous:  # it may have started there: starting elsewhere could double it
                    raise FspiopError("2003", f"{name} did not answer in time") from exc
                continue
            self._last_chosen[name] = next(self._sequence)
            self.metrics.deliveries.labels(name, "started").inc()
            log.info("started %s instance %s on %s", start.process_id, key, name)
            return engine
        raise FspiopError("2003", "no accepting engine could take the request")

    def _unroutable(self, resource: str, decision: routing.Unroutable) -> None:
        log.warning("unroutable %s message (%s): %s", resource, decision.reason, decision.detail)
        self.metrics.unroutable.labels(resource, decision.reason).inc()

    # --- payer side: callbacks -----------------------------------------------------------------
    async def put_callback(self, inbound: Inbound, id_value: str, *, ok: bool) -> None:
        """`PUT /quotes/{id}[/error]` or `PUT /transfers/{id}[/error]`."""
        if inbound.resource == "quotes":
            message, owner = contract.MSG_QUOTE_CALLBACK, None
        else:  # a payee transfer's id is someone else's: the payee table knows its engine
            message = contract.MSG_TRANSFER_CALLBACK
            owner = await self.state.route_of("transfer", id_value, time.time())
        decision = routing.callback_for_id(
            self.registry.get(),
            message,
            id_value,
            ok=ok,
            body=inbound.body,
            headers=inbound.forwarded_headers(),
            content_hash=inbound.content_hash,
            ttl_ms=self.settings.message_ttl_ms,
            known_owner=owner,
        )
        if isinstance(decision, routing.Unroutable):
            self._unroutable(inbound.resource, decision)
        else:
            await self.deliver(decision)

    async def put_party(self, inbound: Inbound, party: str, *, ok: bool) -> None:
        """`PUT /parties/...[/error]`: one message per transaction waiting for that party."""
        fanout = routing.party_callbacks(
            self.registry.get(),
            await self.state.party_waits(party),
            party,
            time.time(),
            ok=ok,
            body=inbound.body,
            headers=inbound.forwarded_headers(),
            content_hash=inbound.content_hash,
            ttl_ms=self.settings.message_ttl_ms,
        )
        for message in fanout.publishes:
            await self.deliver(message)
        await self.state.consume_party_waits(fanout.satisfied)
        for skipped in fanout.skipped:
            self._unroutable("parties", skipped)
        if not fanout.publishes:
            self._unroutable(
                "parties", routing.Unroutable("no-waiter", f"nobody waits for {party}")
            )

    # --- payee side ----------------------------------------------------------------------------
    async def get_party(
        self, inbound: Inbound, id_type: str, id_value: str, sub: str | None
    ) -> None:
        """`GET /parties/...`: a payee party lookup on an accepting engine."""
        start = routing.payee_lookup(
            self.registry.get(),
            self._last_chosen,
            id_type=id_type,
            id_value=id_value,
            sub_id=sub,
            requester=inbound.source,
            version=inbound.answer_version,
            tenant=self.settings.tenant,
        )
        await self.start_new(start)

    async def _claim(self, inbound: Inbound, id_value: str) -> tuple[Claim, float]:
        now = time.time()
        expires = now + self.settings.payee_retention_s
        claim = await self.state.claim(
            inbound.resource, id_value, inbound.content_hash, now, expires
        )
        if claim == Claim.SAME:
            log.info("duplicate, resend requested: POST /%s %s", inbound.resource, id_value)
            self.metrics.duplicates.labels(inbound.resource, "same").inc()
        elif claim == Claim.MODIFIED:
            log.warning("modified request: POST /%s %s, answering 3106", inbound.resource, id_value)
            self.metrics.duplicates.labels(inbound.resource, "modified").inc()
            error = FspiopError("3106", f"{id_value} was received before with other content")
            self._spawn(
                self.switch.error_callback(
                    inbound.resource,
                    id_value,
                    error,
                    destination=inbound.source,
                    version=inbound.answer_version,
                )
            )
        return claim, expires

    async def _resend(self, resource: str, id_value: str, route: str, route_id: str) -> bool:
        """Ask the engine that holds `route_id` to send its callback for `id_value` again.

        A finished request's callback is resent; one still in flight has nothing stored yet and
        is left alone (its callback will come). Returns True when the engine resent it.
        """
        engine = await self.state.route_of(route, route_id, time.time())
        info = self.registry.get().by_name(engine) if engine else None
        if info is None or not info.channel_url:
            log.warning("no engine to resend %s %s (route %s)", resource, id_value, engine)
            self.metrics.resends.labels(resource, "no-engine").inc()
            return False
        url = f"{info.channel_url}/internal/resend/{resource}/{id_value}"
        try:
            resp = await self._engines_http.post(url)
        except httpx.HTTPError as err:
            log.warning("engine %s unreachable for a resend of %s: %s", info.name, id_value, err)
            self.metrics.resends.labels(resource, "unreachable").inc()
            return False
        outcome = "resent" if resp.status_code == 200 else "in-flight"
        self.metrics.resends.labels(resource, outcome).inc()
        log.info("resend of %s %s by %s: %s", resource, id_value, info.name, outcome)
        return resp.status_code == 200

    async def post_quote(self, inbound: Inbound) -> None:
        """`POST /quotes`: the payee process on an accepting engine; remember where it went."""
        body: dict[str, Any] = inbound.body
        quote_id = str(body["quoteId"])
        claim, expires = await self._claim(inbound, quote_id)
        if claim == Claim.SAME:
            self._spawn(self._resend("quotes", quote_id, "transaction", str(body["transactionId"])))
        if claim != Claim.NEW:
            return
        try:
            start = routing.payee_quote(
                self.registry.get(),
                self._last_chosen,
                body=body,
                requester=inbound.source,
                version=inbound.answer_version,
                tenant=self.settings.tenant,
            )
            engine = await self.start_new(start)
        except Exception:
            await self.state.release(inbound.resource, quote_id)
            raise
        await self.state.record_route(
            "transaction", str(body["transactionId"]), engine.name, expires
        )

    async def post_transfer(self, inbound: Inbound, transaction_id: str) -> None:
        """`POST /transfers`: to the engine holding the transaction named in the ILP packet."""
        transfer_id = str(inbound.body["transferId"])
        claim, expires = await self._claim(inbound, transfer_id)
        if claim == Claim.SAME:
            self._spawn(self._resend("transfers", transfer_id, "transfer", transfer_id))
        if claim != Claim.NEW:
            return
        holder = await self.state.route_of("transaction", transaction_id, time.time())
        decision = routing.transfer_request(
            self.registry.get(),
            holder,
            transaction_id=transaction_id,
            transfer_id=transfer_id,
            body=inbound.body,
            headers=inbound.forwarded_headers(),
            content_hash=inbound.content_hash,
            ttl_ms=self.settings.message_ttl_ms,
        )
        if isinstance(decision, routing.Unroutable):
            await self.state.release(inbound.resource, transfer_id)
            self._unroutable("transfers", decision)
            return
        await self.state.record_route("transfer", transfer_id, decision.engine, expires)
        await self.deliver(decision)

    async def patch_transfer(self, inbound: Inbound, transfer_id: str) -> None:
        """`PATCH /transfers/{id}`: to the engine that holds the payee transfer."""
        decision = routing.transfer_patch(
            self.registry.get(),
            await self.state.route_of("transfer", transfer_id, time.time()),
            transfer_id=transfer_id,
            body=inbound.body,
            headers=inbound.forwarded_headers(),
            content_hash=inbound.content_hash,
            ttl_ms=self.settings.message_ttl_ms,
        )
        if isinstance(decision, routing.Unroutable):
            self._unroutable("transfers", decision)
        else:
            await self.deliver(decision)

    async def get_transfer(self, inbound: Inbound, transfer_id: str) -> None:
        """`GET /transfers/{id}` for a transfer we are payee of: the engine sends its answer again.

        An unknown transfer, or one still in flight, is logged and counted (no callback yet).
        """
        self._spawn(self._resend("transfers", transfer_id, "transfer", transfer_id))
