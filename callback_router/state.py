"""Durable routing tables: party waits, payee id -> engine, and request hashes for duplicates.

They live in the router's database so that a restart keeps routing what it accepted before:
- `party_waits`: who waits for `PUT /parties/<party>` (bounded by each wait's expiry);
- `payee_routes`: which engine holds a payee transaction (from `POST /quotes`) or transfer
  (from `POST /transfers`), so the follow-ups reach it; kept `payee_retention_s`;
- `requests`: sha256 of each `POST /quotes` / `POST /transfers` body by id, to tell a resend
  (same content) from a modified request (3106), with the duplicate count a later engine API
  can use to resend the callback.
Expired rows are purged by the router's maintenance loop; lookups ignore them meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, Connection, Float, Integer, String, Table, delete, func, select
from sqlalchemy import update as sql_update

from callback_router.db import METADATA, Database
from callback_router.routing import PartyWait
from phee.sql import insert_or_ignore

party_waits = Table(
    "router_party_waits",
    METADATA,
    Column("party", String(300), primary_key=True),
    Column("transaction_id", String(64), primary_key=True),
    Column("engine", String(63), nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
)
payee_routes = Table(
    "router_payee_routes",
    METADATA,
    Column("kind", String(16), primary_key=True),  # "transaction" or "transfer"
    Column("id", String(64), primary_key=True),
    Column("engine", String(63), nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
)
requests = Table(
    "router_requests",
    METADATA,
    Column("resource", String(16), primary_key=True),  # "quotes" or "transfers"
    Column("id", String(64), primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("first_seen", Float, nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
    Column("duplicates", Integer, nullable=False, default=0),
    Column("modified", Integer, nullable=False, default=0),
    Column("last_duplicate_at", Float, nullable=True),
)


class Claim(StrEnum):
    """What a `POST` is, compared with what we saw before under the same id."""

    NEW = "new"
    SAME = "same"  # a resend: do not start twice
    MODIFIED = "modified"  # same id, other content: 3106


@dataclass(frozen=True)
class Duplicate:
    """A request resent while we hold its first copy (input for a later resend API)."""

    resource: str
    id: str
    duplicates: int
    modified: int
    last_duplicate_at: float | None


class State:
    """The router's routing tables over a `Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- party waits -------------------------------------------------------------------------
    async def add_party_wait(self, wait: PartyWait) -> None:
        """Register (or refresh) a wait; an engine calls this before it sends `GET /parties`."""

        def work(conn: Connection) -> None:
            conn.execute(
                delete(party_waits).where(
                    party_waits.c.party == wait.party,
                    party_waits.c.transaction_id == wait.transaction_id,
                )
            )
            conn.execute(
                party_waits.insert().values(
                    party=wait.party,
                    transaction_id=wait.transaction_id,
                    engine=wait.engine,
                    expires_at=wait.expires_at,
                )
            )

        await self.db.run(work)

    async def party_waits(self, party: str) -> list[PartyWait]:
        """Every stored wait for `party`, expired ones included (routing filters them)."""

        def work(conn: Connection) -> list[PartyWait]:
            rows = conn.execute(select(party_waits).where(party_waits.c.party == party))
            return [PartyWait(r.party, r.transaction_id, r.engine, r.expires_at) for r in rows]

        return await self.db.run(work)

    async def consume_party_waits(self, waits: list[PartyWait]) -> None:
        """Forget waits whose callback was delivered (an engine re-registers before a retry)."""
        if not waits:
            return

        def work(conn: Connection) -> None:
            for wait in waits:
                conn.execute(
                    delete(party_waits).where(
                        party_waits.c.party == wait.party,
                        party_waits.c.transaction_id == wait.transaction_id,
                    )
                )

        await self.db.run(work)

    # --- payee routes ------------------------------------------------------------------------
    async def record_route(self, kind: str, id_value: str, engine: str, expires_at: float) -> None:
        """Remember which engine holds a payee transaction or transfer."""

        def work(conn: Connection) -> None:
            where = (payee_routes.c.kind == kind, payee_routes.c.id == id_value)
            conn.execute(delete(payee_routes).where(*where))
            conn.execute(
                payee_routes.insert().values(
                    kind=kind, id=id_value, engine=engine, expires_at=expires_at
                )
            )

        await self.db.run(work)

    async def route_of(self, kind: str, id_value: str, now: float) -> str | None:
        """The engine holding a payee transaction/transfer, or None (unknown or expired)."""

        def work(conn: Connection) -> str | None:
            row = conn.execute(
                select(payee_routes.c.engine).where(
                    payee_routes.c.kind == kind,
                    payee_routes.c.id == id_value,
                    payee_routes.c.expires_at > now,
                )
            ).first()
            return None if row is None else str(row.engine)

        return await self.db.run(work)

    # --- duplicate detection -----------------------------------------------------------------
    async def claim(
        self, resource: str, id_value: str, sha256: str, now: float, expires_at: float
    ) -> Claim:
        """Record the first copy of a POST, or say whether this one is a resend or modified.

        An insert that ignores a clash makes two concurrent first copies race safely.
        """

        def work(conn: Connection) -> Claim:
            stmt = insert_or_ignore(requests, self.db.dialect, ["resource", "id"]).values(
                resource=resource,
                id=id_value,
                sha256=sha256,
                first_seen=now,
                expires_at=expires_at,
                duplicates=0,
                modified=0,
            )
            if conn.execute(stmt).rowcount == 1:
                return Claim.NEW
            where = (requests.c.resource == resource, requests.c.id == id_value)
            row = conn.execute(select(requests).where(*where)).one()
            if row.expires_at <= now:  # an old copy nobody remembers any more: start afresh
                conn.execute(
                    sql_update(requests)
                    .where(*where)
                    .values(
                        sha256=sha256,
                        first_seen=now,
                        expires_at=expires_at,
                        duplicates=0,
                        modified=0,
                        last_duplicate_at=None,
                    )
                )
                return Claim.NEW
            same = row.sha256 == sha256
            counter = requests.c.duplicates if same else requests.c.modified
            conn.execute(
                sql_update(requests)
                .where(*where)
                .values({counter.name: counter + 1, "last_duplicate_at": now})
            )
            return Claim.SAME if same else Claim.MODIFIED

        return await self.db.run(work)

    async def release(self, resource: str, id_value: str) -> None:
        """Forget a claim whose request was not taken (no engine), so a resend starts afresh."""

        def work(conn: Connection) -> None:
            conn.execute(
                delete(requests).where(requests.c.resource == resource, requests.c.id == id_value)
            )

        await self.db.run(work)

    async def duplicates(self) -> list[Duplicate]:
        """Requests resent (or modified) while remembered: what a resend API will act on."""

        def work(conn: Connection) -> list[Duplicate]:
            rows = conn.execute(
                select(requests)
                .where((requests.c.duplicates > 0) | (requests.c.modified > 0))
                .order_by(requests.c.last_duplicate_at)
            )
            return [
                Duplicate(r.resource, r.id, r.duplicates, r.modified, r.last_duplicate_at)
                for r in rows
            ]

        return await self.db.run(work)

    # --- maintenance -------------------------------------------------------------------------
    async def purge(self, now: float) -> int:
        """Delete expired rows from every table; returns how many went."""

        def work(conn: Connection) -> int:
            gone = 0
            for table in (party_waits, payee_routes, requests):
                gone += conn.execute(delete(table).where(table.c.expires_at <= now)).rowcount
            return gone

        return await self.db.run(work)

    async def counts(self) -> dict[str, int]:
        """Rows per table (admin view; tests use it to prove bad input wrote nothing)."""

        def work(conn: Connection) -> dict[str, int]:
            out: dict[str, Any] = {}
            for table in (party_waits, payee_routes, requests):
                out[table.name] = conn.execute(select(func.count()).select_from(table)).scalar()
            return {k: int(v or 0) for k, v in out.items()}

        return await self.db.run(work)
