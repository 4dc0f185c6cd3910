"""Kafka (KRaft): a consumer group resumes exactly after its last committed offset."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from harness.components import Running


async def _consume(consumer: AIOKafkaConsumer, count: int) -> list[int]:
    """Read exactly `count` messages (values are their sequence numbers)."""
    values: list[int] = []
    while len(values) < count:
        batch = await consumer.getmany(timeout_ms=1000, max_records=count - len(values))
        for records in batch.values():
            values.extend(int(r.value) for r in records if r.value is not None)
    return values


def _consumer(bootstrap: str, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        value_deserializer=lambda b: b.decode(),
    )


async def test_consumer_group_resumes_after_last_commit(kafka: Running) -> None:
    bootstrap = kafka.endpoint("bootstrap")
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    group = f"group-{uuid.uuid4().hex[:8]}"
    tp = TopicPartition(topic, 0)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, str(i).encode(), partition=0)
    finally:
        await producer.stop()

    first = _consumer(bootstrap, topic, group)
    await first.start()
    try:
        assert await _consume(first, 4) == [0, 1, 2, 3]
        await first.commit({tp: 4})  # processed 0..3
        assert await _consume(first, 2) == [4, 5]  # read but never committed
        assert await first.committed(tp) == 4
    finally:
        await first.stop()

    second = _consumer(bootstrap, topic, group)
    await second.start()
    try:
        assert await second.committed(tp) == 4
        # Exactly after the last commit: 4 and 5 come again, nothing before them does.
        assert await _consume(second, 6) == [4, 5, 6, 7, 8, 9]
        await second.commit()
        assert await second.committed(tp) == 10
    finally:
        await second.stop()
