"""One import batch, applied in one SQL transaction: the back office's exactly-once core.

Exactly once in effect, whatever Kafka redelivers:
* `import_progress` holds, per (engine, partition), the newest Zeebe position imported. The batch
  locks those rows first (FOR UPDATE; SQLite locks the file), drops every record at or below
  them and moves them forward in the same transaction as the rows it writes. A replay after a
  crash, and a batch written by a consumer that lost its partitions in a rebalance, find their
  records already covered and change nothing.
* Every stored row also carries (engine, partition, position) under a unique key, written with
  insert-or-ignore, and a transfer keeps the last position folded into it: a second line of
  defence that makes each table idempotent on its own.
* OpenSearch is written before the SQL commit, with whole documents under stable ids: if the
  commit fails the batch is replayed and writes the same documents again.
* Records are filed under the tenant named by the payment's own `tenant` variable. Records seen
  before that variable wait in `pending_records`; an instance that ends without naming a
  tenant, or names one this back office does not serve, goes to the dead-letter topic.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, delete, select, tuple_

from backoffice import audit, mapping, schema
from backoffice.db import Database, now
from backoffice.outcome import BatchResult, Dead, DeadLetter, Step, StepObserver, unwatched
from backoffice.records import BadRecord, ZeebeRecord, decode
from backoffice.search import Search
from phee.sql import insert_or_ignore

log = logging.getLogger(__name__)

Instance = tuple[str, int]  # (engine, process instance key)
_CHUNK = 500


@dataclass
class _TenantRows:
    steps: list[dict[str, Any]] = field(default_factory=list)
    variables: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    facts: list[mapping.AuditFact] = field(default_factory=list)
    payments: dict[Instance, list[ZeebeRecord]] = field(default_factory=dict)


class Applier:
    """Applies batches of decoded records to SQL (and OpenSearch)."""

    def __init__(
        self,
        db: Database,
        search: Search | None,
        tenants: Iterable[str],
        audit_key: bytes,
        *,
        observer: StepObserver | None = None,
    ) -> None:
        self.db = db
        self.search = search
        self.tenants = frozenset(tenants)
        self.audit_key = audit_key
        self._step = observer.step if observer is not None else unwatched
        self._search_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bo-search")

    def apply(self, records: Sequence[ZeebeRecord], dead_letter: DeadLetter) -> BatchResult:
        with self._step(Step.TRANSACTION):
            return self._apply(records, dead_letter)

    def _apply(self, records: Sequence[ZeebeRecord], dead_letter: DeadLetter) -> BatchResult:
        step = self._step
        result = BatchResult()
        with self.db.begin() as conn:
            with step(Step.CLAIM):
                fresh = self._claim(conn, records, result)
            groups: dict[Instance, list[ZeebeRecord]] = defaultdict(list)
            ignored: list[ZeebeRecord] = []
            for rec in fresh:
                pik = rec.process_instance_key
                if pik is None or mapping.classify(rec) == "ignored":
                    ignored.append(rec)  # commands, timers, subscriptions, deployments, ...
                else:
                    groups[(rec.engine, pik)].append(rec)
            result.add(ignored, "ignored")
            with step(Step.RESOLVE):
                owners, dead = self._resolve(conn, groups, result)
            rows: dict[str, _TenantRows] = defaultdict(_TenantRows)
            with step(Step.MAP):
                for inst, recs in groups.items():
                    tenant = owners.get(inst)
                    if tenant is None:
                        continue
                    self._map(rows[tenant], inst, recs, result)
            if dead:
                dead_letter(dead)
                result.by_engine.update((d.engine, "dead_letter") for d in dead)
            # Transfers are folded first, so OpenSearch can index them while SQL writes.
            with step(Step.FOLD):
                folded = {
                    tenant: self._fold_transfers(self.db.tenant(conn, tenant), tr.payments)
                    for tenant, tr in rows.items()
                }
            docs = [(tenant, row) for tenant, (ins, upd) in folded.items() for row in ins + upd]
            indexing = (
                self._search_pool.submit(self._index, self.search, docs)
                if self.search is not None and docs
                else None
            )
            try:
                with step(Step.WRITE):
                    for tenant, tr in rows.items():
                        tconn = self.db.tenant(conn, tenant)
                        self._write(tconn, tenant, tr, *folded[tenant], result)
            finally:
                if indexing is not None:
                    indexing.result()  # an indexing error rolls the SQL transaction back
        return result

    def _index(self, search: Search, docs: list[tuple[str, dict[str, Any]]]) -> None:
        with self._step(Step.INDEX):
            search.index(docs)

    # -- progress -------------------------------------------------------------------------------

    def _claim(
        self, conn: Connection, records: Sequence[ZeebeRecord], result: BatchResult
    ) -> list[ZeebeRecord]:
        """Lock the batch's (engine, partition) progress rows; keep records beyond them."""
        top: dict[tuple[str, int], int] = {}
        for rec in records:
            k = (rec.engine, rec.partition)
            top[k] = max(top.get(k, -1), rec.position)
        if not top:
            return []
        t = schema.import_progress
        stamp = now()
        conn.execute(
            insert_or_ignore(t, self.db.dialect, ("engine", "partition_id")),
            [
                {"engine": e, "partition_id": p, "position": -1, "updated_at": stamp}
                for e, p in sorted(top)
            ],
        )
        query = (
            select(t.c.engine, t.c.partition_id, t.c.position)
            .where(tuple_(t.c.engine, t.c.partition_id).in_(sorted(top)))
            .order_by(t.c.engine, t.c.partition_id)
        )
        if self.db.lock_rows():
            query = query.with_for_update()
        done = {(r.engine, r.partition_id): r.position for r in conn.execute(query)}
        fresh = [r for r in records if r.position > done[(r.engine, r.partition)]]
        if len(fresh) < len(records):
            result.add(
                (r for r in records if r.position <= done[(r.engine, r.partition)]), "duplicate"
            )
        moved = [
            {"b_engine": e, "b_partition": p, "position": pos, "updated_at": stamp}
            for (e, p), pos in top.items()
            if pos > done[(e, p)]
        ]
        if moved:
            conn.execute(
                t.update()
                .where(
                    and_(
                        t.c.engine == bindparam("b_engine"),
                        t.c.partition_id == bindparam("b_partition"),
                    )
                )
                .values(position=bindparam("position"), updated_at=bindparam("updated_at")),
                moved,
            )
        return fresh

    # -- tenants --------------------------------------------------------------------------------

    def _resolve(
        self,
        conn: Connection,
        groups: dict[Instance, list[ZeebeRecord]],
        result: BatchResult,
    ) -> tuple[dict[Instance, str], list[Dead]]:
        """Which tenant each instance belongs to; park or dead-letter the rest."""
        named: dict[Instance, str] = {}
        for inst, recs in groups.items():
            for rec in recs:
                tenant = mapping.tenant_of(rec)
                if tenant is not None:
                    named.setdefault(inst, tenant)
        known = self._known(conn, list(groups))
        owners = {**named, **known}  # a tenant once filed never changes
        first_seen = {inst: t for inst, t in named.items() if inst not in known}
        if first_seen:
            conn.execute(
                insert_or_ignore(
                    schema.instances, self.db.dialect, ("engine", "process_instance_key")
                ),
                [
                    {"engine": e, "process_instance_key": k, "tenant": t[:32]}
                    for (e, k), t in first_seen.items()
                ],
            )
            for inst, parked in self._unpark(conn, list(first_seen)).items():
                groups[inst][:0] = parked
        dead: list[Dead] = []
        to_park: list[ZeebeRecord] = []
        for inst, recs in groups.items():
            tenant = owners.get(inst)
            if tenant is None:
                if any(mapping.ends_instance(r) for r in recs):
                    recs[:0] = self._unpark(conn, [inst]).get(inst, [])
                    dead.extend(
                        _dead(r, "no-tenant", "the instance ended without a tenant") for r in recs
                    )
                else:
                    to_park.extend(recs)
                    result.add(recs, "pending")
            elif tenant not in self.tenants:
                dead.extend(
                    _dead(r, "unknown-tenant", f"tenant {tenant!r} is not served") for r in recs
                )
                owners.pop(inst)
        if to_park:
            stamp = now()
            conn.execute(
                insert_or_ignore(schema.pending_records, self.db.dialect, schema.RECORD_KEY),
                [
                    {
                        "engine": r.engine,
                        "partition_id": r.partition,
                        "position": r.position,
                        "process_instance_key": r.process_instance_key,
                        "record": r.raw.decode(),
                        "received_at": stamp,
                    }
                    for r in to_park
                ],
            )
        return owners, dead

    def _known(self, conn: Connection, insts: list[Instance]) -> dict[Instance, str]:
        t = schema.instances
        found: dict[Instance, str] = {}
        for chunk in _chunks(insts):
            query = select(t.c.engine, t.c.process_instance_key, t.c.tenant).where(
                tuple_(t.c.engine, t.c.process_instance_key).in_(chunk)
            )
            found.update(
                {(r.engine, r.process_instance_key): r.tenant for r in conn.execute(query)}
            )
        return found

    def _unpark(self, conn: Connection, insts: list[Instance]) -> dict[Instance, list[ZeebeRecord]]:
        """Take the parked records of these instances out of `pending_records`, in order."""
        t = schema.pending_records
        parked: dict[Instance, list[ZeebeRecord]] = defaultdict(list)
        for chunk in _chunks(insts):
            where = tuple_(t.c.engine, t.c.process_instance_key).in_(chunk)
            rows = conn.execute(select(t.c.engine, t.c.record).where(where).order_by(t.c.position))
            for row in rows:
                try:
                    rec = decode(row.engine, row.record.encode())
                except BadRecord:  # it decoded when it was parked
                    log.exception("a parked record no longer decodes")
                    raise
                parked[(rec.engine, rec.process_instance_key or 0)].append(rec)
            if parked:
                conn.execute(delete(t).where(where))
        return parked

    # -- rows -----------------------------------------------------------------------------------

    def _map(
        self, tr: _TenantRows, inst: Instance, recs: list[ZeebeRecord], result: BatchResult
    ) -> None:
        """Rows of one instance's records (`apply` kept only steps, variables and incidents)."""
        payment = False
        for rec in recs:
            if rec.value_type == "VARIABLE":
                tr.variables.append(mapping.variable_row(rec))
            elif rec.value_type == "INCIDENT":
                tr.incidents.append(mapping.incident_row(rec))
            else:
                tr.steps.append(mapping.step_row(rec))
            fact = mapping.audit_fact(rec)
            if fact is not None:
                tr.facts.append(fact)
            payment = payment or mapping.is_payment(rec)
        result.add(recs, "imported")
        if payment:
            tr.payments[inst] = recs

    def _write(
        self,
        conn: Connection,
        tenant: str,
        tr: _TenantRows,
        inserts: list[dict[str, Any]],
        updates: list[dict[str, Any]],
        result: BatchResult,
    ) -> None:
        """Insert the tenant's rows, upsert its transfers, chain its audit entries."""
        for table, rows in (
            (schema.steps, tr.steps),
            (schema.variables, tr.variables),
            (schema.incidents, tr.incidents),
        ):
            if not rows:
                continue
            if self.db.dialect == "postgresql":
                _copy(conn, self.db.namespace(tenant), table, rows)
            else:
                conn.execute(insert_or_ignore(table, self.db.dialect, schema.RECORD_KEY), rows)
        with self._step(Step.UPSERT_TRANSFERS):
            self._upsert_transfers(conn, inserts, updates)
        result.transfers += len(inserts) + len(updates)
        if tr.facts:
            entries = [
                audit.AuditEntry(f.at, f.actor, f.action, f.subject, f.detail, f.source)
                for f in tr.facts
            ]
            with self._step(Step.AUDIT):
                result.audit_entries += audit.append(
                    conn, self.audit_key, entries, lock=self.db.lock_rows()
                )

    def _fold_transfers(
        self, conn: Connection, payments: dict[Instance, list[ZeebeRecord]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The batch's payments folded into their rows: (new rows, changed rows)."""
        if not payments:
            return [], []
        t = schema.transfers
        existing: dict[Instance, dict[str, Any]] = {}
        for chunk in _chunks(list(payments)):
            query = select(t).where(tuple_(t.c.engine, t.c.process_instance_key).in_(chunk))
            for found in conn.execute(query).mappings():
                existing[(found["engine"], found["process_instance_key"])] = dict(found)
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for inst, recs in payments.items():
            row = existing.get(inst)
            fresh = row is None
            if row is None:
                row = mapping.new_transfer(next(r for r in recs if mapping.is_payment(r)))
            applied = [mapping.fold(row, rec) for rec in recs]
            if fresh:
                inserts.append(row)
            elif any(applied):
                updates.append(row)
        return inserts, updates

    def _upsert_transfers(
        self, conn: Connection, inserts: list[dict[str, Any]], updates: list[dict[str, Any]]
    ) -> None:
        t = schema.transfers
        if inserts:
            conn.execute(
                insert_or_ignore(t, self.db.dialect, ("engine", "process_instance_key")), inserts
            )
        if updates:
            columns = [
                c.name for c in t.columns if c.name not in ("engine", "process_instance_key")
            ]
            conn.execute(
                t.update()
                .where(
                    and_(
                        t.c.engine == bindparam("b_engine"),
                        t.c.process_instance_key == bindparam("b_pik"),
                    )
                )
                .values({c: bindparam(c) for c in columns}),
                [
                    {
                        **{c: row[c] for c in columns},
                        "b_engine": row["engine"],
                        "b_pik": row["process_instance_key"],
                    }
                    for row in updates
                ],
            )


def _copy(conn: Connection, namespace: str, table: Table, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL's COPY into a tenant table, in the batch's transaction: several times faster
    than row-by-row inserts. No ON CONFLICT is needed: the locked progress rows have already
    removed every record imported before, so a clash would be a bug and fails the batch."""
    names = [c.name for c in table.columns]
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    statement = f'COPY "{namespace}"."{table.name}" ({", ".join(names)}) FROM STDIN'
    with cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([row[n] for n in names])


def _dead(rec: ZeebeRecord, reason: str, detail: str) -> Dead:
    return Dead(rec.engine, rec.raw, reason, detail, rec.source)


def _chunks(items: list[Instance]) -> Iterable[list[Instance]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]
