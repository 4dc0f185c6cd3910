"""The back office's tamper-evident audit log: append inside a transaction, verify a tenant.

Entries are hash-chained with an HMAC key (`audit_chain`), so whoever edits the tables without
the key leaves a trace `verify` finds. Writers are serialised by locking the one `audit_head`
row; the importer appends thousands of entries per batch with a constant number of statements.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from backoffice.audit_chain import (
    GENESIS,
    AuditEntry,
    Finding,
    chain,
    head_mac,
    utc,
    verify_rows,
)
from backoffice.db import Database
from backoffice.schema import audit_head, audit_log
from phee.sql import insert_or_ignore

__all__ = [
    "AuditEntry",
    "AuditError",
    "Finding",
    "Report",
    "append",
    "check",
    "operator_recorder",
    "verify",
]

#: rows read per query by `verify`, and sources looked up per query by `append`
PAGE = 5000
_MYSQL = ("mysql", "mariadb")


class AuditError(Exception):
    """The log cannot be extended safely (its head's seal is wrong): appending would hide it."""


@dataclass(frozen=True)
class Report:
    """What `check` read and found."""

    tenant: str
    entries: int
    findings: list[Finding]


def append(conn: Connection, key: bytes, entries: Sequence[AuditEntry], *, lock: bool) -> int:
    """Chain `entries` onto the tenant's log in the caller's transaction; return how many.

    `conn` is tenant-mapped (`Database.tenant`). Entries whose source is already logged (or
    repeated in the batch) are skipped, so replaying an import batch appends nothing. `lock`
    (`Database.lock_rows()`) takes the head row FOR UPDATE; SQLite serialises by its file lock.
    """
    if not entries:
        return 0
    dialect = conn.dialect.name
    # Create the head before reading it: on MariaDB, two SELECT ... FOR UPDATE of a missing row
    # take gap locks that deadlock both inserts; on SQLite the first write takes the file lock.
    conn.execute(
        insert_or_ignore(audit_head, dialect, ["id"]).values(
            id=1, seq=0, hash=GENESIS, mac=head_mac(key, 0, GENESIS)
        )
    )
    query = select(audit_head.c.seq, audit_head.c.hash, audit_head.c.mac).where(
        audit_head.c.id == 1
    )
    head = conn.execute(query.with_for_update() if lock else query).one()
    if not hmac.compare_digest(head.mac, head_mac(key, head.seq, head.hash)):
        raise AuditError(
            "the audit head's seal is not valid (tampered, or another key): run "
            "`python -m backoffice.audit_cli verify` before appending"
        )
    fresh = _unlogged(conn, entries, locking_read=lock and dialect in _MYSQL)
    if not fresh:
        return 0
    if dialect in _MYSQL:
        # DATETIME without fractional digits keeps whole seconds: hash what will be read back
        fresh = [replace(e, at=utc(e.at).replace(microsecond=0)) for e in fresh]
    rows = chain(key, head.hash, head.seq + 1, fresh)
    conn.execute(audit_log.insert(), rows)
    last_seq, last_hash = rows[-1]["seq"], rows[-1]["hash"]
    conn.execute(
        audit_head.update()
        .where(audit_head.c.id == 1)
        .values(seq=last_seq, hash=last_hash, mac=head_mac(key, last_seq, last_hash))
    )
    return len(rows)


def _unlogged(
    conn: Connection, entries: Sequence[AuditEntry], *, locking_read: bool
) -> list[AuditEntry]:
    """`entries` minus those whose source is logged already or came earlier in the batch."""
    sources = list(dict.fromkeys(e.source for e in entries if e.source is not None))
    known: set[str] = set()
    for start in range(0, len(sources), PAGE):  # one query unless the batch is huge
        query = select(audit_log.c.source).where(
            audit_log.c.source.in_(sources[start : start + PAGE])
        )
        # MariaDB's plain SELECT reads the transaction's snapshot, which may predate the rows
        # of the writer that held the head lock before us; a locking read sees them
        if locking_read:
            query = query.with_for_update(read=True)
        known.update(conn.execute(query).scalars())
    fresh: list[AuditEntry] = []
    for entry in entries:
        if entry.source is not None:
            if entry.source in known:
                continue
            known.add(entry.source)
        fresh.append(entry)
    return fresh


def check(db: Database, tenant: str, key: bytes) -> Report:
    """Read the tenant's head and log (in pages, one consistent snapshot) and verify them."""
    with db.engine.connect() as raw:
        if db.dialect != "sqlite":
            # one snapshot for the head and every page: a concurrent append is not a finding
            raw = raw.execution_options(isolation_level="REPEATABLE READ")
        conn = db.tenant(raw, tenant)
        with conn.begin():
            if db.dialect == "sqlite":
                # pysqlite starts no transaction for reads; this holds the shared lock throughout
                conn.exec_driver_sql("BEGIN")
            head = conn.execute(
                select(audit_head.c.seq, audit_head.c.hash, audit_head.c.mac).where(
                    audit_head.c.id == 1
                )
            ).first()
            counter = _Counter()
            findings = verify_rows(
                key, counter.count(_pages(conn)), None if head is None else dict(head._mapping)
            )
    return Report(tenant, counter.n, findings)


def verify(db: Database, tenant: str, key: bytes) -> list[Finding]:
    """Every problem in the tenant's audit log (empty: intact)."""
    return check(db, tenant, key).findings


def _pages(conn: Connection) -> Iterator[Mapping[str, Any]]:
    """The log in seq order, PAGE rows per query (memory stays bounded for any log size)."""
    after: int | None = None
    while True:
        query = select(audit_log).order_by(audit_log.c.seq).limit(PAGE)
        if after is not None:
            query = query.where(audit_log.c.seq > after)
        page = [dict(row) for row in conn.execute(query).mappings()]
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1]["seq"]


class _Counter:
    """Counts rows as they stream past."""

    def __init__(self) -> None:
        self.n = 0

    def count(self, rows: Iterator[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        for row in rows:
            self.n += 1
            yield row


def operator_recorder(
    db: Database, key: bytes
) -> Callable[[str, str, str, str, dict[str, Any]], None]:
    """The operations API's hook: each operator action becomes an entry in the tenant's log,
    committed before the API answers (an action that cannot be logged is not served)."""

    def record(tenant: str, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
        entry = AuditEntry(
            datetime.now(UTC), f"operator:{actor}"[:128], action, subject[:256], detail
        )
        with db.begin() as conn:
            append(db.tenant(conn, tenant), key, [entry], lock=db.lock_rows())

    return record
