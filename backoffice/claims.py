"""What a batch may still import, and what waits for its tenant (control tables, in the batch's
transaction).

* `claim` locks the batch's (engine, history table) rows of `import_progress` (FOR UPDATE;
  SQLite locks the file), drops every record whose position is already in `seen_records` (or
  twice in the batch), and adds the rest there. A replay after a crash, and a batch written by a
  consumer that lost its partitions in a rebalance, find their records seen and change nothing.
  Positions are kept as a set: LSNs repeat and are not in delivery order (decision 0013).
* `park` / `unpark` keep records of an instance whose tenant is not known yet in
  `pending_records`, as received (Kafka key and value).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Connection, and_, bindparam, delete, select, tuple_

from backoffice import mapping, schema
from backoffice.db import now
from backoffice.records import BadRecord, CdcRecord, decode
from phee.sql import insert_or_ignore

log = logging.getLogger(__name__)

Instance = tuple[str, str]  # (engine, process instance id)
_CHUNK = 500
T = TypeVar("T")


def chunks(items: Sequence[T], size: int = _CHUNK) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def claim(
    conn: Connection, dialect: str, lock: bool, records: Sequence[CdcRecord]
) -> tuple[list[CdcRecord], list[CdcRecord]]:
    """(fresh records, records seen before); the fresh ones are now marked seen."""
    tables = sorted({(r.engine, r.table) for r in records})
    if not tables:
        return [], []
    t = schema.import_progress
    stamp = now()
    conn.execute(
        insert_or_ignore(t, dialect, ("engine", "source_table")),
        [{"engine": e, "source_table": s, "records": 0, "updated_at": stamp} for e, s in tables],
    )
    query = select(t.c.engine, t.c.source_table).where(
        tuple_(t.c.engine, t.c.source_table).in_(tables)
    )
    if lock:
        query = query.with_for_update()
    conn.execute(query.order_by(t.c.engine, t.c.source_table)).all()
    seen = schema.seen_records
    keys = sorted({(r.engine, r.position) for r in records})
    done: set[tuple[str, str]] = set()
    for chunk in chunks(keys):
        rows = conn.execute(
            select(seen.c.engine, seen.c.position).where(
                tuple_(seen.c.engine, seen.c.position).in_(chunk)
            )
        )
        done.update((r.engine, r.position) for r in rows)
    fresh: list[CdcRecord] = []
    repeated: list[CdcRecord] = []
    for rec in records:
        k = (rec.engine, rec.position)
        if k in done:
            repeated.append(rec)
        else:
            done.add(k)
            fresh.append(rec)
    if fresh:
        conn.execute(
            seen.insert(),
            [{"engine": r.engine, "position": r.position, "seen_at": stamp} for r in fresh],
        )
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for rec in fresh:
            counts[(rec.engine, rec.table)] += 1
        conn.execute(
            t.update()
            .where(
                and_(t.c.engine == bindparam("b_engine"), t.c.source_table == bindparam("b_table"))
            )
            .values(records=t.c.records + bindparam("n"), updated_at=bindparam("updated_at")),
            [
                {"b_engine": e, "b_table": s, "n": n, "updated_at": stamp}
                for (e, s), n in sorted(counts.items())
            ],
        )
    return fresh, repeated


def park(conn: Connection, dialect: str, records: Sequence[CdcRecord]) -> None:
    if not records:
        return
    stamp = now()
    conn.execute(
        insert_or_ignore(schema.pending_records, dialect, schema.RECORD_KEY),
        [
            {
                "engine": r.engine,
                "position": r.position,
                "source_table": r.table,
                "process_instance_key": r.process_instance_id,
                "record_key": r.key.decode(),
                "record": r.raw.decode(),
                "ends": mapping.ended(r),
                "received_at": stamp,
            }
            for r in records
        ],
    )


def unpark(conn: Connection, insts: Sequence[Instance]) -> dict[Instance, list[CdcRecord]]:
    """Take the parked records of these instances out of `pending_records`, in log order."""
    t = schema.pending_records
    parked: dict[Instance, list[CdcRecord]] = defaultdict(list)
    for chunk in chunks(insts):
        where = tuple_(t.c.engine, t.c.process_instance_key).in_(chunk)
        rows = conn.execute(
            select(t.c.engine, t.c.source_table, t.c.record_key, t.c.record).where(where)
        )
        for row in rows:
            try:
                rec = decode(
                    row.engine, row.source_table, row.record_key.encode(), row.record.encode()
                )
            except BadRecord:  # it decoded when it was parked
                log.exception("a parked record no longer decodes")
                raise
            parked[(rec.engine, rec.process_instance_id or "")].append(rec)
        conn.execute(delete(t).where(where))
    for recs in parked.values():  # one row's changes are in LSN order (a snapshot row first)
        recs.sort(key=lambda r: (r.lsn, r.op != "r"))
    return parked


def orphans(conn: Connection, ended_before: datetime, lock: bool) -> list[Instance]:
    """Instances whose end was parked before `ended_before` and that still have no tenant."""
    t = schema.pending_records
    query = (
        select(t.c.engine, t.c.process_instance_key)
        .where(and_(t.c.ends.is_(True), t.c.received_at < ended_before))
        .distinct()
    )
    if lock:
        query = query.with_for_update()
    return [(r.engine, r.process_instance_key) for r in conn.execute(query)]
