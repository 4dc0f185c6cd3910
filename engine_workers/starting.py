"""Starting a payer instance when the engine's answer may be lost.

The engine does not make business keys unique, and a start whose answer was lost (timeout,
connection reset, 5xx) may have created the instance anyway. So a start is retried only after
asking the engine whether an instance with this business key (the transactionId) exists; a
second instance that slips through anyway (the first start still in flight) ends at its first
task, which claims the payment (`PaymentStore.claim`). A payment is reported FAILED only when
the engine certainly has no instance: every attempt was refused outright, or the sweeper
(`sweep_unstarted`) finds none long after the last attempt; a late instance then cannot claim.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from phee import contract
from phee.engine import EngineClient, EngineError

log = logging.getLogger("engine_workers.starting")


class Started(StrEnum):
    STARTED = "started"  # the engine has an instance for this payment
    REFUSED = "refused"  # it certainly has none: safe to report FAILED
    UNKNOWN = "unknown"  # it may have one: report RECEIVED, the sweeper or a retry decides


class PayerStarts(Protocol):
    """What the channel needs from the engine to start payer instances."""

    async def start(self, business_key: str, variables: dict[str, Any]) -> None: ...
    async def known(self, business_key: str) -> bool: ...


class EngineStarts:
    """`PayerStarts` over the engine's REST API.

    `definition_id`: the payer definition this process deployed; its payments start on exactly
    that version (its waits, its tasks), whatever another replica deployed since, and the
    engine skips looking the latest version up on every start. None: the latest version."""

    def __init__(self, engine: EngineClient, definition_id: str | None = None) -> None:
        self._engine = engine
        self._definition_id = definition_id

    async def start(self, business_key: str, variables: dict[str, Any]) -> None:
        await self._engine.start(
            contract.PAYER_TRANSFER,
            business_key=business_key,
            variables=variables,
            definition_id=self._definition_id,
        )

    async def known(self, business_key: str) -> bool:
        return bool(await self._engine.historic_instances(business_key=business_key))


def _worth_retry(exc: BaseException) -> bool:
    return isinstance(exc, EngineError) and exc.retryable


async def start_payment(
    starts: PayerStarts,
    business_key: str,
    variables: dict[str, Any],
    *,
    attempts: int,
    first_wait_s: float = 0.2,
) -> Started:
    """Start the payer instance for `business_key` unless the engine has one already."""
    maybe = False  # an earlier attempt may have created the instance

    async def attempt() -> Started:
        nonlocal maybe
        if maybe and await starts.known(business_key):
            return Started.STARTED
        try:
            await starts.start(business_key, variables)
        except EngineError as err:
            maybe = maybe or err.ambiguous
            log.warning("start of %s failed (%s): %s", business_key, err.kind, err)
            raise
        return Started.STARTED

    retrying = AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=first_wait_s, max=2.0),
        retry=retry_if_exception(_worth_retry),
        reraise=True,
    )
    try:
        async for tried in retrying:
            with tried:
                return await attempt()
    except EngineError:
        pass
    try:
        if maybe and await starts.known(business_key):
            return Started.STARTED
    except EngineError:
        return Started.UNKNOWN
    return Started.UNKNOWN if maybe else Started.REFUSED


def unstarted_cutoff(now: datetime, grace_s: float) -> datetime:
    """Payments received before this and still without an instance are checked by the sweeper."""
    return now - timedelta(seconds=grace_s)


def utcnow() -> datetime:
    return datetime.now(UTC)
