"""Kafka's errors as ours: `KafkaError` says whether trying again (later) may help."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager

from aiokafka import errors as _aio

log = logging.getLogger("phee.kafka")


class KafkaError(RuntimeError):
    """A Kafka call failed; `retryable` says whether trying again (later) may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


# aiokafka marks most transient broker answers `retriable`; these are transient as well: a
# request that timed out, a cluster not reachable yet, a group in the middle of a rebalance.
_ALSO_RETRYABLE: tuple[type[BaseException], ...] = (
    _aio.KafkaTimeoutError,
    _aio.KafkaUnavailableError,
    _aio.RebalanceInProgressError,
)


def mapped(err: BaseException, what: str) -> KafkaError:
    """aiokafka's error (or a timeout) as ours, saying whether a retry may help."""
    if isinstance(err, KafkaError):
        return err
    if isinstance(err, _aio.KafkaError):
        retryable = bool(err.retriable) or isinstance(err, _ALSO_RETRYABLE)
    else:  # TimeoutError, or a stopped consumer / a call the configuration forbids
        retryable = isinstance(err, TimeoutError)
    detail = str(err).strip() or type(err).__name__
    return KafkaError(f"{what}: {type(err).__name__}: {detail}", retryable=retryable)


CAUGHT = (_aio.KafkaError, _aio.ConsumerStoppedError, _aio.IllegalOperation, TimeoutError)


@contextmanager
def translated(what: str) -> Iterator[None]:
    try:
        yield
    except CAUGHT as err:
        raise mapped(err, what) from err


async def quietly(closing: Awaitable[object]) -> None:
    """Close after a failed start: the start's error is the one worth reporting."""
    try:
        await closing
    except CAUGHT as err:
        log.debug("closing after a failed start: %s", err)
