"""The Kafka adapter without a broker: which errors are worth a retry, and the reading loop's
stopping rules (driven by a scripted reader and a fake clock). tests/integration/test_kafka.py
runs the same code against a real Kafka."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest
from aiokafka import ConsumerRecord
from aiokafka import errors as aio

from phee.kafka import (
    Batch,
    Idle,
    KafkaError,
    Progress,
    Record,
    ToEnd,
    TopicPartition,
    Until,
    mapped,
)
from phee.kafka.reading import drain_records

TP0 = TopicPartition("t", 0)
TP1 = TopicPartition("t", 1)


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "err",
    [
        aio.KafkaConnectionError("refused"),
        aio.NoBrokersAvailable(),
        aio.NodeNotReadyError(),
        aio.RequestTimedOutError(),
        aio.NotLeaderForPartitionError(),
        aio.LeaderNotAvailableError(),
        aio.UnknownTopicOrPartitionError(),
        aio.GroupCoordinatorNotAvailableError(),
        aio.NotEnoughReplicasError(),
        # not marked retriable by aiokafka, but transient all the same
        aio.KafkaTimeoutError(),
        aio.KafkaUnavailableError(),
        aio.RebalanceInProgressError(),
        TimeoutError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transient_failures_are_worth_a_retry(err: BaseException) -> None:
    ours = mapped(err, "fetch")
    assert isinstance(ours, KafkaError)
    assert ours.retryable
    assert str(ours).startswith(f"fetch: {type(err).__name__}")


@pytest.mark.parametrize(
    "err",
    [
        aio.MessageSizeTooLargeError(),
        aio.RecordTooLargeError(),
        aio.AuthenticationFailedError(),
        aio.TopicAuthorizationFailedError(),
        aio.KafkaConfigurationError("bad setting"),
        aio.InvalidTopicError(),
        aio.UnsupportedVersionError(),
        aio.ProducerFenced(),
        aio.ConsumerStoppedError(),
        aio.IllegalOperation("Requires group_id"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_failures_a_retry_cannot_fix_are_not_retryable(err: BaseException) -> None:
    ours = mapped(err, "send")
    assert not ours.retryable
    assert type(err).__name__ in str(ours)


def test_our_error_passes_through_unchanged() -> None:
    ours = KafkaError("no partitions", retryable=True)
    assert mapped(ours, "anything") is ours


# -- stopping rules -------------------------------------------------------------------------------


def test_until_asks_its_condition_about_the_items() -> None:
    rule = Until[int](lambda items: sum(items) >= 3)
    assert not rule.done(Progress([1, 1], quiet_s=99.0))
    assert rule.done(Progress([1, 2], quiet_s=0.0))


def test_idle_counts_quiet_time_only() -> None:
    rule = Idle(idle_s=2.0)
    assert not rule.done(Progress(list(range(1000)), quiet_s=1.9))
    assert rule.done(Progress([], quiet_s=2.0))


def test_to_end_stops_only_when_nothing_is_left_behind() -> None:
    rule = ToEnd()
    assert rule.tracks_end
    assert not rule.done(Progress([], quiet_s=60.0, behind=1))
    assert not rule.done(Progress([], quiet_s=60.0, behind=None))
    assert rule.done(Progress([], quiet_s=0.0, behind=0))


# -- the reading loop -----------------------------------------------------------------------------


def record(tp: TopicPartition, offset: int, value: bytes | None = b"v") -> Record:
    return ConsumerRecord(
        topic=tp.topic,
        partition=tp.partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value or b""),
        headers=[],
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ScriptedReader:
    """Hands out the scripted batches one per poll (then empty polls); every poll takes
    `poll_s` on the fake clock, as a real poll waits when nothing comes."""

    def __init__(
        self,
        clock: Clock,
        batches: Sequence[Batch],
        ends: dict[TopicPartition, int] | None = None,
        poll_s: float = 0.5,
    ) -> None:
        self.clock = clock
        self.batches = list(batches)
        self.ends = ends or {}
        self.positions = dict.fromkeys(self.ends, 0)
        self.poll_s = poll_s
        self.polls = 0

    async def fetch(self, timeout_ms: int, max_records: int | None = None) -> Batch:
        self.polls += 1
        self.clock.now += self.poll_s
        batch = self.batches.pop(0) if self.batches else {}
        for tp, records in batch.items():
            self.positions[tp] = records[-1].offset + 1
        return batch

    async def partitions(self, timeout_s: float = 30.0) -> list[TopicPartition]:
        return sorted(self.ends)

    async def end_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[tp] for tp in tps}

    async def position(self, tp: TopicPartition) -> int | None:
        return self.positions[tp]


def value(r: Record) -> bytes | None:
    return r.value


async def drain(reader: ScriptedReader, stop: Until[bytes] | Idle | ToEnd) -> list[bytes]:
    return await drain_records(
        reader, stop, value, poll_ms=500, max_records=None, what="t", clock=reader.clock
    )


async def test_until_checks_before_every_poll_and_keeps_decoded_items() -> None:
    clock = Clock()
    batches: list[Batch] = [
        {TP0: [record(TP0, 0, b"a"), record(TP0, 1, None)]},  # a tombstone: decoded to None
        {},
        {TP1: [record(TP1, 0, b"b")]},
        {TP0: [record(TP0, 2, b"c")]},
    ]
    reader = ScriptedReader(clock, batches)
    checks: list[list[bytes]] = []

    def condition(items: Sequence[bytes]) -> bool:
        checks.append(list(items))
        return b"b" in items

    assert await drain(reader, Until(condition)) == [b"a", b"b"]
    # once before each poll, and once more when it holds; nothing is read past that point
    assert checks == [[], [b"a"], [b"a"], [b"a", b"b"]]
    assert reader.polls == 3


async def test_until_gives_up_after_its_timeout() -> None:
    reader = ScriptedReader(Clock(), [{TP0: [record(TP0, 0)]}])
    with pytest.raises(TimeoutError, match=r"after 1 records in 2\.0 s"):
        await drain(reader, Until(lambda items: False, timeout_s=2.0))
    assert reader.polls == 5  # 2.5 s of polls: the first check past the deadline stops it


async def test_idle_stops_after_quiet_time_and_restarts_its_count_on_arrival() -> None:
    batches: list[Batch] = [
        {TP0: [record(TP0, 0)]},
        {},
        {},
        {},
        {TP0: [record(TP0, 1)]},  # 1.5 s of quiet, not enough: the count restarts
    ]
    reader = ScriptedReader(Clock(), batches)
    assert len(await drain(reader, Idle(idle_s=2.0))) == 2
    assert reader.polls == 5 + 4  # four empty polls (2 s) after the last arrival


async def test_idle_on_an_empty_topic_ends_after_the_quiet_time() -> None:
    reader = ScriptedReader(Clock(), [])
    assert await drain(reader, Idle(idle_s=1.0)) == []
    assert reader.polls == 2


async def test_to_end_reads_exactly_to_the_ends_noted_at_the_start() -> None:
    # TP0 holds three records, TP1 none
    batches: list[Batch] = [{TP0: [record(TP0, 0)]}, {TP0: [record(TP0, 1), record(TP0, 2)]}]
    reader = ScriptedReader(Clock(), batches, ends={TP0: 3, TP1: 0}, poll_s=0.0)
    assert len(await drain(reader, ToEnd())) == 3
    assert reader.polls == 2  # no idle wait at the end


async def test_to_end_of_empty_topics_needs_no_poll() -> None:
    reader = ScriptedReader(Clock(), [], ends={TP0: 0})
    assert await drain(reader, ToEnd()) == []
    assert reader.polls == 0
