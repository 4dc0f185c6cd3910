"""Read-only views of the books: one transfer's state, and the proof that the ledger balances.

`check_books` is what reconciliation and every test lean on (DESIGN 9.1): entries sum to zero
per currency, and the balances and held amounts cached on accounts agree with the journal and
the open holds, and no customer's available balance is negative.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from doubles.reference_ams.amounts import from_minor
from doubles.reference_ams.model import BLOCKED, CREDIT, CREDITED, LedgerError, Party, iso, money
from doubles.reference_ams.tables import CUSTOMER, accounts, entries, holds, operations


def transfer_view(conn: Connection, transaction_id: str) -> dict[str, Any]:
    """A transfer's state: the payer-side hold's, or CREDITED when there is only a credit."""
    hold = conn.execute(
        select(holds, accounts.c.party_id_type, accounts.c.party_identifier)
        .join(accounts, accounts.c.id == holds.c.account_id)
        .where(holds.c.transaction_id == transaction_id)
    ).first()
    credit = conn.execute(
        select(operations.c.response).where(
            operations.c.transaction_id == transaction_id, operations.c.operation == CREDIT
        )
    ).first()
    if hold is None and credit is None:
        raise LedgerError(404, "3208", transaction_id)
    body: dict[str, Any] = {"transactionId": transaction_id}
    if hold is not None:
        body["state"] = hold.state
        body["payer"] = {
            "partyIdInfo": Party(hold.party_id_type, hold.party_identifier).info(),
            "amount": money(hold.amount, hold.currency),
            "state": hold.state,
            "blockedAt": iso(hold.created),
            "updatedAt": iso(hold.updated),
        }
    if credit is not None:
        done = json.loads(credit.response)
        body.setdefault("state", CREDITED)
        body["payee"] = {
            "partyIdInfo": done["payee"],
            "amount": done["amount"],
            "creditedAt": done["creditedAt"],
        }
    return body


def check_books(conn: Connection) -> dict[str, Any]:
    """{"balanced", "totals" per currency (must be "0"), "problems" (empty when balanced)}."""
    totals = conn.execute(
        select(entries.c.currency, func.sum(entries.c.amount)).group_by(entries.c.currency)
    ).all()
    by_account = select(entries.c.account_id, func.sum(entries.c.amount))
    posted = {k: int(v) for k, v in conn.execute(by_account.group_by(entries.c.account_id))}
    open_holds = (
        select(holds.c.account_id, func.sum(holds.c.amount))
        .where(holds.c.state == BLOCKED)
        .group_by(holds.c.account_id)
    )
    blocked = {k: int(v) for k, v in conn.execute(open_holds)}
    rows = conn.execute(select(accounts).order_by(accounts.c.id)).all()

    # SUM over BIGINT is NUMERIC on PostgreSQL and DECIMAL on MariaDB: back to int, exactly.
    sums = {row.currency: 0 for row in rows} | {cur: int(total) for cur, total in totals}
    problems = [f"{cur} entries sum to {from_minor(s, cur)}" for cur, s in sums.items() if s]
    for row in rows:
        label = f"account {row.id} ({row.party_id_type}/{row.party_identifier} {row.currency})"
        if row.balance != posted.get(row.id, 0):
            problems.append(f"{label}: balance differs from its entries")
        if row.held != blocked.get(row.id, 0):
            problems.append(f"{label}: held differs from its open holds")
        if row.kind == CUSTOMER and row.balance - row.held < 0:
            problems.append(f"{label}: available is negative")
    return {
        "balanced": not problems,
        "totals": {cur: from_minor(s, cur) for cur, s in sorted(sums.items())},
        "problems": problems,
    }
