"""Delivery to the engines: correlate messages and start instances over Operaton's REST API.

Every engine failure becomes a `DeliveryError` that says whether a retry can help and whether
the call may have taken effect anyway (a timeout). A message the engine refuses because no
instance waits for it is a late callback (the instance has ended: every process subscribes for
its whole life): not retryable, reported by the caller. Correlating the same callback twice sets
the same variables again, so a redelivery of something that did arrive changes nothing.
Clients are kept per engine and rebuilt when the registry gives the engine another address.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from callback_router.routing import Publish
from phee import contract
from phee.contract import EngineInfo
from phee.engine import EngineClient, EngineError, NoMatchingSubscription

log = logging.getLogger(__name__)
T = TypeVar("T")


class DeliveryError(Exception):
    """A message or instance that did not reach the engine.

    `retryable`: the same call may succeed later (engine unreachable, busy, slow).
    `ambiguous`: the engine may have acted anyway (timeout), so a retry elsewhere is unsafe.
    `late`: no instance waits for this message any more (it has ended).
    """

    def __init__(
        self, engine: str, reason: str, *, retryable: bool, ambiguous: bool, late: bool = False
    ) -> None:
        super().__init__(f"{engine}: {reason}")
        self.engine = engine
        self.reason = reason
        self.retryable = retryable
        self.ambiguous = ambiguous
        self.late = late


class Delivery(Protocol):
    """What the router needs from an engine; `EngineDelivery` is the real one."""

    async def publish(self, engine: EngineInfo, message: Publish) -> None:
        """Correlate a message (safe to repeat)."""

    async def start(self, engine: EngineInfo, process_id: str, variables: dict[str, Any]) -> str:
        """Create an instance; returns its id."""

    async def close(self) -> None:
        """Release connections."""


def map_error(engine: str, exc: EngineError, message: Publish | None = None) -> DeliveryError:
    """Our view of an engine failure: retry? may it have happened? a late callback?"""
    reason = f"{exc.kind}: {exc}"
    if isinstance(exc, NoMatchingSubscription):
        late = "late callback: nothing waits for it (its instance ended or moved past the wait)"
        if message is not None and _commits(message):
            late += "; a COMMITTED transfer arrived late: flagged for reconciliation"
        return DeliveryError(
            engine, f"{late}: {reason}", retryable=False, ambiguous=False, late=True
        )
    return DeliveryError(engine, reason, retryable=exc.retryable, ambiguous=exc.ambiguous)


def _commits(message: Publish) -> bool:
    if message.name != contract.MSG_TRANSFER_CALLBACK:
        return False
    callback = message.variables.get(contract.VAR_BY_MESSAGE[message.name]) or {}
    body = callback.get("body") if isinstance(callback, dict) else None
    return isinstance(body, dict) and body.get("transferState") == "COMMITTED"


class EngineDelivery:
    """One REST client per engine; every call bounded by `timeout_s`."""

    def __init__(self, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s
        self._clients: dict[str, tuple[str, EngineClient]] = {}

    async def _client(self, engine: EngineInfo) -> EngineClient:
        known = self._clients.get(engine.name)
        if known is not None and known[0] == engine.engine_url:
            return known[1]
        if known is not None:  # the engine moved
            await known[1].close()
        client = EngineClient(engine.engine_url, timeout_s=self.timeout_s)
        self._clients[engine.name] = (engine.engine_url, client)
        return client

    async def publish(self, engine: EngineInfo, message: Publish) -> None:
        client = await self._client(engine)
        by = contract.CORRELATE_BY[message.name]
        by_key = by == contract.BUSINESS_KEY
        try:
            await client.correlate(
                message.name,
                business_key=message.correlation_key if by_key else None,
                correlation_keys=None if by_key else {by: message.correlation_key},
                variables=message.variables,
                transient=contract.TRANSIENT_FLAGS,
            )
        except EngineError as exc:
            raise map_error(engine.name, exc, message) from exc

    async def start(self, engine: EngineInfo, process_id: str, variables: dict[str, Any]) -> str:
        client = await self._client(engine)
        # payee quotes: the transactionId (POST /transfers is correlated by it); lookups: fresh
        business_key = str(variables.get("transactionId") or f"lookup-{uuid.uuid4()}")
        try:
            return await client.start(process_id, business_key=business_key, variables=variables)
        except EngineError as exc:
            raise map_error(engine.name, exc) from exc

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for _url, client in clients.values():
            await client.close()


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    idempotent: bool,
    first_wait_s: float = 0.1,
) -> T:
    """Retry `call` on retryable `DeliveryError`s (tenacity, short backoff).

    Ambiguous failures (timeouts) are retried only for `idempotent` calls: a correlation can be
    repeated, an instance creation cannot.
    """

    def worth_it(exc: BaseException) -> bool:
        return (
            isinstance(exc, DeliveryError) and exc.retryable and (idempotent or not exc.ambiguous)
        )

    retrying = AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=first_wait_s, max=1.0),
        retry=retry_if_exception(worth_it),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover
