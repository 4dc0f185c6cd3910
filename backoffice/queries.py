"""The operations API's reads over one tenant's tables (SQLAlchemy Core, no web types).

Statements are built here without a schema; callers run them on `Database.tenant(conn, t)`, so
the tenant comes from the authenticated principal and never from a statement.

Paging is keyset paging with an opaque cursor (not an offset): the importer keeps inserting
while someone pages, and an offset would then repeat or skip rows, a cursor does neither.
Transfers come newest first (`started_at` descending, transfers not started yet last), ties by
(engine, process_instance_key) ascending; the cursor is the last row's sort key, base64url JSON
with a kind tag so an audit cursor cannot be replayed on transfers. `total` counts every row
matching the filters (it ignores the cursor). Times are stored and compared in UTC (SQLite and
MariaDB drop the offset, so every bound is converted to UTC first).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Select, and_, case, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from backoffice.schema import audit_log, incidents, steps, transfers, variables

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: most transfers one transaction id can show (a payer and a payee side, plus retries)
MAX_TRANSACTION_TRANSFERS = 20


def utc(value: datetime) -> datetime:
    """`value` in UTC; a naive value (SQLite, MariaDB) is UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1..{MAX_LIMIT}, not {limit}")
    return limit


# -- cursors ------------------------------------------------------------------------------------


def _encode(kind: str, parts: Sequence[Any]) -> str:
    raw = json.dumps([kind, *parts], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(kind: str, token: str, arity: int) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        parts = json.loads(raw)
    except (binascii.Error, ValueError):
        raise ValueError("the cursor is not one this API issued") from None
    if not isinstance(parts, list) or len(parts) != arity + 1 or parts[0] != kind:
        raise ValueError("the cursor is not one this API issued")
    return parts[1:]


@dataclass(frozen=True)
class TransferCursor:
    """Where a page of transfers ended: the last row's sort key."""

    started_at: datetime | None
    engine: str
    process_instance_key: str

    def encode(self) -> str:
        started = utc(self.started_at).isoformat() if self.started_at else None
        return _encode("t", [started, self.engine, self.process_instance_key])

    @classmethod
    def decode(cls, token: str) -> TransferCursor:
        started, engine, key = _decode("t", token, 3)
        if not (
            (started is None or isinstance(started, str))
            and isinstance(engine, str)
            and isinstance(key, str)
        ):
            raise ValueError("the cursor is not one this API issued")
        try:
            at = utc(datetime.fromisoformat(started)) if started is not None else None
        except ValueError:
            raise ValueError("the cursor is not one this API issued") from None
        return cls(at, engine, key)


@dataclass(frozen=True)
class AuditCursor:
    """Where a page of the audit log ended: the last entry's sequence number."""

    seq: int

    def encode(self) -> str:
        return _encode("a", [self.seq])

    @classmethod
    def decode(cls, token: str) -> AuditCursor:
        (seq,) = _decode("a", token, 1)
        if not isinstance(seq, int):
            raise ValueError("the cursor is not one this API issued")
        return cls(seq)


@dataclass
class Page:
    """One page of rows, how many rows match in all, and the cursor of the next page."""

    items: list[dict[str, Any]]
    total: int
    next_cursor: str | None


# -- transfer search ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TransferFilter:
    """Search criteria; every one given must hold (AND). Amount bounds are inclusive, the time
    range is `started_from <= started_at < started_to`."""

    party: str | None = None
    dfsp: str | None = None
    status: str | None = None
    min_amount: Decimal | None = None
    max_amount: Decimal | None = None
    started_from: datetime | None = None
    started_to: datetime | None = None
    correlation_id: str | None = None
    transaction_id: str | None = None
    engine: str | None = None
    direction: str | None = None


def transfer_conditions(f: TransferFilter) -> list[ColumnElement[bool]]:
    c = transfers.c
    conds: list[ColumnElement[bool]] = []
    if f.party is not None:
        conds.append(or_(c.payer_id == f.party, c.payee_id == f.party))
    if f.dfsp is not None:
        conds.append(or_(c.payer_dfsp == f.dfsp, c.payee_dfsp == f.dfsp))
    if f.status is not None:
        conds.append(c.status == f.status)
    if f.min_amount is not None:
        conds.append(c.amount >= f.min_amount)
    if f.max_amount is not None:
        conds.append(c.amount <= f.max_amount)
    if f.started_from is not None:
        conds.append(c.started_at >= utc(f.started_from))
    if f.started_to is not None:
        conds.append(c.started_at < utc(f.started_to))
    if f.correlation_id is not None:
        conds.append(c.correlation_id == f.correlation_id)
    if f.transaction_id is not None:
        conds.append(c.transaction_id == f.transaction_id)
    if f.engine is not None:
        conds.append(c.engine == f.engine)
    if f.direction is not None:
        conds.append(c.direction == f.direction)
    return conds


#: transfers without a start time sort last on every database (NULLS LAST is not portable)
_NOT_STARTED = case((transfers.c.started_at.is_(None), 1), else_=0)


def _after_transfer(cur: TransferCursor) -> ColumnElement[bool]:
    c = transfers.c
    tie = or_(
        c.engine > cur.engine,
        and_(c.engine == cur.engine, c.process_instance_key > cur.process_instance_key),
    )
    if cur.started_at is None:
        return and_(c.started_at.is_(None), tie)
    started = utc(cur.started_at)
    return or_(
        c.started_at < started,
        and_(c.started_at == started, tie),
        c.started_at.is_(None),
    )


def transfer_search_stmt(
    f: TransferFilter, limit: int, after: TransferCursor | None = None
) -> Select[Any]:
    """One page (plus one row, which says whether there is a next page)."""
    conds = transfer_conditions(f)
    if after is not None:
        conds.append(_after_transfer(after))
    c = transfers.c
    return (
        select(transfers)
        .where(*conds)
        .order_by(_NOT_STARTED, c.started_at.desc(), c.engine, c.process_instance_key)
        .limit(check_limit(limit) + 1)
    )


def transfer_count_stmt(f: TransferFilter) -> Select[int]:
    return select(func.count()).select_from(transfers).where(*transfer_conditions(f))


def search_transfers(
    conn: Connection, f: TransferFilter, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
) -> Page:
    """A page of transfers matching `f`; `cursor` (from the previous page) or ValueError."""
    after = TransferCursor.decode(cursor) if cursor else None
    rows = [_transfer(r._asdict()) for r in conn.execute(transfer_search_stmt(f, limit, after))]
    total = conn.execute(transfer_count_stmt(f)).scalar_one()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = TransferCursor(
            last["started_at"], last["engine"], last["process_instance_key"]
        ).encode()
    return Page(rows, int(total), next_cursor)


# -- transfer detail ----------------------------------------------------------------------------


def _times(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: utc(v) if isinstance(v, datetime) else v for k, v in row.items()}


def _transfer(row: Mapping[str, Any]) -> dict[str, Any]:
    return _times(row)


def _json(text: str) -> Any:
    """A variable's value: JSON documents parsed, anything else as the text it is."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _instance(table: Any, engine: str, key: str) -> Select[Any]:
    """One instance's changes of one table, in commit order as far as the log tells: commit
    time, then LSN (a row's own changes have rising LSNs)."""
    return (
        select(table)
        .where(table.c.engine == engine, table.c.process_instance_key == key)
        .order_by(table.c.at, table.c.lsn, table.c.position)
    )


def detail_of(conn: Connection, transfer: Mapping[str, Any]) -> dict[str, Any]:
    """The transfer with its steps, variables (values parsed) and incidents, in log order."""
    engine, key = transfer["engine"], transfer["process_instance_key"]
    return {
        "transfer": _transfer(transfer),
        "steps": [_times(r._asdict()) for r in conn.execute(_instance(steps, engine, key))],
        "variables": [
            {**_times(r._asdict()), "value": _json(r.value)}
            for r in conn.execute(_instance(variables, engine, key))
        ],
        "incidents": [_times(r._asdict()) for r in conn.execute(_instance(incidents, engine, key))],
    }


def transfer_stmt(engine: str, process_instance_key: str) -> Select[Any]:
    c = transfers.c
    return select(transfers).where(
        c.engine == engine, c.process_instance_key == process_instance_key
    )


def transfer_detail(
    conn: Connection, engine: str, process_instance_key: str
) -> dict[str, Any] | None:
    """One process instance's transfer with everything recorded about it; None if absent."""
    row = conn.execute(transfer_stmt(engine, process_instance_key)).first()
    return None if row is None else detail_of(conn, row._asdict())


def transaction_stmt(transaction_id: str) -> Select[Any]:
    c = transfers.c
    return (
        select(transfers)
        .where(c.transaction_id == transaction_id)
        .order_by(_NOT_STARTED, c.started_at, c.engine, c.process_instance_key)
        .limit(MAX_TRANSACTION_TRANSFERS)
    )


def transaction_details(conn: Connection, transaction_id: str) -> list[dict[str, Any]]:
    """Every transfer (both sides, on any engine) carrying this transaction id, oldest first."""
    rows = conn.execute(transaction_stmt(transaction_id)).all()
    return [detail_of(conn, r._asdict()) for r in rows]


# -- audit log ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    """Audit log criteria (AND); the time range is `at_from <= at < at_to`."""

    actor: str | None = None
    action: str | None = None
    subject: str | None = None
    at_from: datetime | None = None
    at_to: datetime | None = None


def audit_conditions(f: AuditFilter) -> list[ColumnElement[bool]]:
    c = audit_log.c
    conds: list[ColumnElement[bool]] = []
    if f.actor is not None:
        conds.append(c.actor == f.actor)
    if f.action is not None:
        conds.append(c.action == f.action)
    if f.subject is not None:
        conds.append(c.subject == f.subject)
    if f.at_from is not None:
        conds.append(c.at >= utc(f.at_from))
    if f.at_to is not None:
        conds.append(c.at < utc(f.at_to))
    return conds


def audit_stmt(f: AuditFilter, limit: int, after: AuditCursor | None = None) -> Select[Any]:
    """Newest entries first (one extra row says whether there is a next page)."""
    conds = audit_conditions(f)
    if after is not None:
        conds.append(audit_log.c.seq < after.seq)
    return (
        select(audit_log)
        .where(*conds)
        .order_by(audit_log.c.seq.desc())
        .limit(check_limit(limit) + 1)
    )


def audit_page(
    conn: Connection, f: AuditFilter, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
) -> Page:
    """A page of audit entries (detail parsed when it is JSON); bad `cursor` -> ValueError."""
    after = AuditCursor.decode(cursor) if cursor else None
    rows = [
        {**_times(r._asdict()), "detail": _json(r.detail)}
        for r in conn.execute(audit_stmt(f, limit, after))
    ]
    total = conn.execute(
        select(func.count()).select_from(audit_log).where(*audit_conditions(f))
    ).scalar_one()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = AuditCursor(rows[-1]["seq"]).encode()
    return Page(rows, int(total), next_cursor)
