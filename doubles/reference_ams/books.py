"""Statements over one open transaction: find and lock accounts, post balanced entries.

Lock order, everywhere: the customer's account first, then the currency's system account.
Keeping to it means two operations never wait on each other in a cycle.

The statements are built once, here, with named parameters: building a SQLAlchemy statement
and its cache key on every call cost more CPU than running it on SQLite.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, select
from sqlalchemy.engine import Connection

from doubles.reference_ams.amounts import from_minor
from doubles.reference_ams.model import BLOCKED, BOOKED, RELEASED, LedgerError, Party, iso, money
from doubles.reference_ams.tables import (
    CUSTOMER,
    EQUITY,
    SETTLEMENT,
    SYSTEM_PARTY_TYPE,
    accounts,
    entries,
)
from phee.sql import insert_or_ignore

_ACCOUNT_KEY = ["party_id_type", "party_identifier", "currency"]

#: a currency's settlement or equity account, looked up by the unique key and locked
_SYSTEM_ACCOUNT = (
    select(accounts)
    .where(
        accounts.c.party_id_type == SYSTEM_PARTY_TYPE,
        accounts.c.party_identifier == bindparam("identifier"),
        accounts.c.currency == bindparam("currency"),
    )
    .with_for_update()
)
#: a party's customer accounts, oldest first
_PARTY_ACCOUNTS = (
    select(accounts)
    .where(
        accounts.c.kind == CUSTOMER,
        accounts.c.party_id_type == bindparam("id_type"),
        accounts.c.party_identifier == bindparam("identifier"),
    )
    .order_by(accounts.c.id)
)
#: a party's customer account in one currency, and the same locked
_CUSTOMER_ACCOUNT = select(accounts).where(
    accounts.c.kind == CUSTOMER,
    accounts.c.party_id_type == bindparam("id_type"),
    accounts.c.party_identifier == bindparam("identifier"),
    accounts.c.currency == bindparam("currency"),
)
_CUSTOMER_ACCOUNT_LOCKED = _CUSTOMER_ACCOUNT.with_for_update()
_NEW_ENTRY = entries.insert()
_MOVE_BALANCE = (
    accounts.update()
    .where(accounts.c.id == bindparam("account_id"))
    .values(balance=accounts.c.balance + bindparam("amount"))
)
_MOVE_BALANCE_AND_HELD = (
    accounts.update()
    .where(accounts.c.id == bindparam("account_id"))
    .values(
        balance=accounts.c.balance + bindparam("amount"), held=accounts.c.held + bindparam("delta")
    )
)
_MOVE_HELD = (
    accounts.update()
    .where(accounts.c.id == bindparam("account_id"))
    .values(held=accounts.c.held + bindparam("delta"))
)


def ensure_system_accounts(conn: Connection, currency: str, at: datetime) -> None:
    """Create the currency's settlement and equity accounts unless they exist (race-safe)."""
    rows = [
        {
            "kind": kind,
            "party_id_type": SYSTEM_PARTY_TYPE,
            "party_identifier": kind.lower(),
            "currency": currency,
            "name": f"{kind.lower()} {currency}",
            "balance": 0,
            "held": 0,
            "created": at,
        }
        for kind in (SETTLEMENT, EQUITY)
    ]
    conn.execute(insert_or_ignore(accounts, conn.dialect.name, _ACCOUNT_KEY), rows)


def lock_system(conn: Connection, kind: str, currency: str, at: datetime) -> Row[Any]:
    """The currency's settlement or equity account, locked for this transaction.

    Looked up by the unique key, so MariaDB locks that one row rather than every row it scans.
    """
    params = {"identifier": kind.lower(), "currency": currency}
    row = conn.execute(_SYSTEM_ACCOUNT, params).first()
    if row is None:
        ensure_system_accounts(conn, currency, at)
        row = conn.execute(_SYSTEM_ACCOUNT, params).one()
    return row


def party_rows(conn: Connection, party: Party) -> list[Row[Any]]:
    """The party's customer accounts, oldest first."""
    params = {"id_type": party.id_type, "identifier": party.identifier}
    return list(conn.execute(_PARTY_ACCOUNTS, params).all())


def customer(
    conn: Connection, party: Party, currency: str, missing_code: str, *, lock: bool
) -> Row[Any]:
    """The party's account in `currency`: 3204 if the party is unknown, else `missing_code`."""
    query = _CUSTOMER_ACCOUNT_LOCKED if lock else _CUSTOMER_ACCOUNT
    params = {"id_type": party.id_type, "identifier": party.identifier, "currency": currency}
    row = conn.execute(query, params).first()
    if row is not None:
        return row
    if not party_rows(conn, party):
        raise LedgerError(404, "3204", str(party))
    raise LedgerError(422, missing_code, f"{party} has no {currency} account")


def post(
    conn: Connection,
    transaction_id: str,
    op: str,
    currency: str,
    legs: list[tuple[int, int]],
    at: datetime,
    held: Mapping[int, int] | None = None,
) -> None:
    """Write one entry per (account id, signed minor amount) and move the cached balances.

    `held` (by account id) moves held amounts of the legs' accounts in the same row updates
    (a hold that turns into entries), rather than with a `change_held` each."""
    if sum(amount for _, amount in legs) != 0:
        raise AssertionError(f"unbalanced legs {legs}")
    held = held or {}
    if not held.keys() <= {account_id for account_id, _ in legs}:
        raise AssertionError(f"held {held} moves accounts that are not among the legs {legs}")
    conn.execute(
        _NEW_ENTRY,
        [
            {
                "transaction_id": transaction_id,
                "operation": op,
                "account_id": account_id,
                "currency": currency,
                "amount": amount,
                "created": at,
            }
            for account_id, amount in legs
        ],
    )
    for account_id, amount in legs:
        if account_id in held:
            move = {"account_id": account_id, "amount": amount, "delta": held[account_id]}
            conn.execute(_MOVE_BALANCE_AND_HELD, move)
        else:
            conn.execute(_MOVE_BALANCE, {"account_id": account_id, "amount": amount})


def change_held(conn: Connection, account_id: int, delta: int) -> None:
    conn.execute(_MOVE_HELD, {"account_id": account_id, "delta": delta})


def account_view(row: Row[Any]) -> dict[str, Any]:
    """A customer account as `GET /accounts` shows it."""
    return {
        "partyIdInfo": Party(row.party_id_type, row.party_identifier).info(),
        "name": row.name,
        "currency": row.currency,
        "balance": from_minor(row.balance, row.currency),
        "held": from_minor(row.held, row.currency),
        "available": from_minor(row.balance - row.held, row.currency),
        "created": iso(row.created),
    }


def hold_body(
    transaction_id: str, payer: Party, minor: int, currency: str, state: str, at: datetime
) -> dict[str, Any]:
    """The answer to block, book and release."""
    stamp = {BLOCKED: "blockedAt", BOOKED: "bookedAt", RELEASED: "releasedAt"}[state]
    return {
        "transactionId": transaction_id,
        "state": state,
        "payer": payer.info(),
        "amount": money(minor, currency),
        stamp: iso(at),
    }
