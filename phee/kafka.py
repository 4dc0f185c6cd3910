"""The Kafka adapter: the only module that imports aiokafka (import-linter contract "kafka-client").

Every reader of the engines' export topics goes through here, so all of them agree on what
decides correctness:
* `read_committed` always: the exporter writes in Kafka transactions, and a reader that saw an
  aborted batch would import records that never happened;
* offsets are committed only when the caller says so, after its own write (never auto-commit),
  and a commit refused after a rebalance is an outcome ("not committed"), not a crash;
* aiokafka's errors come out as our `KafkaError`, whose `retryable` says whether trying again
  may help (a broker away, a leader moving) or not (a record too large, a bad configuration).

`read_from_start` is the one loop that reads topics from their first record, with three
stopping rules: `Until` a condition holds, `Idle` (nothing new for a while), `ToEnd` (the
committed end the topics had when reading began).

One module on purpose, hence its length: the import rule names it, and everything aiokafka
can do to us is handled in one place.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, Protocol, TypeAlias, TypeVar, overload

from aiokafka import (
    AIOKafkaClient,
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka import errors as _aio

__all__ = [
    "Batch",
    "Broker",
    "Consumer",
    "Idle",
    "KafkaError",
    "Message",
    "Producer",
    "Progress",
    "Record",
    "ToEnd",
    "TopicPartition",
    "Until",
    "brokers",
    "consuming",
    "mapped",
    "read_from_start",
]

log = logging.getLogger(__name__)

#: one record as read: key and value are raw bytes (callers decode them)
Record: TypeAlias = ConsumerRecord[bytes, bytes]
#: what one poll returns: records per partition, each list in offset order
Batch: TypeAlias = dict[TopicPartition, list[Record]]

Item = TypeVar("Item")

#: aiokafka's default fetch size per partition (1 MiB)
DEFAULT_PARTITION_FETCH_BYTES = 1024 * 1024


# -- errors ---------------------------------------------------------------------------------------


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


_CAUGHT = (_aio.KafkaError, _aio.ConsumerStoppedError, _aio.IllegalOperation, TimeoutError)


@contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except _CAUGHT as err:
        raise mapped(err, what) from err


async def _quietly(closing: Awaitable[object]) -> None:
    """Close after a failed start: the start's error is the one worth reporting."""
    try:
        await closing
    except _CAUGHT as err:
        log.debug("closing after a failed start: %s", err)


# -- consumer -------------------------------------------------------------------------------------


class Consumer:
    """A consumer that sees only committed transactions and commits only when told to.

    Without `group_id` it takes every partition of its topics and starts at their first record
    (readers, checks); with one it shares them with the group and resumes after the group's
    last commit, or at the first record when the group has none.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        topics: Sequence[str] = (),
        group_id: str | None = None,
        client_id: str = "phee",
        metadata_max_age_ms: int = 300_000,
        max_poll_records: int | None = None,
        max_partition_fetch_bytes: int = DEFAULT_PARTITION_FETCH_BYTES,
    ) -> None:
        self._consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            group_id=group_id,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            metadata_max_age_ms=metadata_max_age_ms,
            max_poll_records=max_poll_records,
            max_partition_fetch_bytes=max_partition_fetch_bytes,
        )

    async def start(self) -> None:
        """Connect (and join the group); on failure nothing is left open."""
        try:
            with _translated("consumer start"):
                await self._consumer.start()
        except KafkaError:
            await _quietly(self._consumer.stop())
            raise

    async def stop(self) -> None:
        """Leave the group and close the connections."""
        with _translated("consumer stop"):
            await self._consumer.stop()

    def subscribe(self, topics: Sequence[str] = (), *, pattern: str | None = None) -> None:
        """Read `topics`, or every topic matching the regular expression `pattern` (topics
        created later are found at the next metadata refresh, `metadata_max_age_ms`)."""
        with _translated("subscribe"):
            if pattern is not None:
                self._consumer.subscribe(pattern=pattern)
            else:
                self._consumer.subscribe(topics=list(topics))

    async def fetch(self, timeout_ms: int, max_records: int | None = None) -> Batch:
        """The records available now, or within `timeout_ms`; {} when none came."""
        with _translated("fetch"):
            batch: Batch = await self._consumer.getmany(
                timeout_ms=timeout_ms, max_records=max_records
            )
            return batch

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> bool:
        """Commit `offsets` (per partition, the next offset to read) for the group.

        False when the group has rebalanced and some of these partitions went to another
        member: nothing is committed, and their new owner replays from the last commit.
        """
        try:
            await self._consumer.commit(dict(offsets))
        except (_aio.CommitFailedError, _aio.IllegalStateError) as err:
            log.debug("commit refused: %s", err)
            return False
        except _CAUGHT as err:
            raise mapped(err, "commit") from err
        return True

    async def committed(self, tp: TopicPartition) -> int | None:
        """The group's last committed offset of `tp`, None when it has none."""
        with _translated("committed"):
            offset: int | None = await self._consumer.committed(tp)
            return offset

    def assignment(self) -> set[TopicPartition]:
        """The partitions this consumer reads now (empty before and during a rebalance)."""
        assigned: set[TopicPartition] = self._consumer.assignment()
        return assigned

    async def partitions(self, timeout_s: float = 30.0) -> list[TopicPartition]:
        """The assigned partitions, sorted, once there are any (waits up to `timeout_s`)."""
        end = time.monotonic() + timeout_s
        while not self._consumer.assignment():
            if time.monotonic() > end:
                raise KafkaError(f"no partitions assigned within {timeout_s} s", retryable=True)
            await asyncio.sleep(0.1)  # poll interval; the deadline bounds the wait
        return sorted(self._consumer.assignment())

    async def end_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Per partition, the offset just past the last committed record (read_committed)."""
        with _translated("end offsets"):
            ends: dict[TopicPartition, int] = await self._consumer.end_offsets(list(tps))
            return dict(ends)

    async def position(self, tp: TopicPartition) -> int | None:
        """The offset of the next record this consumer reads from `tp`; None if not assigned."""
        try:
            position: int = await self._consumer.position(tp)
        except _aio.IllegalStateError:  # revoked meanwhile
            return None
        except _CAUGHT as err:
            raise mapped(err, "position") from err
        return position

    async def lag(self) -> dict[TopicPartition, int]:
        """Committed records not read yet, per assigned partition whose end is known.

        The end is the last stable offset (open transactions are not readable yet), or the
        high watermark before the first fetch has reported one."""
        out: dict[TopicPartition, int] = {}
        for tp in self._consumer.assignment():
            end = self._consumer.last_stable_offset(tp)
            if end is None:
                end = self._consumer.highwater(tp)
            if end is None:
                continue
            position = await self.position(tp)
            if position is not None:
                out[tp] = max(0, end - position)
        return out


@asynccontextmanager
async def consuming(consumer: Consumer) -> AsyncIterator[Consumer]:
    """Start `consumer`, stop it on the way out."""
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


# -- producer -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One record to send."""

    value: bytes
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = ()
    #: None: the partitioner picks one from the key
    partition: int | None = None


class Producer:
    """A producer whose acknowledged messages are on every in-sync replica (acks=all) and
    whose retries never write a message twice (idempotence)."""

    def __init__(self, bootstrap: str, *, client_id: str = "phee") -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
        )

    async def start(self) -> None:
        """Connect; on failure nothing is left open."""
        try:
            with _translated("producer start"):
                await self._producer.start()
        except KafkaError:
            await _quietly(self._producer.stop())
            raise

    async def stop(self) -> None:
        """Flush what is queued and close."""
        with _translated("producer stop"):
            await self._producer.stop()

    async def send(self, topic: str, messages: Iterable[Message]) -> None:
        """Send every message, then wait until the broker has acknowledged all of them: the
        sends share round trips instead of waiting for each in turn."""
        with _translated(f"send to {topic}"):
            acks = [
                await self._producer.send(
                    topic,
                    m.value,
                    key=m.key,
                    partition=m.partition,
                    headers=list(m.headers) or None,
                )
                for m in messages
            ]
            for ack in acks:
                await ack


# -- reading topics from the start ----------------------------------------------------------------


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
        return await _drain(
            consumer, stop, decode, poll_ms=poll_ms, max_records=max_records, what=names
        )


async def _drain(
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


# -- cluster metadata -----------------------------------------------------------------------------


class Broker(NamedTuple):
    node_id: int
    host: str
    port: int


async def brokers(bootstrap: str, timeout_s: float = 3.0) -> list[Broker]:
    """The brokers the cluster's metadata lists. A readiness probe asks this rather than
    checking the port: a broker accepts connections before it has joined its own quorum, and
    lists itself only once it has."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        with _translated("metadata"):
            await client.bootstrap()
        return [Broker(b.nodeId, b.host, b.port) for b in client.cluster.brokers()]
    finally:
        await client.close()
