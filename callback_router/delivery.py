"""The Zeebe adapter: publish messages and create instances on one engine's gateway (pyzeebe).

Every pyzeebe/gRPC failure becomes a `DeliveryError` that says whether a retry can help and
whether the call may have taken effect anyway (a timeout). A publish that Zeebe refuses because
the message id is still buffered means an earlier attempt got through: that counts as delivered.
Channels are kept per engine and rebuilt when the registry gives the engine another gateway;
reconnect backoff is capped low so that a restarted engine is found again within seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from pyzeebe import ZeebeClient, create_insecure_channel
from pyzeebe.errors import (
    InvalidJSONError,
    MessageAlreadyExistsError,
    ProcessDefinitionNotFoundError,
    PyZeebeError,
    UnknownGrpcStatusCodeError,
    ZeebeBackPressureError,
    ZeebeDeadlineExceeded,
    ZeebeGatewayUnavailableError,
    ZeebeInternalError,
)
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from callback_router.routing import Publish
from phee.contract import EngineInfo

log = logging.getLogger(__name__)
T = TypeVar("T")

#: gRPC reconnect backoff: the library default grows to 120 s, far too slow to find an engine
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)
#: gRPC status codes (by name: grpc ships no type stubs) worth another attempt
_RETRYABLE_CODES = frozenset(
    {"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "INTERNAL", "CANCELLED", "UNKNOWN"}
)


class DeliveryError(Exception):
    """A message or instance that did not reach the engine.

    `retryable`: the same call may succeed later (engine unreachable, busy, slow).
    `ambiguous`: the engine may have acted anyway (timeout), so a retry elsewhere is unsafe.
    """

    def __init__(self, engine: str, reason: str, *, retryable: bool, ambiguous: bool) -> None:
        super().__init__(f"{engine}: {reason}")
        self.engine = engine
        self.reason = reason
        self.retryable = retryable
        self.ambiguous = ambiguous


class Delivery(Protocol):
    """What the router needs from an engine; `ZeebeDelivery` is the real one."""

    async def publish(self, engine: EngineInfo, message: Publish) -> None:
        """Publish a message (idempotent by its message id)."""

    async def start(self, engine: EngineInfo, process_id: str, variables: dict[str, Any]) -> int:
        """Create an instance; returns its key."""

    async def close(self) -> None:
        """Release connections."""


def map_error(engine: str, exc: BaseException) -> DeliveryError:
    """Our view of a pyzeebe failure (it wraps every gRPC one): retry? may it have happened?"""
    reason = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, TimeoutError | ZeebeDeadlineExceeded | ZeebeInternalError):
        return DeliveryError(engine, reason, retryable=True, ambiguous=True)
    if isinstance(exc, ZeebeGatewayUnavailableError | ZeebeBackPressureError):
        return DeliveryError(engine, reason, retryable=True, ambiguous=False)
    if isinstance(exc, UnknownGrpcStatusCodeError):
        code = str(getattr(exc.grpc_error.code(), "name", ""))
        return DeliveryError(engine, reason, retryable=code in _RETRYABLE_CODES, ambiguous=False)
    if isinstance(exc, ProcessDefinitionNotFoundError | InvalidJSONError):
        return DeliveryError(engine, reason, retryable=False, ambiguous=False)
    return DeliveryError(engine, reason, retryable=False, ambiguous=False)


class ZeebeDelivery:
    """One gRPC channel per engine; every call bounded by `timeout_s`."""

    def __init__(self, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s
        self._clients: dict[str, tuple[str, Any, ZeebeClient]] = {}  # gateway, channel, client
        self._closing: set[asyncio.Task[None]] = set()

    def _client(self, engine: EngineInfo) -> ZeebeClient:
        known = self._clients.get(engine.name)
        if known is not None and known[0] == engine.gateway:
            return known[2]
        if known is not None:  # the engine moved: close the old channel in the background
            task = asyncio.ensure_future(known[1].close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        channel = create_insecure_channel(
            grpc_address=engine.gateway, channel_options=CHANNEL_OPTIONS
        )
        # -1: never give up on the channel (pyzeebe closes it after N failures otherwise)
        client = ZeebeClient(channel, max_connection_retries=-1)
        self._clients[engine.name] = (engine.gateway, channel, client)
        return client

    async def _call(self, engine: EngineInfo, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await asyncio.wait_for(call(), timeout=self.timeout_s)
        except (PyZeebeError, TimeoutError) as exc:
            raise map_error(engine.name, exc) from exc

    async def publish(self, engine: EngineInfo, message: Publish) -> None:
        client = self._client(engine)

        async def publish_once() -> None:
            try:
                await client.publish_message(
                    name=message.name,
                    correlation_key=message.correlation_key,
                    variables=message.variables,
                    time_to_live_in_milliseconds=message.ttl_ms,
                    message_id=message.message_id,
                )
            except MessageAlreadyExistsError:  # an earlier attempt got through
                log.info("message %s already buffered on %s", message.message_id, engine.name)

        await self._call(engine, publish_once)

    async def start(self, engine: EngineInfo, process_id: str, variables: dict[str, Any]) -> int:
        client = self._client(engine)
        response = await self._call(engine, lambda: client.run_process(process_id, variables))
        return int(response.process_instance_key)

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for _gateway, channel, _client in clients.values():
            await channel.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    idempotent: bool,
    first_wait_s: float = 0.1,
) -> T:
    """Retry `call` on retryable `DeliveryError`s (tenacity, short backoff).

    Ambiguous failures (timeouts) are retried only for `idempotent` calls: a publish carries a
    message id, an instance creation does not.
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
