"""The engine's own record of its payments: idempotency and status without the back office.

One store per engine, shared by every worker process of that engine (a `payments` database on
the engine's PostgreSQL), so that the `X-CorrelationID` check and the status see every replica's
writes. The channel API answers `GET /channel/transfer/{id}` from here (PH-EE asks the whole
back-office pipeline and reports FAILED as RECEIVED). Workers write each step's status; the
outcome task writes the final state and reason. `X-CorrelationID` is unique per tenant, so a
client that retries a request gets the payment it already started, not a second one.

Two more guarantees live here because they need a unique key the engine does not give:
- `claim`: the first task of an instance claims its payment; a second instance started for the
  same payment (an ambiguous start retried) finds it claimed and ends without touching money;
- `keep_request`: an outbound FSPIOP request is built once, kept under (key, kind), and every
  retry sends exactly the kept body (the switch answers 3106 to the same id with another body).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
    Text,
    Update,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from phee.sql import SqlIntegrityError, SqlOptions, SqlRunner, insert_or_ignore, make_engine

FINAL_STATES = frozenset({"COMMITTED", "ABORTED", "FAILED"})

metadata = MetaData()
payments = Table(
    "payments",
    metadata,
    Column("transaction_id", String(64), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("correlation_id", String(128), nullable=True),
    Column("direction", String(8), nullable=False),
    Column("status", String(32), nullable=False),
    Column("reason", Text, nullable=True),
    Column("request", Text, nullable=False),
    Column("instance_id", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("uq_tenant_correlation", "tenant", "correlation_id", unique=True),
)
_OPEN = payments.c.status.notin_(sorted(FINAL_STATES))
#: only the payments not yet final: counting them (admission control) reads a small index, not
#: the whole history of payments
Index(
    "ix_payments_open",
    payments.c.direction,
    postgresql_where=_OPEN,
    sqlite_where=_OPEN,
)

#: outbound requests as first built: (key, kind) -> body
kept_requests = Table(
    "kept_requests",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("body", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


#: payee-side callbacks as sent, so a duplicate request or GET /transfers gets the same answer
sent_callbacks = Table(
    "sent_callbacks",
    metadata,
    Column("resource", String(16), primary_key=True),
    Column("ident", String(64), primary_key=True),
    Column("path", String(256), nullable=False),
    Column("body", Text, nullable=False),
    Column("destination", String(64), nullable=False),
    Column("version", String(8), nullable=True),
    Column("sent_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class SentCallback:
    path: str
    body: dict[str, Any]
    destination: str
    version: str | None


@dataclass(frozen=True)
class Payment:
    transaction_id: str
    tenant: str
    correlation_id: str | None
    direction: str
    status: str
    reason: str | None
    request: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    instance_id: str | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATES


def _row(row: Any) -> Payment:
    return Payment(
        transaction_id=row.transaction_id,
        tenant=row.tenant,
        correlation_id=row.correlation_id,
        direction=row.direction,
        status=row.status,
        reason=row.reason,
        request=json.loads(row.request),
        created_at=row.created_at,
        updated_at=row.updated_at,
        instance_id=row.instance_id,
    )


#: WAL with NORMAL sync: a commit does not wait for an fsync of the whole database; a crash can
#: lose the last steps' status, which the next step rewrites anyway.
_OPTIONS = SqlOptions(journal_mode="WAL", synchronous="NORMAL")


class PaymentStore:
    """Synchronous SQL underneath; the async methods run it off the event loop (`phee.sql`)."""

    def __init__(self, url: str) -> None:
        self._engine = make_engine(url, _OPTIONS)
        self._sql = SqlRunner(self._engine, name="payment-store")
        _create_tables(self._engine)

    def close(self) -> None:
        self._sql.close()
        self._engine.dispose()

    async def remember_sent(self, resource: str, ident: str, sent: SentCallback) -> None:
        """Keep the latest callback sent for (resource, id): the error or the answer."""
        values = {
            "path": sent.path,
            "body": json.dumps(sent.body, sort_keys=True),
            "destination": sent.destination,
            "version": sent.version,
            "sent_at": datetime.now(UTC),
        }
        key = (sent_callbacks.c.resource == resource) & (sent_callbacks.c.ident == ident)

        def work(conn: Connection) -> None:
            done = conn.execute(update(sent_callbacks).where(key).values(**values))
            if done.rowcount == 0:
                conn.execute(
                    sent_callbacks.insert().values(resource=resource, ident=ident, **values)
                )

        await self._sql.run(work)

    async def sent(self, resource: str, ident: str) -> SentCallback | None:
        key = (sent_callbacks.c.resource == resource) & (sent_callbacks.c.ident == ident)
        row = await self._sql.run(
            lambda conn: conn.execute(select(sent_callbacks).where(key)).first(), read_only=True
        )
        if row is None:
            return None
        return SentCallback(row.path, json.loads(row.body), row.destination, row.version)

    async def create(
        self,
        transaction_id: str,
        *,
        tenant: str,
        correlation_id: str | None,
        direction: str,
        request: dict[str, Any],
    ) -> tuple[Payment, bool]:
        """Record a new payment; with a known correlation id, return the existing one."""
        created = _received(transaction_id, tenant, correlation_id, direction, request)
        values = _columns(created)

        def insert(conn: Connection) -> Payment:
            conn.execute(payments.insert().values(**values))
            return created  # what was written: no read-back

        try:
            return await self._sql.run(insert), True
        except SqlIntegrityError:
            if correlation_id is None:
                raise
            same = (payments.c.tenant == tenant) & (payments.c.correlation_id == correlation_id)
            existing = await self._sql.run(lambda conn: _one(conn, same), read_only=True)
            if existing is None:
                raise
            return existing, False

    async def ensure(
        self, transaction_id: str, *, tenant: str, direction: str, request: dict[str, Any]
    ) -> Payment:
        """The payment `transaction_id`, recorded now if it is not yet (a retried job's way)."""
        values = _columns(_received(transaction_id, tenant, None, direction, request))
        dialect = self._engine.dialect.name

        def work(conn: Connection) -> Payment:
            conn.execute(insert_or_ignore(payments, dialect, ["transaction_id"]).values(**values))
            return _one(conn, payments.c.transaction_id == transaction_id) or _fail(transaction_id)

        return await self._sql.run(work)

    async def claim(self, transaction_id: str, instance_id: str, status: str | None = None) -> bool:
        """Make `instance_id` the one instance that works on this payment (and set `status`).

        True when it is (again) the owner; False when another instance owns it or the payment is
        already final: that instance must end without touching money.
        """
        extra = {} if status is None else {"status": status}
        stmt = (
            update(payments)
            .where(
                payments.c.transaction_id == transaction_id,
                or_(payments.c.instance_id.is_(None), payments.c.instance_id == instance_id),
                payments.c.status.not_in(FINAL_STATES),
            )
            .values(instance_id=instance_id, updated_at=datetime.now(UTC), **extra)
        )
        done = await self._sql.run(lambda conn: conn.execute(stmt).rowcount)
        return bool(done)

    async def keep_request(
        self,
        key: str,
        kind: str,
        body: dict[str, Any],
        *,
        status: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """`body` if this is the first request of `kind` for `key`, else the one kept before.

        `status`: (transaction id, status) set in the same transaction (one commit, not two).
        """
        status_stmt = None if status is None else self._status_stmt(status[0], status[1], None)
        dialect = self._engine.dialect.name
        where = (kept_requests.c.key == key) & (kept_requests.c.kind == kind)
        values = {
            "key": key,
            "kind": kind,
            "body": json.dumps(body, sort_keys=True),
            "created_at": datetime.now(UTC),
        }

        insert = insert_or_ignore(kept_requests, dialect, ["key", "kind"]).values(**values)
        # PostgreSQL and SQLite say whether the row went in: the first request needs no read-back.
        returns = dialect in ("postgresql", "sqlite")

        def work(conn: Connection) -> dict[str, Any]:
            if returns:
                new = conn.execute(insert.returning(kept_requests.c.body)).scalar_one_or_none()
            else:
                conn.execute(insert)
                new = None
            text = new or conn.execute(select(kept_requests.c.body).where(where)).scalar_one()
            kept: dict[str, Any] = json.loads(text)
            if status_stmt is not None:
                conn.execute(status_stmt)
            return kept

        return await self._sql.run(work)

    async def kept(self, key: str, kind: str) -> dict[str, Any] | None:
        """The request of `kind` kept for `key`, or None."""
        stmt = select(kept_requests.c.body).where(
            (kept_requests.c.key == key) & (kept_requests.c.kind == kind)
        )

        def work(conn: Connection) -> dict[str, Any] | None:
            body = conn.execute(stmt).scalar_one_or_none()
            return None if body is None else dict(json.loads(body))

        return await self._sql.run(work)

    async def unstarted(self, before: datetime, limit: int = 100) -> list[Payment]:
        """Payer payments received before `before` that no instance has claimed yet."""
        stmt = (
            select(payments)
            .where(
                payments.c.direction == "PAYER",
                payments.c.status == "RECEIVED",
                payments.c.instance_id.is_(None),
                payments.c.created_at < before,
            )
            .limit(limit)
        )
        rows = await self._sql.run(lambda conn: conn.execute(stmt).all(), read_only=True)
        return [_row(row) for row in rows]

    async def count_open(self, direction: str = "PAYER") -> int:
        """Payments of `direction` not yet in a final state (any replica's)."""
        stmt = (
            select(func.count())
            .select_from(payments)
            .where(payments.c.direction == direction, _OPEN)
        )
        return int(await self._sql.run(lambda c: c.execute(stmt).scalar_one(), read_only=True))

    async def get(self, transaction_id: str) -> Payment | None:
        return await self._sql.run(
            lambda conn: _one(conn, payments.c.transaction_id == transaction_id), read_only=True
        )

    async def set_status(self, transaction_id: str, status: str, reason: str | None = None) -> None:
        stmt = self._status_stmt(transaction_id, status, reason)

        def work(conn: Connection) -> None:
            conn.execute(stmt)

        await self._sql.run(work)

    @staticmethod
    def _status_stmt(transaction_id: str, status: str, reason: str | None) -> Update:
        # A final state is never overwritten (a late duplicate job must not reopen it).
        return (
            update(payments)
            .where(
                payments.c.transaction_id == transaction_id,
                payments.c.status.not_in(FINAL_STATES),
            )
            .values(status=status, reason=reason, updated_at=datetime.now(UTC))
        )


def _create_tables(engine: Engine, attempts: int = 3) -> None:
    """Create the tables; worker replicas starting together race on PostgreSQL's catalogue, and
    the loser of that race finds the tables there on its next try."""
    for attempt in range(attempts):
        try:
            metadata.create_all(engine)
            # create_all skips the indexes of a table that already exists (a store made
            # before an index was added)
            for index in payments.indexes:
                index.create(engine, checkfirst=True)
            return
        except DBAPIError:
            if attempt == attempts - 1:
                raise


def _received(
    transaction_id: str,
    tenant: str,
    correlation_id: str | None,
    direction: str,
    request: dict[str, Any],
) -> Payment:
    """A payment as it is first recorded: RECEIVED, no instance yet."""
    now = datetime.now(UTC)
    return Payment(
        transaction_id=transaction_id,
        tenant=tenant,
        correlation_id=correlation_id,
        direction=direction,
        status="RECEIVED",
        reason=None,
        request=request,
        created_at=now,
        updated_at=now,
    )


def _columns(payment: Payment) -> dict[str, Any]:
    """`payment` as its row in `payments` (the request as canonical JSON)."""
    return {**asdict(payment), "request": json.dumps(payment.request, sort_keys=True)}


def _one(conn: Connection, where: Any) -> Payment | None:
    row = conn.execute(select(payments).where(where)).first()
    return _row(row) if row else None


def _fail(transaction_id: str) -> Payment:
    raise RuntimeError(f"payment {transaction_id} vanished right after it was written")
