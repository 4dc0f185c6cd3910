"""One import batch, applied in one SQL transaction: the back office's exactly-once core.

Exactly once in effect, whatever Kafka or Connect redelivers:
* `claims.claim` locks the batch's (engine, history table) rows, drops every record whose CDC
  position was seen before and marks the rest seen, in the same transaction as the rows it
  writes. A replay after a crash, and a batch written by a consumer that lost its partitions in
  a rebalance, find their records seen and change nothing.
* Every stored row also carries (engine, position) under a unique key, written with
  insert-or-ignore (COPY on PostgreSQL, where a clash would be a bug and fails the batch): a
  second line of defence that makes each table idempotent on its own.
* Search documents are written before the SQL commit, whole, under stable ids: if the commit
  fails the batch is replayed and writes the same documents again.
* Records are filed under the tenant named by the payment's own `tenant` variable. Records seen
  before that variable wait in `pending_records`; an instance that names a tenant this back
  office does not serve goes to the dead-letter topic, and so does one that ended without naming
  any (`expire_orphans`, after a grace: the history tables are separate topics, so the tenant
  variable may come after the instance's end).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, select, tuple_

from backoffice import audit, claims, mapping, schema
from backoffice.claims import Instance, chunks
from backoffice.db import Database
from backoffice.outcome import BatchResult, Dead, DeadLetter, Step, StepObserver, unwatched
from backoffice.records import CdcRecord
from backoffice.search import Search
from phee.sql import insert_or_ignore

log = logging.getLogger(__name__)


@dataclass
class _TenantRows:
    steps: list[dict[str, Any]] = field(default_factory=list)
    variables: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    facts: list[mapping.AuditFact] = field(default_factory=list)
    payments: dict[Instance, list[CdcRecord]] = field(default_factory=dict)


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

    def apply(self, records: Sequence[CdcRecord], dead_letter: DeadLetter) -> BatchResult:
        with self._step(Step.TRANSACTION):
            return self._apply(records, dead_letter)

    def _apply(self, records: Sequence[CdcRecord], dead_letter: DeadLetter) -> BatchResult:
        step = self._step
        result = BatchResult()
        with self.db.begin() as conn:
            kept: list[CdcRecord] = []
            ignored: list[CdcRecord] = []
            for rec in records:  # other tables, deletes (clean-up), rows of no instance
                (ignored if mapping.classify(rec) == "ignored" else kept).append(rec)
            with step(Step.CLAIM):
                fresh, repeated = claims.claim(conn, self.db.dialect, self.db.lock_rows(), kept)
            result.add(repeated, "duplicate")
            groups: dict[Instance, list[CdcRecord]] = defaultdict(list)
            for rec in fresh:
                groups[(rec.engine, rec.process_instance_id or "")].append(rec)
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

    # -- tenants --------------------------------------------------------------------------------

    def _resolve(
        self,
        conn: Connection,
        groups: dict[Instance, list[CdcRecord]],
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
            for inst, parked in claims.unpark(conn, list(first_seen)).items():
                groups[inst][:0] = parked
        dead: list[Dead] = []
        to_park: list[CdcRecord] = []
        for inst, recs in groups.items():
            tenant = owners.get(inst)
            if tenant is None:
                to_park.extend(recs)  # an end without a tenant: expire_orphans, after a grace
                result.add(recs, "pending")
            elif tenant not in self.tenants:
                dead.extend(
                    _dead(r, "unknown-tenant", f"tenant {tenant!r} is not served") for r in recs
                )
                owners.pop(inst)
        claims.park(conn, self.db.dialect, to_park)
        return owners, dead

    def expire_orphans(self, ended_before: datetime, dead_letter: DeadLetter) -> int:
        """Dead-letter the parked records of instances that ended (as parked before
        `ended_before`) without naming a tenant; the number of records."""
        with self.db.begin() as conn:
            insts = claims.orphans(conn, ended_before, self.db.lock_rows())
            if not insts:
                return 0
            parked = claims.unpark(conn, insts)
            dead = [
                _dead(r, "no-tenant", "the instance ended without a tenant")
                for recs in parked.values()
                for r in recs
            ]
            if dead:
                dead_letter(dead)
            return len(dead)

    def _known(self, conn: Connection, insts: list[Instance]) -> dict[Instance, str]:
        t = schema.instances
        found: dict[Instance, str] = {}
        for chunk in chunks(insts):
            query = select(t.c.engine, t.c.process_instance_key, t.c.tenant).where(
                tuple_(t.c.engine, t.c.process_instance_key).in_(chunk)
            )
            found.update(
                {(r.engine, r.process_instance_key): r.tenant for r in conn.execute(query)}
            )
        return found

    # -- rows -----------------------------------------------------------------------------------

    def _map(
        self, tr: _TenantRows, inst: Instance, recs: list[CdcRecord], result: BatchResult
    ) -> None:
        """Rows of one instance's records (`apply` kept only steps, variables and incidents)."""
        payment = False
        for rec in recs:
            kind = mapping.classify(rec)
            if kind == "variable":
                tr.variables.append(mapping.variable_row(rec))
            elif kind == "incident":
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
        self, conn: Connection, payments: dict[Instance, list[CdcRecord]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The batch's payments folded into their rows: (new rows, changed rows)."""
        if not payments:
            return [], []
        t = schema.transfers
        existing: dict[Instance, dict[str, Any]] = {}
        for chunk in chunks(list(payments)):
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
            applied = [mapping.fold(row, rec) for rec in recs if mapping.is_payment(rec)]
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


def _dead(rec: CdcRecord, reason: str, detail: str) -> Dead:
    return Dead(rec.engine, rec.raw, reason, detail, rec.source)
