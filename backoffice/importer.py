"""The importer: every engine's history topics (Debezium, decision 0013), one consumer group,
into SQL and the search index.

The loop is poll -> decode -> apply (one SQL transaction, see batch.py) -> commit offsets.
Offsets are committed only after the transaction, so a crash at any point replays from the last
commit, and batch.py makes the replay change nothing. A rebalance needs no special care for the
same reason: a consumer that lost its partitions mid-batch either commits before the new owner
locks the progress rows, or finds its records covered. Records that cannot be used go to the
dead-letter topic (with the reason in headers) before the batch commits; the import goes on.

Topics are found by pattern, `<engine>.public.act_hi_*` (a subscription by pattern never makes a
broker auto-create a topic): every engine, or only those configured and in the router's
registry. Kafka is reached only through `phee.kafka` (read_committed, manual commits, our
errors). An optional `StepObserver` sees each step (decode, apply, commit, and the transaction's
parts) so a benchmark can time or profile them without reaching into the importer.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from backoffice.batch import Applier
from backoffice.db import Database, DatabaseError, now
from backoffice.outcome import BatchResult, Dead, Step, StepObserver, unwatched
from backoffice.records import BadRecord, CdcRecord, decode, split_topic
from backoffice.search import Search, SearchError
from backoffice.settings import BackofficeSettings
from phee.kafka import Batch, Consumer, KafkaError, Message, Producer, TopicPartition

log = logging.getLogger(__name__)

RECORDS = Counter(
    "phee_backoffice_records",
    "History change records read, by engine and outcome",
    ["engine", "outcome"],
)
DEAD = Counter("phee_backoffice_dead_letters", "Records sent to the dead-letter topic", ["reason"])
BATCH_SECONDS = Histogram(
    "phee_backoffice_batch_seconds",
    "Time to apply one batch (SQL, OpenSearch, audit)",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LAG = Gauge(
    "phee_backoffice_lag_records",
    "Records in Kafka not yet imported, per topic partition",
    ["topic", "partition"],
)
TRANSFERS = Counter("phee_backoffice_transfers_written", "Transfer rows inserted or updated")
AUDITED = Counter("phee_backoffice_audit_entries", "Audit entries chained by the importer")


@dataclass(frozen=True)
class Prepared:
    """A fetched batch, decoded: what to apply, what to dead-letter, what to commit after."""

    records: list[CdcRecord]
    bad: list[Dead]
    offsets: dict[TopicPartition, int]


def _retryable(err: BaseException) -> bool:
    return isinstance(err, DatabaseError | SearchError | KafkaError) and err.retryable


class Importer:
    """One member of the back office's consumer group.

    `observer`, when given, wraps every step of every batch (see `outcome.Step`); None costs
    nothing. `committed` holds, per partition, the offset the group has committed (the next
    one to read); the COMMIT step ends once it holds the batch's offsets.
    """

    def __init__(
        self,
        settings: BackofficeSettings,
        *,
        client_id: str = "phee-backoffice",
        observer: StepObserver | None = None,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.db = Database(settings.database_url)
        self.search = (
            Search(settings.opensearch_url, settings.index_prefix)
            if settings.opensearch_url
            else None
        )
        self.applier = Applier(
            self.db,
            self.search,
            settings.tenants,
            settings.secret("audit_key").encode(),
            observer=observer,
        )
        self._step = observer.step if observer is not None else unwatched
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._stopping = asyncio.Event()
        self._topics: frozenset[str] = frozenset()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.ready = False
        self.batches = 0
        self.committed: dict[TopicPartition, int] = {}

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Migrate, provision the tenants, connect to Kafka and subscribe."""
        s = self.settings
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._prepare)
        self._producer = Producer(s.kafka_bootstrap, client_id=f"{self.client_id}-dlq")
        await self._producer.start()
        self._consumer = Consumer(
            s.kafka_bootstrap,
            group_id=s.group_id,
            client_id=self.client_id,
            metadata_max_age_ms=s.metadata_max_age_ms,
            max_poll_records=s.batch_max,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await self._consumer.start()
        self._subscribe()
        self.ready = True

    def _prepare(self) -> None:
        self.db.migrate_control()
        for tenant in self.settings.tenants:
            self.db.provision(tenant)
        if self.search is not None:
            self.search.ensure_indexes(self.settings.tenants)

    def _wanted_engines(self) -> frozenset[str] | None:
        """The configured and registered engines; None = every engine."""
        s = self.settings
        engines = set(s.engines)
        if s.registry_file:
            try:
                doc = json.loads(Path(s.registry_file).read_text())
                engines.update(e["name"] for e in doc.get("engines", []))
            except (OSError, ValueError, KeyError, TypeError) as err:
                log.warning("engine registry %s unreadable: %s", s.registry_file, err)
        if not engines and not s.registry_file:
            return None
        return frozenset(engines)

    def _subscribe(self) -> None:
        assert self._consumer is not None
        engines = self._wanted_engines()
        if engines is None:
            pattern = topic_pattern(None)
        elif engines:
            pattern = topic_pattern(engines)
        else:
            return  # a registry with no engine yet: nothing to read
        if frozenset({pattern}) != self._topics:
            log.info("importing topics matching %s", pattern)
            self._consumer.subscribe(pattern=pattern)
            self._topics = frozenset({pattern})

    async def run(self) -> None:
        """Import until `stop()`. Batches are pipelined: while one batch is written (SQL and
        OpenSearch, in a thread), the next is fetched and decoded. Batches are still applied
        and committed strictly one after the other."""
        assert self._consumer is not None
        next_registry = time.monotonic() + self.settings.registry_poll_s
        inflight: asyncio.Task[None] | None = None
        try:
            while not self._stopping.is_set():
                if time.monotonic() >= next_registry:
                    self._subscribe()
                    next_registry = time.monotonic() + self.settings.registry_poll_s
                    if inflight is None or inflight.done():
                        await self._expire_orphans()
                fetched = await self._consumer.fetch(
                    self.settings.poll_ms, max_records=self.settings.batch_max
                )
                if fetched:
                    with self._step(Step.DECODE):
                        prepared = self._decode(fetched)
                    if inflight is not None:
                        await inflight
                    inflight = asyncio.create_task(self._finish(prepared))
                elif inflight is not None and inflight.done():
                    await inflight
                    inflight = None
                with self._step(Step.LAG):
                    await self._measure_lag()
        finally:
            if inflight is not None:
                await inflight

    async def import_batch(self, fetched: Batch) -> None:
        """Decode, apply and commit one fetched batch (no pipelining)."""
        with self._step(Step.DECODE):
            prepared = self._decode(fetched)
        await self._finish(prepared)

    def _decode(self, fetched: Batch) -> Prepared:
        records: list[CdcRecord] = []
        bad: list[Dead] = []
        for tp, messages in fetched.items():
            where = split_topic(tp.topic)
            for msg in messages:
                source = f"{tp.topic}/{tp.partition}/{msg.offset}"
                try:
                    if where is None:
                        raise BadRecord("unknown-topic", f"{tp.topic} is no history topic")
                    records.append(decode(where[0], where[1], msg.key, msg.value))
                except BadRecord as err:
                    log.warning("bad record %s: %s", source, err)
                    engine = where[0] if where else tp.topic
                    bad.append(Dead(engine, msg.value or b"", err.reason, err.detail, source))
        offsets = {tp: messages[-1].offset + 1 for tp, messages in fetched.items()}
        return Prepared(records, bad, offsets)

    async def _finish(self, batch: Prepared) -> None:
        """Apply one decoded batch, then commit its offsets."""
        assert self._consumer is not None
        started = time.perf_counter()
        with self._step(Step.APPLY):
            result = await self._apply(batch.records, batch.bad)
        BATCH_SECONDS.observe(time.perf_counter() - started)
        self._count(result, batch.bad)
        with self._step(Step.COMMIT):
            if await self._consumer.commit(batch.offsets):
                self.committed.update(batch.offsets)
            else:
                # partitions moved meanwhile: the new owner replays from the last commit and
                # the progress rows make that replay a no-op
                log.warning("offset commit refused after a rebalance: %s", sorted(batch.offsets))
        self.batches += 1

    async def _apply(self, records: list[CdcRecord], bad: list[Dead]) -> BatchResult:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_retryable),
            wait=wait_exponential(multiplier=0.2, max=10),
            stop=stop_after_delay(300),
            reraise=True,
        ):
            with attempt:
                if bad:  # undecodable records go out first: they are not in the database
                    await self._send_dead(bad)
                return await asyncio.to_thread(self.applier.apply, records, self._dead_letter)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _expire_orphans(self) -> None:
        """Dead-letter instances that ended without a tenant: only once this consumer has read
        everything (lag 0, so a tenant variable committed before the end would be here) and
        the end has waited `no_tenant_grace_s`."""
        assert self._consumer is not None
        lags = await self._consumer.lag()
        if not lags or any(lags.values()):
            return
        cutoff = now() - timedelta(seconds=self.settings.no_tenant_grace_s)
        expired = await asyncio.to_thread(self.applier.expire_orphans, cutoff, self._dead_letter)
        if expired:
            log.warning(
                "%d records of instances that ended without a tenant dead-lettered", expired
            )

    def _dead_letter(self, dead: Sequence[Dead]) -> None:
        """Send to the dead-letter topic and wait for the broker (from the batch's thread)."""
        assert self._loop is not None
        if threading_in_loop(self._loop):
            raise RuntimeError("dead letters are sent from the batch thread")
        future = asyncio.run_coroutine_threadsafe(self._send_dead(dead), self._loop)
        future.result(timeout=60)

    async def _send_dead(self, dead: Sequence[Dead]) -> None:
        assert self._producer is not None
        messages = [
            Message(
                d.raw,
                key=d.source.encode(),
                headers=[
                    ("reason", d.reason.encode()),
                    ("detail", d.detail[:1000].encode()),
                    ("source", d.source.encode()),
                    ("engine", d.engine.encode()),
                ],
            )
            for d in dead
        ]
        await self._producer.send(self.settings.dead_letter_topic, messages)
        for d in dead:
            DEAD.labels(d.reason).inc()

    def _count(self, result: BatchResult, bad: list[Dead]) -> None:
        counts = result.by_engine + collections.Counter((d.engine, "dead_letter") for d in bad)
        for (engine, outcome), n in counts.items():
            RECORDS.labels(engine, outcome).inc(n)
        TRANSFERS.inc(result.transfers)
        AUDITED.inc(result.audit_entries)

    async def _measure_lag(self) -> None:
        assert self._consumer is not None
        for tp, lag in (await self._consumer.lag()).items():
            LAG.labels(tp.topic, str(tp.partition)).set(lag)

    def stop(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        self.ready = False
        try:
            if self._consumer is not None:
                await self._consumer.stop()
            if self._producer is not None:
                await self._producer.stop()
        except KafkaError as err:
            log.warning("closing Kafka clients: %s", err)
        await asyncio.to_thread(self._close_stores)

    def _close_stores(self) -> None:
        if self.search is not None:
            self.search.close()
        self.db.close()


def topic_pattern(engines: frozenset[str] | None) -> str:
    """The history topics of these engines (None: of every engine) as a regular expression."""
    names = "|".join(re.escape(e) for e in sorted(engines)) if engines else r"[a-z][a-z0-9-]*"
    return rf"^({names})\.public\.act_hi_[a-z_]+$"


def threading_in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """True when called from the loop's own thread (blocking there would deadlock)."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
