"""The importer against real Kafka: dead letters, new engines without a restart, the lag metric.

Records are the captured export of two real payer payments (Zeebe 8.5.8), produced to fresh
topics as the exporter would (same key and value); the engines' own runs are in tests/e2e.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from pydantic import SecretStr

from backoffice import schema
from backoffice.db import Database
from backoffice.importer import Importer
from backoffice.outcome import Step
from backoffice.settings import BackofficeSettings
from harness.components import Running
from phee.contract import EngineInfo, EngineRegistry
from phee.kafka import Message, Producer, TopicPartition
from tests.support.backoffice import count, read_topic, run_importer_until, transfers

CAPTURE = Path(__file__).parents[1] / "resources" / "zeebe-payer-records.jsonl"
BAD = [
    b"this is not json",
    b'{"partitionId":1,"position":9000001,"key":1,"timestamp":1,"recordType":"EVENT",'
    b'"valueType":"QUANTUM_ENTANGLEMENT","intent":"CREATED","value":{}}',
    b'{"partitionId":1,"position":"soon"}',
]


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer(bootstrap)
    await producer.start()
    try:
        # one Zeebe partition -> one Kafka partition, in order, as the exporter does
        messages = [
            Message(value, key=json.dumps({"position": i}).encode(), partition=0)
            for i, value in enumerate(values)
        ]
        await producer.send(topic, messages)
    finally:
        await producer.stop()


class StepCounter:
    """Counts each step the importer reports, and the threads it ran on."""

    def __init__(self) -> None:
        self.counts: Counter[Step] = Counter()
        self.threads: dict[Step, set[str]] = {}

    @contextmanager
    def step(self, name: Step) -> Iterator[None]:
        yield
        self.counts[name] += 1
        self.threads.setdefault(name, set()).add(threading.current_thread().name)


def captured() -> list[bytes]:
    return [line.encode() for line in CAPTURE.read_text().splitlines()]


def settings_for(kafka: Running, tmp_path: Path, prefix: str, **extra: Any) -> BackofficeSettings:
    return BackofficeSettings(
        database_url=f"sqlite:///{tmp_path / 'bo.db'}",
        kafka_bootstrap=kafka.endpoint("bootstrap"),
        topic_prefix=prefix,
        group_id=f"g-{prefix}",
        dead_letter_topic=f"{prefix}dead",
        tenants=["default"],
        metadata_max_age_ms=1000,
        audit_key=SecretStr("audit-key-for-tests"),
        **extra,
    )


def test_bad_records_go_to_the_dead_letter_topic_and_the_import_goes_on(
    kafka: Running, tmp_path: Path
) -> None:
    prefix = f"bo{uuid.uuid4().hex[:6]}-"
    good = captured()
    values = good[:100] + BAD + good[100:]
    bootstrap = kafka.endpoint("bootstrap")
    asyncio.run(produce(bootstrap, f"{prefix}east", values))
    settings = settings_for(kafka, tmp_path, prefix, engines=["east"])
    db = Database(settings.database_url)
    before = REGISTRY.get_sample_value(
        "phee_backoffice_records_total", {"engine": "east", "outcome": "dead_letter"}
    )

    def done(_: Importer) -> bool:
        return (
            count(db, "default", schema.steps) == 146
            and count(db, "default", schema.variables) == 44
        )

    steps = StepCounter()
    importer = asyncio.run(run_importer_until(settings, done, deadline_s=60, observer=steps))
    rows = transfers(db, "default")
    assert sorted(r["status"] for r in rows) == ["COMMITTED", "COMMITTED"]
    # committed only after the write, up to the last record; every batch went through each step
    assert importer.committed == {TopicPartition(f"{prefix}east", 0): len(values)}
    batches = steps.counts[Step.COMMIT]
    assert batches == importer.batches >= 1
    for step in (Step.DECODE, Step.APPLY, Step.TRANSACTION, Step.CLAIM, Step.WRITE):
        assert steps.counts[step] == batches, step
    assert steps.counts[Step.LAG] >= batches
    assert steps.threads[Step.TRANSACTION].isdisjoint(steps.threads[Step.DECODE])
    dead = asyncio.run(read_topic(bootstrap, settings.dead_letter_topic))
    by_source = {dict(m.headers)["source"].decode(): m for m in dead}
    assert sorted(by_source) == [f"{prefix}east/0/{100 + i}" for i in range(3)]
    ordered = [by_source[f"{prefix}east/0/{100 + i}"] for i in range(3)]
    assert [m.value for m in ordered] == BAD
    reasons = [dict(m.headers)["reason"].decode() for m in ordered]
    assert reasons == ["malformed", "unknown-value-type", "malformed"]
    after = REGISTRY.get_sample_value(
        "phee_backoffice_records_total", {"engine": "east", "outcome": "dead_letter"}
    )
    assert (after or 0) - (before or 0) == 3


def test_a_new_engine_is_imported_without_a_restart_and_lag_drains_to_zero(
    kafka: Running, tmp_path: Path
) -> None:
    prefix = f"bo{uuid.uuid4().hex[:6]}-"
    bootstrap = kafka.endpoint("bootstrap")
    asyncio.run(produce(bootstrap, f"{prefix}east", captured()))
    # no engines configured: every topic with the prefix, found at the next metadata refresh
    settings = settings_for(kafka, tmp_path, prefix, batch_max=5)
    db = Database(settings.database_url)
    lags: list[float] = []
    west_sent: list[bool] = []

    class LagWatcher(Importer):
        """Reads the gauge each time the loop sets it (after every batch and idle poll)."""

        async def _measure_lag(self) -> None:
            await super()._measure_lag()
            lag = REGISTRY.get_sample_value(
                "phee_backoffice_lag_records", {"topic": f"{prefix}east", "partition": "0"}
            )
            if lag is not None:
                lags.append(lag)

    def done(importer: Importer) -> bool:
        if not west_sent and count(db, "default", schema.steps) == 146:
            asyncio.run(produce(bootstrap, f"{prefix}west", captured()))  # a new engine appears
            west_sent.append(True)
        engines = {r["engine"] for r in transfers(db, "default")}
        return engines == {"east", "west"} and count(db, "default", schema.steps) == 2 * 146

    asyncio.run(
        run_importer_until(
            settings, done, deadline_s=90, interval_s=0.05, importer_class=LagWatcher
        )
    )
    rows = transfers(db, "default")
    assert sorted((r["engine"], r["status"]) for r in rows) == [
        ("east", "COMMITTED"),
        ("east", "COMMITTED"),
        ("west", "COMMITTED"),
        ("west", "COMMITTED"),
    ]
    assert max(lags) > 0, "the lag gauge never showed the backlog"
    assert lags[-1] == 0


def test_engines_added_to_the_router_registry_are_imported_without_a_restart(
    kafka: Running, tmp_path: Path
) -> None:
    prefix = f"bo{uuid.uuid4().hex[:6]}-"
    bootstrap = kafka.endpoint("bootstrap")
    for engine in ("east", "west"):
        asyncio.run(produce(bootstrap, f"{prefix}{engine}", captured()))
    registry = tmp_path / "engines.json"

    def write_registry(names: list[str]) -> None:
        reg = EngineRegistry(
            engines=[
                EngineInfo(name=n, slot=i, engine_url=f"http://127.0.0.1:{26500 + i}/engine-rest")
                for i, n in enumerate(names)
            ]
        )
        registry.write_text(reg.model_dump_json())

    write_registry(["east"])
    settings = settings_for(
        kafka, tmp_path, prefix, registry_file=str(registry), registry_poll_s=0.5
    )
    db = Database(settings.database_url)
    seen: list[set[str]] = []

    def done(_: Importer) -> bool:
        engines = {r["engine"] for r in transfers(db, "default")}
        seen.append(engines)
        if engines == {"east"} and count(db, "default", schema.steps) == 146:
            write_registry(["east", "west"])  # the operator registers a new engine
        return engines == {"east", "west"} and count(db, "default", schema.steps) == 2 * 146

    asyncio.run(run_importer_until(settings, done, deadline_s=90, interval_s=0.2))
    # west's topic existed from the start, but was imported only once it was registered
    assert {"east"} in seen
    assert len(transfers(db, "default")) == 4
