"""The consumer, the producer and the metadata probe, as every reader and writer here uses them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias

from aiokafka import (
    AIOKafkaClient,
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka import errors as _aio

from phee.kafka.errors import CAUGHT, KafkaError, mapped, quietly, translated

log = logging.getLogger("phee.kafka")

#: one record as read: key and value are raw bytes (callers decode them)
Record: TypeAlias = ConsumerRecord[bytes, bytes]
#: what one poll returns: records per partition, each list in offset order
Batch: TypeAlias = dict[TopicPartition, list[Record]]

#: aiokafka's default fetch size per partition (1 MiB)
DEFAULT_PARTITION_FETCH_BYTES = 1024 * 1024


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
            with translated("consumer start"):
                await self._consumer.start()
        except KafkaError:
            await quietly(self._consumer.stop())
            raise

    async def stop(self) -> None:
        """Leave the group and close the connections."""
        with translated("consumer stop"):
            await self._consumer.stop()

    def subscribe(self, topics: Sequence[str] = (), *, pattern: str | None = None) -> None:
        """Read `topics`, or every topic matching the regular expression `pattern` (topics
        created later are found at the next metadata refresh, `metadata_max_age_ms`)."""
        with translated("subscribe"):
            if pattern is not None:
                self._consumer.subscribe(pattern=pattern)
            else:
                self._consumer.subscribe(topics=list(topics))

    async def fetch(self, timeout_ms: int, max_records: int | None = None) -> Batch:
        """The records available now, or within `timeout_ms`; {} when none came."""
        with translated("fetch"):
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
        except CAUGHT as err:
            raise mapped(err, "commit") from err
        return True

    async def committed(self, tp: TopicPartition) -> int | None:
        """The group's last committed offset of `tp`, None when it has none."""
        with translated("committed"):
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
        with translated("end offsets"):
            ends: dict[TopicPartition, int] = await self._consumer.end_offsets(list(tps))
            return dict(ends)

    async def position(self, tp: TopicPartition) -> int | None:
        """The offset of the next record this consumer reads from `tp`; None if not assigned."""
        try:
            position: int = await self._consumer.position(tp)
        except _aio.IllegalStateError:  # revoked meanwhile
            return None
        except CAUGHT as err:
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
            with translated("producer start"):
                await self._producer.start()
        except KafkaError:
            await quietly(self._producer.stop())
            raise

    async def stop(self) -> None:
        """Flush what is queued and close."""
        with translated("producer stop"):
            await self._producer.stop()

    async def send(self, topic: str, messages: Iterable[Message]) -> None:
        """Send every message, then wait until the broker has acknowledged all of them: the
        sends share round trips instead of waiting for each in turn."""
        with translated(f"send to {topic}"):
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


# -- cluster metadata ------------------------------------------------------------------------------


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
        with translated("metadata"):
            await client.bootstrap()
        return [Broker(b.nodeId, b.host, b.port) for b in client.cluster.brokers()]
    finally:
        await client.close()
