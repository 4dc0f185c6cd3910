"""The one loop that reads topics from their first record, and its stopping rules."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, overload

from aiokafka import TopicPartition

from phee.kafka.clients import DEFAULT_PARTITION_FETCH_BYTES, Batch, Consumer, Record, consuming

Item = TypeVar("Item")


@dataclass(frozen=True)
class Progress(Generic[Item]):
    """What a stopping rule sees before each poll."""

    items: Sequence[Item]
    #: seconds since the last record arrived (or since reading began)
    quiet_s: float
    #: committed records between the positions and the ends noted when reading began;
    #: None unless the rule asks for it (`tracks_end`)
    behind: int | None = None


@dataclass(frozen=True)
class Until(Generic[Item]):
    """Stop once `condition(items)` holds; TimeoutError after `timeout_s`.

    The condition is called exactly once before each poll, so it may keep state."""

    condition: Callable[[Sequence[Item]], bool]
    timeout_s: float | None = 60.0
    tracks_end = False

    def done(self, progress: Progress[Item]) -> bool:
        return self.condition(progress.items)


@dataclass(frozen=True)
class Idle:
    """Stop once nothing arrived for `idle_s`: the writers are done (or paused that long)."""

    idle_s: float = 2.0
    timeout_s: float | None = None
    tracks_end = False

    def done(self, progress: Progress[Any]) -> bool:
        return progress.quiet_s >= self.idle_s


@dataclass(frozen=True)
class ToEnd:
    """Stop at the committed end the topics had when reading began (exact, no waiting)."""

    timeout_s: float | None = 120.0
    tracks_end = True

    def done(self, progress: Progress[Any]) -> bool:
        return progress.behind == 0


class _Reader(Protocol):
    """The part of `Consumer` the reading loop needs (tests give it a fake)."""

    async def fetch(self, timeout_ms: int, max_records: int | None = None) -> Batch: ...
    async def partitions(self, timeout_s: float = 30.0) -> list[TopicPartition]: ...
    async def end_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]: ...
    async def position(self, tp: TopicPartition) -> int | None: ...


def _as_is(record: Record) -> Record:
    return record


@overload
async def read_from_start(
    bootstrap: str,
    topics: str | Sequence[str],
    stop: Until[Record] | Idle | ToEnd,
    *,
    poll_ms: int = 500,
    max_records: int | None = None,
    max_partition_fetch_bytes: int = DEFAULT_PARTITION_FETCH_BYTES,
) -> list[Record]: ...


@overload
async def read_from_start(
    bootstrap: str,
    topics: str | Sequence[str],
    stop: Until[Item] | Idle | ToEnd,
    *,
    decode: Callable[[Record], Item | None],
    poll_ms: int = 500,
    max_records: int | None = None,
    max_partition_fetch_bytes: int = DEFAULT_PARTITION_FETCH_BYTES,
) -> list[Item]: ...


async def read_from_start(
    bootstrap: str,
    topics: str | Sequence[str],
    stop: Until[Any] | Idle | ToEnd,
    *,
    decode: Callable[[Record], Any] = _as_is,
    poll_ms: int = 500,
    max_records: int | None = None,
    max_partition_fetch_bytes: int = DEFAULT_PARTITION_FETCH_BYTES,
) -> list[Any]:
    """Every committed record of `topics` from the first, until `stop` says so.

    `decode` turns each record into the item kept (None drops it); the stopping rule sees the
    items. No consumer group: nothing is committed and nothing is left behind on the broker.
    """
    names = [topics] if isinstance(topics, str) else list(topics)
    consumer = Consumer(
        bootstrap, topics=names, max_partition_fetch_bytes=max_partition_fetch_bytes
    )
    async with consuming(consumer):
        return await drain_records(
            consumer, stop, decode, poll_ms=poll_ms, max_records=max_records, what=names
        )


async def drain_records(
    reader: _Reader,
    stop: Until[Any] | Idle | ToEnd,
    decode: Callable[[Record], Any],
    *,
    poll_ms: int,
    max_records: int | None,
    what: object,
    clock: Callable[[], float] = time.monotonic,
) -> list[Any]:
    """The reading loop: check the rule, poll, keep the decoded items; repeat."""
    items: list[Any] = []
    started = last = clock()
    ends: dict[TopicPartition, int] = {}
    if stop.tracks_end:
        ends = await reader.end_offsets(await reader.partitions())
    while True:
        behind = None
        if stop.tracks_end:
            behind = 0
            for tp, end in ends.items():
                behind += max(0, end - (await reader.position(tp) or 0))
        now = clock()
        if stop.done(Progress(items, now - last, behind)):
            return items
        if stop.timeout_s is not None and now - started > stop.timeout_s:
            raise TimeoutError(
                f"{what}: {stop} not met after {len(items)} records in {stop.timeout_s} s"
            )
        batch = await reader.fetch(poll_ms, max_records)
        if batch:
            last = clock()
            for records in batch.values():
                for record in records:
                    item = decode(record)
                    if item is not None:
                        items.append(item)
