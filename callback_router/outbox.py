"""The durable outbox: messages accepted from the switch but not yet delivered to their engine.

A message lands here when its engine is down or unreachable, so the router can answer the
switch at once and still never lose it (invariant 2): a background loop redelivers each message
to the engine that owns it, never to another one, with a persisted exponential backoff, until it
succeeds. Correlating the same callback again sets the same variables, so a redelivery of
something that did reach the engine changes nothing. A message that can never be delivered (the
engine refused it: a late callback; or it outlived `give_up_s`) is marked dead: kept, counted
and shown by the admin API, not dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter as Tally
from dataclasses import dataclass, field

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    Integer,
    String,
    Table,
    Text,
    delete,
    func,
    select,
    update,
)

from callback_router.db import METADATA, Database
from callback_router.delivery import Delivery, DeliveryError
from callback_router.metrics import RouterMetrics
from callback_router.registry import RegistryStore
from callback_router.routing import Publish

log = logging.getLogger(__name__)

outbox_table = Table(
    "router_outbox",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("engine", String(63), nullable=False, index=True),
    Column("name", String(100), nullable=False),
    Column("correlation_key", String(300), nullable=False),
    Column("message_id", String(300), nullable=False),
    Column("variables", Text, nullable=False),
    Column("ttl_ms", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False, index=True),
    Column("last_error", Text, nullable=True),
    Column("dead", Boolean, nullable=False, default=False),
)
_BATCH = 200


@dataclass(frozen=True)
class OutboxStats:
    """What the admin API shows: depth, age of the oldest message, dead ones, per engine."""

    pending: int
    oldest_age_s: float | None
    dead: int
    by_engine: dict[str, int] = field(default_factory=dict)


class Outbox:
    """Durable store plus the redelivery loop."""

    def __init__(
        self,
        db: Database,
        delivery: Delivery,
        registry: RegistryStore,
        metrics: RouterMetrics,
        *,
        backoff_s: float = 0.5,
        backoff_max_s: float = 10.0,
        give_up_s: float = 86_400.0,
    ) -> None:
        self.db = db
        self.delivery = delivery
        self.registry = registry
        self.metrics = metrics
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.give_up_s = give_up_s
        self._pending: Tally[str] = Tally()
        self._dead = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.opened = False

    async def open(self) -> None:
        """Count what a previous run left undelivered, and start the loop."""

        def work(conn: Connection) -> list[tuple[str, int]]:
            rows = conn.execute(
                select(outbox_table.c.engine, func.count())
                .where(outbox_table.c.dead.is_(False))
                .group_by(outbox_table.c.engine)
            )
            counts = [(str(r[0]), int(r[1])) for r in rows]
            dead = conn.execute(
                select(func.count()).select_from(outbox_table).where(outbox_table.c.dead.is_(True))
            ).scalar()
            counts.append(("", int(dead or 0)))
            return counts

        counts = dict(await self.db.run(work))
        self._dead = counts.pop("")
        self._pending = Tally(counts)
        if self._pending:
            log.warning("outbox holds %d undelivered message(s) from before", self.depth)
        self._refresh_gauges()
        self._task = asyncio.create_task(self._loop(), name="router-outbox")
        self.opened = True

    @property
    def depth(self) -> int:
        return sum(self._pending.values())

    def pending_for(self, engine: str) -> int:
        """Undelivered messages for `engine` (new ones queue behind them to keep order)."""
        return self._pending.get(engine, 0)

    def wake(self) -> None:
        """Try now (a new message, or an engine changed state)."""
        self._wake.set()

    async def put(self, message: Publish, reason: str, *, dead: bool = False) -> int:
        """Store a message durably; once this returns the switch may be answered."""
        now = time.time()

        def work(conn: Connection) -> int:
            result = conn.execute(
                outbox_table.insert().values(
                    engine=message.engine,
                    name=message.name,
                    correlation_key=message.correlation_key,
                    message_id=message.message_id,
                    variables=json.dumps(message.variables, separators=(",", ":")),
                    ttl_ms=message.ttl_ms,
                    created_at=now,
                    attempts=0,
                    next_attempt_at=now,
                    last_error=reason,
                    dead=dead,
                )
            )
            key = result.inserted_primary_key
            return int(key[0]) if key else 0

        row_id = await self.db.run(work)
        if dead:
            self._dead += 1
            log.error(
                "undeliverable message %s for %s: %s", message.message_id, message.engine, reason
            )
            self.metrics.deliveries.labels(message.engine, "dead").inc()
        else:
            self._pending[message.engine] += 1
            self.metrics.deliveries.labels(message.engine, "outboxed").inc()
            self.wake()
        self._refresh_gauges()
        return row_id

    async def deliver_due(self, *, ignore_backoff: bool = False) -> int:
        """One pass over pending messages, oldest first; returns how many were delivered.

        Each engine's messages go in the order they were accepted: an engine whose oldest
        message is still backing off, or just failed, is skipped for the rest of the pass (so
        a dead engine also costs one timeout per pass, not one per message).
        `ignore_backoff`: try now whatever is pending (the last pass before shutdown).
        """
        if not self.depth:  # this process wrote every row: no count, no query
            return 0
        now = time.time()
        due_by = float("inf") if ignore_backoff else now

        def pending(conn: Connection) -> list[tuple[int, Publish, int, float, float]]:
            rows = conn.execute(
                select(outbox_table)
                .where(outbox_table.c.dead.is_(False))
                .order_by(outbox_table.c.id)
                .limit(_BATCH)
            )
            return [
                (
                    r.id,
                    Publish(
                        r.engine,
                        r.name,
                        r.correlation_key,
                        json.loads(r.variables),
                        r.message_id,
                        r.ttl_ms,
                    ),
                    r.attempts,
                    r.created_at,
                    r.next_attempt_at,
                )
                for r in rows
            ]

        delivered = 0
        blocked: set[str] = set()
        for row_id, message, attempts, created_at, next_at in await self.db.run(pending):
            if message.engine in blocked:
                continue
            if next_at > due_by:  # the engine's oldest message waits: so do the others
                blocked.add(message.engine)
                continue
            engine = self.registry.get().by_name(message.engine)
            try:
                if engine is None:
                    raise DeliveryError(
                        message.engine,
                        "engine not in the registry",
                        retryable=True,
                        ambiguous=False,
                    )
                await self.delivery.publish(engine, message)
            except DeliveryError as exc:
                blocked.add(message.engine)
                give_up = not exc.retryable or now - created_at > self.give_up_s
                await self._failed(row_id, message, attempts + 1, str(exc), dead=give_up)
                continue
            await self._done(row_id, message)
            delivered += 1
        if delivered:
            log.info("outbox delivered %d message(s); %d still pending", delivered, self.depth)
        return delivered

    async def retry_now(self, engine: str) -> None:
        """Forget the backoff of `engine`'s messages and try at once (it is said to be back)."""
        await self.db.run(
            lambda conn: conn.execute(
                update(outbox_table)
                .where(outbox_table.c.engine == engine, outbox_table.c.dead.is_(False))
                .values(next_attempt_at=time.time())
            )
        )
        self.wake()

    async def _done(self, row_id: int, message: Publish) -> None:
        await self.db.run(
            lambda conn: conn.execute(delete(outbox_table).where(outbox_table.c.id == row_id))
        )
        self._pending[message.engine] -= 1
        self.metrics.deliveries.labels(message.engine, "redelivered").inc()
        self._refresh_gauges()

    async def _failed(
        self, row_id: int, message: Publish, attempts: int, error: str, *, dead: bool
    ) -> None:
        delay = min(self.backoff_max_s, self.backoff_s * 2 ** min(attempts - 1, 20))
        values = {"attempts": attempts, "last_error": error, "next_attempt_at": time.time() + delay}
        if dead:
            values["dead"] = True
        await self.db.run(
            lambda conn: conn.execute(
                update(outbox_table).where(outbox_table.c.id == row_id).values(values)
            )
        )
        if dead:
            self._pending[message.engine] -= 1
            self._dead += 1
            log.error("outbox gives up on %s for %s: %s", message.message_id, message.engine, error)
            self.metrics.deliveries.labels(message.engine, "dead").inc()
        else:
            log.warning(
                "outbox: %s not delivered (attempt %d): %s", message.message_id, attempts, error
            )
            self.metrics.deliveries.labels(message.engine, "retry").inc()
        self._refresh_gauges()

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self.deliver_due()
            except Exception:  # a database hiccup must not end redelivery
                log.exception("outbox pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(1.0, self.backoff_s))

    async def stop(self, flush_s: float) -> None:
        """Stop the loop, then spend up to `flush_s` delivering what is due."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if flush_s > 0 and self.depth:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.deliver_due(ignore_backoff=True), timeout=flush_s)
        if self.depth:
            log.warning("stopping with %d undelivered message(s) kept in the outbox", self.depth)

    async def stats(self) -> OutboxStats:
        now = time.time()

        def work(conn: Connection) -> OutboxStats:
            live = outbox_table.c.dead.is_(False)
            oldest = conn.execute(select(func.min(outbox_table.c.created_at)).where(live)).scalar()
            dead = conn.execute(
                select(func.count()).select_from(outbox_table).where(outbox_table.c.dead.is_(True))
            ).scalar()
            by_engine = {
                str(r[0]): int(r[1])
                for r in conn.execute(
                    select(outbox_table.c.engine, func.count())
                    .where(live)
                    .group_by(outbox_table.c.engine)
                )
            }
            return OutboxStats(
                pending=sum(by_engine.values()),
                oldest_age_s=None if oldest is None else round(now - float(oldest), 3),
                dead=int(dead or 0),
                by_engine=by_engine,
            )

        return await self.db.run(work)

    def _refresh_gauges(self) -> None:
        self.metrics.outbox_depth.set(self.depth)
        self.metrics.outbox_dead.set(self._dead)
