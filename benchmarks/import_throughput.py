"""Benchmark: back office import throughput (records/s), Kafka into PostgreSQL + OpenSearch.

Real records first: a site with two Zeebe engines (Kafka exporter, topics `zeebe-<engine>`),
the payment stack, and `--payments` payments through both engines' channel APIs. Once the topics
stop growing the engines and the stack are stopped, so the measurement has the CPU to itself
(Kafka, OpenSearch and PostgreSQL keep running).

Then, alternating, on a fresh database and a fresh consumer group each round:
* baseline: a plain group consumer (`phee.kafka.Consumer`, a thin wrapper over aiokafka:
  read_committed, 5000 records per poll) reads both topics and inserts every record raw into
  one PostgreSQL table, one executemany INSERT + commit + offset commit per poll;
* importer: `backoffice.importer.Importer` (migrations and provisioning in `start()`, untimed).
Both are timed from the first batch fetched to the batch holding each partition's last record
committed, and both divide the same record count (every committed record in the two topics).
The importer's finish is exact: its committed offsets cover each partition's last record, and
afterwards its `import_progress` rows must equal each Zeebe partition's last position.

    uv run --frozen python benchmarks/import_throughput.py [--payments 300] [--rounds 3]

`--profile` adds two untimed importer rounds: one with timers around each step (where the time
goes), one under cProfile (both threads: the event loop and the batch thread). Both watch the
importer through its own step observer (`backoffice.outcome.StepObserver`), as does the clock of
every importer round: nothing in the importer is patched.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import platform
import pstats
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

import httpx
import orjson
from pydantic import SecretStr
from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    create_engine,
    select,
    text,
)
from sqlalchemy.engine import make_url

from backoffice import schema
from backoffice.db import Database
from backoffice.importer import RECORDS, Importer
from backoffice.outcome import Step, StepObserver
from backoffice.settings import BackofficeSettings
from harness import site as site_mod
from harness import stack as stack_mod
from harness.components import Running, get
from phee.kafka import (
    Batch,
    Consumer,
    Record,
    ToEnd,
    TopicPartition,
    consuming,
    read_from_start,
)
from phee.sql import SqlOptions, make_engine
from phee.zeebe_export import topic_for

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
    #: per (engine, Zeebe partition), the newest record position (import_progress must match)
    positions: dict[tuple[str, int], int]

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


# -- producing real records ---------------------------------------------------------------------


async def send_payments(payments: stack_mod.PaymentStack, count: int) -> Counter[str]:
    """Send every payment (16 in flight), then poll each until final; return final statuses."""
    engines = sorted(payments.workers)
    headers = {"Platform-TenantId": stack_mod.TENANT}
    limits = httpx.Limits(max_connections=32)
    clients = {
        e: httpx.AsyncClient(base_url=payments.channel(e), timeout=30, limits=limits)
        for e in engines
    }
    gate = asyncio.Semaphore(16)
    outcome: Counter[str] = Counter()

    async def one(i: int) -> tuple[str, str] | None:
        engine = engines[i % len(engines)]
        body = stack_mod.transfer_request(
            stack_mod.payer_party(i % 20), stack_mod.payee_party((i + 1) % 20), f"{1 + i % 7}.5"
        )
        async with gate:
            resp = await clients[engine].post("/channel/transfer", json=body, headers=headers)
        if resp.status_code != 202:
            outcome[f"refused ({resp.status_code})"] += 1
            return None
        return engine, str(resp.json()["transactionId"])

    try:
        sent = [s for s in await asyncio.gather(*(one(i) for i in range(count))) if s]
        waiting = dict.fromkeys(sent)
        end = time.monotonic() + 180
        while waiting and time.monotonic() < end:
            for engine, tx in list(waiting):
                resp = await clients[engine].get(f"/channel/transfer/{tx}", headers=headers)
                body = resp.json() if resp.status_code == 200 else {}
                if body.get("final"):
                    outcome[str(body["status"])] += 1
                    del waiting[(engine, tx)]
            if waiting:
                await asyncio.sleep(0.5)  # poll interval; the deadline bounds the wait
        outcome["not final"] += len(waiting)
        return outcome
    finally:
        for client in clients.values():
            await client.aclose()


async def settle(bootstrap: str, topics: list[str], quiet_s: float = 3.0) -> None:
    """Wait (deadline 120 s) until the topics' committed ends stop moving for `quiet_s`: the
    exporters have flushed everything the payments produced."""
    async with consuming(Consumer(bootstrap, topics=topics)) as consumer:
        tps = await consumer.partitions()
        last: dict[TopicPartition, int] = {}
        since = time.monotonic()
        end = since + 120
        while time.monotonic() < end:
            now = await consumer.end_offsets(tps)
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            await asyncio.sleep(0.5)  # poll interval; the deadline bounds the wait
        raise RuntimeError(f"the topics kept growing for 120 s: {last}")


@dataclass(frozen=True)
class _Seen:
    """What counting keeps of one record."""

    tp: TopicPartition
    offset: int
    zeebe_partition: int
    position: int


def _seen(msg: Record) -> _Seen:
    doc = orjson.loads(msg.value or b"{}")
    tp = TopicPartition(msg.topic, msg.partition)
    return _Seen(tp, msg.offset, int(doc["partitionId"]), int(doc["position"]))


async def count_topics(bootstrap: str) -> Topics:
    """Read both topics to their committed end: records, last offsets, newest positions."""
    seen = await read_from_start(
        bootstrap,
        [topic_for(e) for e in ENGINES],
        ToEnd(timeout_s=120),
        decode=_seen,
        max_records=BATCH,
        max_partition_fetch_bytes=FETCH_BYTES,
    )
    ends: dict[TopicPartition, int] = {}
    per_engine: Counter[str] = Counter()
    positions: dict[tuple[str, int], int] = {}
    for s in seen:
        engine = s.tp.topic.removeprefix("zeebe-")
        per_engine[engine] += 1
        ends[s.tp] = max(ends.get(s.tp, 0), s.offset + 1)
        k = (engine, s.zeebe_partition)
        positions[k] = max(positions.get(k, -1), s.position)
    return Topics(bootstrap, ends, dict(per_engine), positions)


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
    Column("partition", Integer, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("engine", "partition", "position"),
)


# -- the two contenders ---------------------------------------------------------------------------


def _covered(reached: Mapping[TopicPartition, int], topics: Topics) -> bool:
    return all(reached.get(tp, 0) >= end for tp, end in topics.ends.items())


async def baseline_round(topics: Topics, db_url: str, deadline_s: float) -> Round:
    """Raw copy: poll, one executemany INSERT of every record as text, commit, commit offsets.
    (engine, Kafka partition, Kafka offset) is the key: nothing is decoded or mapped."""
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
    consumer.subscribe([topic_for(e) for e in ENGINES])
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
                    "engine": tp.topic.removeprefix("zeebe-"),
                    "partition": tp.partition,
                    "position": msg.offset,
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
        opensearch_url=search_url,
        index_prefix=f"bench-{tag}",
        kafka_bootstrap=topics.bootstrap,
        engines=ENGINES,
        tenants=[stack_mod.TENANT],
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
    progress = await asyncio.to_thread(read_progress, db_url)
    if progress != topics.positions:
        raise RuntimeError(f"import_progress {progress} != topics {topics.positions}")
    # a parked ("pending") record is counted again when its instance's tenant arrives
    seen = outcomes() - before
    note = "outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(seen.items()))
    return Round("importer", topics.total, clock.finished - clock.first, importer.batches, note)


def read_progress(db_url: str) -> dict[tuple[str, int], int]:
    """The importer's own record of how far it got, per (engine, Zeebe partition)."""
    db = Database(db_url)
    try:
        with db.begin() as conn:
            t = schema.import_progress
            rows = conn.execute(select(t.c.engine, t.c.partition_id, t.c.position))
            return {(r.engine, r.partition_id): r.position for r in rows}
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
    parser.add_argument("--payments", type=int, default=300, help="payments run to make records")
    parser.add_argument("--rounds", type=int, default=3, help="baseline + importer pairs")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds per round, at most")
    parser.add_argument("--profile", action="store_true", help="add a time split and cProfile")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        "command: uv run --frozen python benchmarks/import_throughput.py " + " ".join(sys.argv[1:])
    )
    for name in ("kafka", "zeebe", "opensearch", "prometheus", "postgresql"):
        get(name).fetch()
    with tempfile.TemporaryDirectory(prefix="phee-bench-") as tmp:
        workdir = Path(tmp)
        site: site_mod.Site | None = None
        payments: stack_mod.PaymentStack | None = None
        postgres: Running | None = None
        try:
            t0 = time.monotonic()
            site = site_mod.start(workdir, ENGINES)
            postgres = get("postgresql").start(workdir)
            payments = stack_mod.start(workdir, site.engines)
            print(f"site, PostgreSQL and payment stack up in {time.monotonic() - t0:.1f} s")
            bootstrap = site.kafka.endpoint("bootstrap")

            t1 = time.monotonic()
            finals = asyncio.run(send_payments(payments, args.payments))
            print(
                f"{args.payments} payments in {time.monotonic() - t1:.1f} s: "
                + ", ".join(f"{v} {k}" for k, v in sorted(finals.items()))
            )
            asyncio.run(settle(bootstrap, [topic_for(e) for e in ENGINES]))
            # the engines and the stack are done: give the measurement the machine
            payments.stop()
            payments = None
            for run in [*site.engines.values(), site.prometheus]:
                get(run.name).stop(run)
            topics = asyncio.run(count_topics(bootstrap))
            per = ", ".join(f"{e} {n}" for e, n in sorted(topics.per_engine.items()))
            print(
                f"records: {topics.total} ({per}; {topics.total / max(args.payments, 1):.0f} per "
                f"payment; {len(topics.ends)} Kafka partitions, Zeebe partitions "
                f"{sorted(topics.positions)})"
            )

            server = postgres.endpoint("url")
            search_url = site.opensearch.endpoint("http")
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
            if payments is not None:
                payments.stop()
            if postgres is not None:
                get("postgresql").stop(postgres)
            if site is not None:
                site_mod.stop_all(site.order)
    return 0


if __name__ == "__main__":
    sys.exit(main())
