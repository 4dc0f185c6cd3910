"""Benchmark: back office import throughput (records/s), Kafka into PostgreSQL (+ search).

Records are Debezium change events of Operaton's history, synthesised from a real capture
(tests/resources/cdc/backoffice-records.jsonl: three payments through Operaton 1.0.3 and
Debezium 3.6.1, made by `python -m tests.support.cdc_payments`). Each synthetic payment is one of
the captured payments with fresh ids (every UUID and business key replaced) and its own LSNs, so
its positions are unique; records go to `<engine>.public.act_hi_<table>` (one partition each, as
Connect creates them), in the capture's order per table, for two engines.

Then, alternating, on a fresh database and a fresh consumer group each round:
* baseline: a plain group consumer (`phee.kafka.Consumer`, a thin wrapper over aiokafka:
  read_committed, 5000 records per poll) reads every topic and inserts every record raw into
  one PostgreSQL table, one executemany INSERT + commit + offset commit per poll;
* importer: `backoffice.importer.Importer` (migrations and provisioning in `start()`, untimed).
Both are timed from the first batch fetched to the batch holding each partition's last record
committed, and both divide the same record count (every record in the topics, the ones the
importer ignores included). The importer's finish is exact: its committed offsets cover each
partition's last record, and afterwards `seen_records` must hold exactly the records it keeps.

    uv run --frozen python benchmarks/import_throughput.py [--payments 2000] [--rounds 3]

`--opensearch` indexes transfers too. `--profile` adds two untimed importer rounds: one with
timers around each step (where the time goes), one under cProfile (both threads: the event loop
and the batch thread). Both watch the importer through its own step observer
(`backoffice.outcome.StepObserver`), as does the clock of every importer round.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import platform
import pstats
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import SecretStr
from sqlalchemy import (
    BigInteger,
    Column,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    create_engine,
    func,
    select,
    text,
)
from sqlalchemy.engine import make_url

from backoffice import schema
from backoffice.db import Database
from backoffice.importer import RECORDS, Importer
from backoffice.mapping import classify
from backoffice.outcome import Step, StepObserver
from backoffice.records import decode, split_topic
from backoffice.settings import BackofficeSettings
from harness.components import Running, get
from phee.kafka import (
    Batch,
    Consumer,
    Message,
    Producer,
    Record,
    ToEnd,
    TopicPartition,
    read_from_start,
)
from phee.sql import SqlOptions, make_engine

ENGINES = ["engine-a", "engine-b"]
BATCH = 5000
FETCH_BYTES = 8 * 1024 * 1024  # per partition, as the importer fetches
GOAL_RATE = 10_000.0
GOAL_RATIO = 0.6


@dataclass
class Topics:
    """What the two topics hold: the measurement's fixed target."""

    bootstrap: str
    #: per Kafka partition, the offset just past its last committed record
    ends: dict[TopicPartition, int]
    per_engine: dict[str, int]
    #: records the importer keeps (and so marks seen); the others it ignores
    kept: int

    @property
    def total(self) -> int:
        return sum(self.per_engine.values())


@dataclass
class Round:
    kind: str
    records: int
    seconds: float
    batches: int
    note: str = ""

    @property
    def rate(self) -> float:
        return self.records / self.seconds


# -- synthetic records from a real capture ---------------------------------------------------------

CAPTURE = Path(__file__).parents[1] / "tests" / "resources" / "cdc" / "backoffice-records.jsonl"
TENANT = "default"
_IDS = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{20}")
#: LSN distance between two synthetic payments (the capture spans far less)
_LSN_STEP = 1 << 24


def templates() -> list[tuple[str, bytes, bytes]]:
    """(table, key, value) of every captured record, in capture order."""
    out = []
    for line in CAPTURE.read_text().splitlines():
        doc = orjson.loads(line)
        split = split_topic(doc["topic"])
        assert split is not None
        out.append((split[1], doc["key"].encode(), doc["value"].encode()))
    return out


class _Swap:
    """Replaces each id by a fresh one, the same id by the same fresh one (one payment copy)."""

    def __init__(self) -> None:
        self.fresh: dict[bytes, bytes] = {}

    def __call__(self, m: re.Match[bytes]) -> bytes:
        old = m.group(0)
        if old not in self.fresh:
            new = uuid.uuid4()
            self.fresh[old] = new.hex[:20].encode() if len(old) == 20 else str(new).encode()
        return self.fresh[old]


def synthesise(engine: str, copies: int) -> dict[str, list[tuple[bytes, bytes]]]:
    """`copies` of the capture for `engine`: per topic, (key, value) in order."""
    base = templates()
    first_lsn = min(orjson.loads(v)["source"]["lsn"] for _, _, v in base)
    out: dict[str, list[tuple[bytes, bytes]]] = defaultdict(list)
    for i in range(copies):
        swap = _Swap()
        for table, key, value in base:
            doc = orjson.loads(_IDS.sub(swap, value))
            doc["source"]["name"] = engine
            doc["source"]["lsn"] = doc["source"]["lsn"] - first_lsn + (i + 1) * _LSN_STEP
            out[f"{engine}.public.{table}"].append((_IDS.sub(swap, key), orjson.dumps(doc)))
    return out


async def produce(bootstrap: str, copies: int) -> None:
    producer = Producer(bootstrap)
    await producer.start()
    try:
        for engine in ENGINES:
            for topic, records in synthesise(engine, copies).items():
                for i in range(0, len(records), 2000):
                    chunk = records[i : i + 2000]
                    await producer.send(topic, [Message(v, key=k, partition=0) for k, v in chunk])
    finally:
        await producer.stop()


def topic_names(bootstrap: str) -> list[str]:
    async def names() -> list[str]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            return sorted(t for t in await consumer.topics() if split_topic(t))
        finally:
            await consumer.stop()

    return asyncio.run(names())


@dataclass(frozen=True)
class _Seen:
    """What counting keeps of one record."""

    tp: TopicPartition
    offset: int
    kept: bool


def _seen(msg: Record) -> _Seen:
    split = split_topic(msg.topic)
    assert split is not None
    rec = decode(split[0], split[1], msg.key, msg.value)
    return _Seen(TopicPartition(msg.topic, msg.partition), msg.offset, classify(rec) != "ignored")


async def count_topics(bootstrap: str, topics: list[str]) -> Topics:
    """Read every topic to its committed end: records, last offsets, records kept."""
    seen = await read_from_start(
        bootstrap,
        topics,
        ToEnd(timeout_s=120),
        decode=_seen,
        max_records=BATCH,
        max_partition_fetch_bytes=FETCH_BYTES,
    )
    ends: dict[TopicPartition, int] = {}
    per_engine: Counter[str] = Counter()
    for s in seen:
        per_engine[s.tp.topic.split(".")[0]] += 1
        ends[s.tp] = max(ends.get(s.tp, 0), s.offset + 1)
    return Topics(bootstrap, ends, dict(per_engine), sum(s.kept for s in seen))


# -- databases ------------------------------------------------------------------------------------


def fresh_database(server_url: str, name: str) -> str:
    """A new, empty PostgreSQL database on the benchmark's server; its SQLAlchemy URL."""
    admin = make_engine(server_url, SqlOptions(isolation_level="AUTOCOMMIT"))
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


RAW = Table(
    "raw_records",
    MetaData(),
    Column("engine", Text, nullable=False),
    Column("topic", Text, nullable=False),
    Column("kafka_offset", BigInteger, nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("engine", "topic", "kafka_offset"),
)


# -- the two contenders ---------------------------------------------------------------------------


def _covered(reached: Mapping[TopicPartition, int], topics: Topics) -> bool:
    return all(reached.get(tp, 0) >= end for tp, end in topics.ends.items())


async def baseline_round(topics: Topics, db_url: str, deadline_s: float) -> Round:
    """Raw copy: poll, one executemany INSERT of every record as text, commit, commit offsets.
    (engine, topic, Kafka offset) is the key: nothing is decoded or mapped."""
    engine = create_engine(db_url)
    RAW.metadata.create_all(engine)

    def insert(rows: list[dict[str, Any]]) -> None:
        with engine.begin() as conn:
            conn.execute(RAW.insert(), rows)

    consumer = Consumer(
        topics.bootstrap,
        group_id=f"bench-baseline-{uuid.uuid4().hex[:8]}",
        max_poll_records=BATCH,
        max_partition_fetch_bytes=FETCH_BYTES,
    )
    consumer.subscribe(sorted({tp.topic for tp in topics.ends}))
    await consumer.start()
    reached: dict[TopicPartition, int] = {}
    records = batches = 0
    first: float | None = None
    try:
        end = time.monotonic() + deadline_s
        while not _covered(reached, topics):
            if time.monotonic() > end:
                raise RuntimeError(f"baseline not done within {deadline_s} s: {reached}")
            fetched: Batch = await consumer.fetch(500, max_records=BATCH)
            if not fetched:
                continue
            if first is None:
                first = time.perf_counter()
            rows = [
                {
                    "engine": tp.topic.split(".")[0],
                    "topic": tp.topic,
                    "kafka_offset": msg.offset,
                    "value": (msg.value or b"").decode(),
                }
                for tp, messages in fetched.items()
                for msg in messages
            ]
            await asyncio.to_thread(insert, rows)
            offsets = {tp: messages[-1].offset + 1 for tp, messages in fetched.items()}
            if not await consumer.commit(offsets):
                raise RuntimeError("the baseline's offset commit was refused (a rebalance?)")
            reached.update(offsets)
            records += len(rows)
            batches += 1
        seconds = time.perf_counter() - (first or 0.0)
    finally:
        await consumer.stop()
        engine.dispose()
    note = "" if records == topics.total else f"read {records} records"
    return Round("baseline", topics.total, seconds, batches, note)


class RoundClock:
    """The importer's step observer for one round: the clock starts when the first fetched batch
    is decoded and stops when the commit that covers each partition's last record is done.
    Another observer (`inner`, a time split or a profiler) may watch the same steps."""

    def __init__(self, topics: Topics, inner: StepObserver | None = None) -> None:
        self.topics = topics
        self.inner = inner
        self.importer: Importer | None = None
        self.first: float | None = None
        self.finished: float | None = None
        self.caught_up = asyncio.Event()

    @contextmanager
    def step(self, name: Step) -> Iterator[None]:
        if name is Step.DECODE and self.first is None:
            self.first = time.perf_counter()
        if self.inner is None:
            yield
        else:
            with self.inner.step(name):
                yield
        if name is not Step.COMMIT or self.finished is not None or self.importer is None:
            return
        if _covered(self.importer.committed, self.topics):
            self.finished = time.perf_counter()
            self.caught_up.set()


def outcomes() -> Counter[str]:
    """The importer's records counter by outcome (process-wide; rounds take differences)."""
    out: Counter[str] = Counter()
    for metric in RECORDS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                out[sample.labels["outcome"]] += int(sample.value)
    return out


async def importer_round(
    topics: Topics,
    db_url: str,
    search_url: str,
    deadline_s: float,
    observer: StepObserver | None = None,
) -> Round:
    tag = uuid.uuid4().hex[:8]
    settings = BackofficeSettings(
        database_url=db_url,
        opensearch_url=search_url or None,
        index_prefix=f"bench-{tag}",
        kafka_bootstrap=topics.bootstrap,
        engines=ENGINES,
        tenants=[TENANT],
        group_id=f"bench-importer-{tag}",
        dead_letter_topic=f"bench-dead-{tag}",
        audit_key=SecretStr("bench-audit-key"),
        batch_max=BATCH,
    )
    clock = RoundClock(topics, observer)
    importer = Importer(settings, client_id="bench-importer", observer=clock)
    clock.importer = importer
    before = outcomes()
    await importer.start()
    task = asyncio.create_task(importer.run())
    waiter = asyncio.create_task(clock.caught_up.wait())
    try:
        done, _ = await asyncio.wait(
            {task, waiter}, timeout=deadline_s, return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            task.result()
            raise RuntimeError("the import loop stopped by itself")
        if waiter not in done:
            raise RuntimeError(f"importer not done within {deadline_s} s: {importer.committed}")
    finally:
        waiter.cancel()
        importer.stop()
        await asyncio.wait({task}, timeout=60)
        await importer.close()
    assert clock.first is not None
    assert clock.finished is not None
    seen_count = await asyncio.to_thread(read_seen, db_url)
    if seen_count != topics.kept:
        raise RuntimeError(f"seen_records holds {seen_count}, the topics {topics.kept} kept")
    # a parked ("pending") record is counted again when its instance's tenant arrives
    seen = outcomes() - before
    note = "outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(seen.items()))
    return Round("importer", topics.total, clock.finished - clock.first, importer.batches, note)


def read_seen(db_url: str) -> int:
    """The importer's own record of what it kept: the positions it marked seen."""
    db = Database(db_url)
    try:
        with db.begin() as conn:
            t = schema.seen_records
            return int(conn.execute(select(func.count()).select_from(t)).scalar_one())
    finally:
        db.close()


# -- where the importer's time goes ---------------------------------------------------------------


@dataclass
class Split:
    """Seconds per step, summed over one round: a step observer that times every step."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @contextmanager
    def step(self, name: Step) -> Iterator[None]:
        # Steps run on the event loop, the batch thread and the search thread; each step name
        # belongs to one thread, so the sums never race.
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started

    def report(self, wall: float, records: int) -> list[str]:
        """Seconds spent in each step. Steps overlap: the next batch is fetched and decoded
        while one is applied, and OpenSearch indexes beside the SQL writes."""
        s = self.seconds
        rows = [
            ("wall, first batch to caught up", wall),
            ("  decode (event loop, overlaps the apply)", s[Step.DECODE]),
            ("  apply + offset commit, in series", s[Step.APPLY] + s[Step.COMMIT]),
            ("    dead letters, thread hop, retries", s[Step.APPLY] - s[Step.TRANSACTION]),
            ("    claim progress (SQL)", s[Step.CLAIM]),
            ("    resolve tenants (SQL)", s[Step.RESOLVE]),
            ("    map rows (Python)", s[Step.MAP]),
            ("    fold transfers (SQL select + Python)", s[Step.FOLD]),
            ("    write: rows (COPY), transfers, audit", s[Step.WRITE]),
            ("      of which upsert transfers", s[Step.UPSERT_TRANSFERS]),
            ("      of which audit chain (HMAC + SQL)", s[Step.AUDIT]),
            ("    opensearch bulk (beside the writes)", s[Step.INDEX]),
            ("    offset commit", s[Step.COMMIT]),
            ("  lag metric", s[Step.LAG]),
        ]
        return [
            f"{label:<46} {sec:7.2f} s {sec / wall:6.1%} {sec * 1e6 / records:7.1f} us/record"
            for label, sec in rows
        ]


class ThreadProfile:
    """A step observer that profiles the batch thread: cProfile sees only the thread that
    enables it, so it is switched on around each transaction, inside that thread."""

    def __init__(self) -> None:
        self.profile = cProfile.Profile()

    @contextmanager
    def step(self, name: Step) -> Iterator[None]:
        if name is not Step.TRANSACTION:
            yield
            return
        self.profile.enable()
        try:
            yield
        finally:
            self.profile.disable()


async def profile_rounds(topics: Topics, server: str, search_url: str, deadline_s: float) -> None:
    split = Split()
    r = await importer_round(
        topics, fresh_database(server, "bench_split"), search_url, deadline_s, split
    )
    print(f"time split, one extra importer round ({r.rate:,.0f} records/s with timers):")
    for line in split.report(r.seconds, r.records):
        print("  " + line)

    loop_prof, thread_prof = cProfile.Profile(), ThreadProfile()
    loop_prof.enable()
    try:
        r = await importer_round(
            topics, fresh_database(server, "bench_prof"), search_url, deadline_s, thread_prof
        )
    finally:
        loop_prof.disable()
    print(f"cProfile, one more importer round ({r.rate:,.0f} records/s under the profiler):")
    for title, prof in (("event loop thread", loop_prof), ("batch thread", thread_prof.profile)):
        print(f"--- {title}: top 25 by own time")
        pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(25)


# -- the run --------------------------------------------------------------------------------------


async def measure(
    topics: Topics, server: str, search_url: str, rounds: int, deadline_s: float
) -> list[Round]:
    results: list[Round] = []
    for i in range(1, rounds + 1):
        for kind in ("baseline", "importer"):
            url = fresh_database(server, f"bench_{kind}_{i}")
            if kind == "baseline":
                r = await baseline_round(topics, url, deadline_s)
            else:
                r = await importer_round(topics, url, search_url, deadline_s)
            results.append(r)
            print(
                f"round {i} {r.kind:<8}: {r.records} records in {r.seconds:6.2f} s = "
                f"{r.rate:8,.0f} records/s ({r.batches} batches){'; ' + r.note if r.note else ''}",
                flush=True,
            )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--payments", type=int, default=2000, help="synthetic payments")
    parser.add_argument("--rounds", type=int, default=3, help="baseline + importer pairs")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds per round, at most")
    parser.add_argument("--opensearch", action="store_true", help="index transfers too")
    parser.add_argument("--profile", action="store_true", help="add a time split and cProfile")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        "command: uv run --frozen python benchmarks/import_throughput.py " + " ".join(sys.argv[1:])
    )
    names = ["kafka", "postgresql"] + (["opensearch"] if args.opensearch else [])
    for name in names:
        get(name).fetch()
    started: list[Running] = []
    with tempfile.TemporaryDirectory(prefix="phee-bench-") as tmp:
        workdir = Path(tmp)
        try:
            t0 = time.monotonic()
            for name in names:
                started.append(get(name).start(workdir / name))
            kafka, postgres = started[0], started[1]
            search_url = started[2].endpoint("http") if args.opensearch else ""
            print(f"{', '.join(names)} up in {time.monotonic() - t0:.1f} s")
            bootstrap = kafka.endpoint("bootstrap")
            per_engine = max(1, args.payments // (3 * len(ENGINES)))
            t1 = time.monotonic()
            asyncio.run(produce(bootstrap, per_engine))
            print(
                f"{per_engine * 3 * len(ENGINES)} synthetic payments produced in "
                f"{time.monotonic() - t1:.1f} s"
            )
            topics = asyncio.run(count_topics(bootstrap, topic_names(bootstrap)))
            per = ", ".join(f"{e} {n}" for e, n in sorted(topics.per_engine.items()))
            print(
                f"records: {topics.total} ({per}; {topics.kept} kept by the importer, the rest "
                f"ignored; {len(topics.ends)} topics)"
            )
            server = postgres.endpoint("url")
            results = asyncio.run(measure(topics, server, search_url, args.rounds, args.deadline))
            base = statistics.median(r.rate for r in results if r.kind == "baseline")
            imp = statistics.median(r.rate for r in results if r.kind == "importer")
            ratio = imp / base
            met = imp >= GOAL_RATE and ratio >= GOAL_RATIO
            print(f"median baseline: {base:,.0f} records/s")
            print(f"median importer: {imp:,.0f} records/s")
            print(f"ratio importer/baseline (medians): {ratio:.2f}")
            print(
                f"goal: >= {GOAL_RATE:,.0f} records/s and >= {GOAL_RATIO} of baseline: "
                f"{'MET' if met else 'NOT MET'}"
            )
            if not met:
                print("(a measurement: exit status 0 all the same; --profile shows where it goes)")
            if args.profile:
                asyncio.run(profile_rounds(topics, server, search_url, args.deadline))
        finally:
            for run in reversed(started):
                get(run.name).stop(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
