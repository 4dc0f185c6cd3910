"""Kafka (KRaft) through the adapter `phee.kafka`, the only way the code reaches it.

What the back office's correctness leans on: a group resumes exactly after its last commit, a
commit after a rebalance is refused (and reported, not raised), readers never see an aborted
transaction, and failures come out as our `KafkaError` with the right `retryable`. The
transactional producer is aiokafka's own: the engines' exporter writes in transactions, nothing
of ours does, so the adapter has no reason to offer one.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from harness.components import Running
from harness.components.base import free_ports
from harness.components.kafka import metadata_brokers
from phee.kafka import (
    Broker,
    Consumer,
    Idle,
    KafkaError,
    Message,
    Producer,
    Record,
    ToEnd,
    TopicPartition,
    Until,
    brokers,
    consuming,
    read_from_start,
)


def _name(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:8]}"


async def _produce(bootstrap: str, topic: str, values: list[bytes], partition: int = 0) -> None:
    producer = Producer(bootstrap)
    await producer.start()
    try:
        await producer.send(topic, [Message(v, partition=partition) for v in values])
    finally:
        await producer.stop()


async def _consume(consumer: Consumer, count: int) -> list[int]:
    """Read exactly `count` messages (values are their sequence numbers)."""
    values: list[int] = []
    while len(values) < count:
        batch = await consumer.fetch(1000, max_records=count - len(values))
        for records in batch.values():
            values.extend(int(r.value) for r in records if r.value is not None)
    return values


def _value(record: Record) -> bytes | None:
    return record.value


async def test_consumer_group_resumes_after_last_commit(kafka: Running) -> None:
    bootstrap = kafka.endpoint("bootstrap")
    topic, group = _name("smoke"), _name("group")
    tp = TopicPartition(topic, 0)
    await _produce(bootstrap, topic, [str(i).encode() for i in range(10)])

    async with consuming(Consumer(bootstrap, topics=[topic], group_id=group)) as first:
        assert await _consume(first, 4) == [0, 1, 2, 3]
        assert await first.commit({tp: 4})  # processed 0..3
        assert await _consume(first, 2) == [4, 5]  # read but never committed
        assert await first.committed(tp) == 4

    async with consuming(Consumer(bootstrap, topics=[topic], group_id=group)) as second:
        assert await second.committed(tp) == 4
        # Exactly after the last commit: 4 and 5 come again, nothing before them does.
        assert await _consume(second, 6) == [4, 5, 6, 7, 8, 9]
        assert await second.commit({tp: 10})
        assert await second.committed(tp) == 10


async def test_a_commit_after_a_rebalance_is_refused_not_raised(kafka: Running) -> None:
    bootstrap = kafka.endpoint("bootstrap")
    topic, group = _name("rebalance"), _name("group")
    for partition in range(kafka.extra["partitions"]):
        await _produce(bootstrap, topic, [b"x"], partition=partition)
    a = Consumer(bootstrap, topics=[topic], group_id=group, client_id="member-a")
    b = Consumer(bootstrap, topics=[topic], group_id=group, client_id="member-b")
    async with consuming(a):
        every = set(await a.partitions())
        assert len(every) == kafka.extra["partitions"]
        assert await a.commit(dict.fromkeys(every, 1))
        async with consuming(b):
            end = time.monotonic() + 60
            while not (a.assignment() and b.assignment()) or a.assignment() & b.assignment():
                assert time.monotonic() < end, "the group never shared the partitions"
                await asyncio.gather(a.fetch(100), b.fetch(100))
            assert a.assignment() | b.assignment() == every
            # a still holds offsets for every partition: the group no longer lets it commit them
            assert not await a.commit(dict.fromkeys(every, 2))
            assert await a.committed(min(b.assignment())) == 1  # nothing was committed
            assert await b.commit(dict.fromkeys(b.assignment(), 2))


async def test_lag_counts_committed_records_not_read_yet(kafka: Running) -> None:
    bootstrap = kafka.endpoint("bootstrap")
    topic = _name("lag")
    tp = TopicPartition(topic, 0)
    await _produce(bootstrap, topic, [b"%d" % i for i in range(5)])
    consumer = Consumer(bootstrap, topics=[topic], group_id=_name("group"), max_poll_records=2)
    async with consuming(consumer):
        assert await _consume(consumer, 2) == [0, 1]
        assert (await consumer.lag())[tp] == 3
        assert await _consume(consumer, 3) == [2, 3, 4]
        assert (await consumer.lag())[tp] == 0


async def test_readers_see_committed_transactions_only_whatever_the_stopping_rule(
    kafka: Running,
) -> None:
    bootstrap = kafka.endpoint("bootstrap")
    topic = _name("tx")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=_name("tx"))
    await producer.start()
    try:
        for values, commit in (([b"1", b"2", b"3"], True), ([b"x", b"y"], False), ([b"4"], True)):
            await producer.begin_transaction()
            for v in values:
                await producer.send_and_wait(topic, v, partition=0)
            if commit:
                await producer.commit_transaction()
            else:
                await producer.abort_transaction()
    finally:
        await producer.stop()
    committed = [b"1", b"2", b"3", b"4"]

    assert await read_from_start(bootstrap, topic, ToEnd(timeout_s=30), decode=_value) == committed
    assert await read_from_start(bootstrap, topic, Idle(1.0), decode=_value) == committed
    until = Until[bytes | None](lambda items: b"4" in items, timeout_s=30)
    assert await read_from_start(bootstrap, topic, until, decode=_value) == committed
    records = await read_from_start(bootstrap, topic, ToEnd(timeout_s=30))
    assert [(r.partition, r.offset) for r in records][:3] == [(0, 0), (0, 1), (0, 2)]
    assert records[-1].offset > 3  # the aborted records and the markers took offsets


async def test_until_gives_up_after_its_timeout(kafka: Running) -> None:
    bootstrap = kafka.endpoint("bootstrap")
    topic = _name("empty")
    await _produce(bootstrap, topic, [b"only"])
    with pytest.raises(TimeoutError, match="after 1 records"):
        await read_from_start(bootstrap, topic, Until(lambda items: len(items) > 1, timeout_s=2))


async def test_failures_come_out_as_our_error_saying_whether_to_retry(kafka: Running) -> None:
    bootstrap = kafka.endpoint("bootstrap")
    (closed,) = free_ports(1)
    nowhere = f"127.0.0.1:{closed}"

    with pytest.raises(KafkaError) as refused:
        await Consumer(nowhere, topics=["t"]).start()
    assert refused.value.retryable  # the broker may come up
    with pytest.raises(KafkaError) as no_metadata:
        await brokers(nowhere, timeout_s=2)
    assert no_metadata.value.retryable
    assert metadata_brokers(nowhere, timeout_s=2) == []

    assert await brokers(bootstrap) == [Broker(1, "127.0.0.1", kafka.ports["broker"])]
    producer = Producer(bootstrap)
    await producer.start()
    try:
        with pytest.raises(KafkaError) as too_large:
            await producer.send(_name("big"), [Message(b"x" * (2 * 1024 * 1024))])
        assert not too_large.value.retryable  # the same record would be refused again
    finally:
        await producer.stop()
