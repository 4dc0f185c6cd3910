"""A small double-entry ledger: accounts, holds, journal entries and idempotent money operations.

Every money operation (block, book, release, credit) runs in one database transaction that
first claims its `(transactionId, operation)` row in `ams_operations` (unique key), then locks
the accounts it touches (customer first, then the system account, so no two operations wait on
each other in a cycle) and writes entries whose legs sum to zero. A repeat finds the claimed
row and returns the stored answer (or 3106 when the content differs); a concurrent twin blocks
on the unique key until the first commits, fails, and reads the answer back. Only successes
are stored: a refused operation (4001, unknown party, ...) leaves no trace and may be retried.

The statements of the money operations are built once (here and in `books`) with named
parameters; per call only the parameter values change.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, bindparam, select
from sqlalchemy.engine import Connection

from doubles.reference_ams import books
from doubles.reference_ams.amounts import CURRENCY_PATTERN, from_minor
from doubles.reference_ams.model import (
    BLOCK,
    BLOCKED,
    BOOK,
    BOOKED,
    CREDIT,
    CREDITED,
    OPEN,
    RELEASE,
    RELEASED,
    LedgerError,
    Outcome,
    Party,
    check_id,
    check_party,
    digest,
    invalid,
    iso,
    minor_units,
    money,
    now,
)
from doubles.reference_ams.reports import check_books, transfer_view
from doubles.reference_ams.tables import CUSTOMER, EQUITY, SETTLEMENT, accounts, holds, metadata
from doubles.reference_ams.tables import operations as ops
from phee.sql import SqlError, SqlIntegrityError, transaction

_ATTEMPTS = 8
log = logging.getLogger("doubles.reference_ams.ledger")
T = TypeVar("T")

#: the fingerprint of the operations that carry no content (book, release)
_NO_CONTENT = digest({})
_OPERATION_KEY = (ops.c.transaction_id == bindparam("tx")) & (ops.c.operation == bindparam("op"))
#: a stored operation: its request fingerprint and its answer
_CLAIMED = select(ops.c.request_hash, ops.c.response).where(_OPERATION_KEY)
_CLAIM = ops.insert()
_ANSWER = ops.update().where(_OPERATION_KEY).values(response=bindparam("body"))
_NEW_HOLD = holds.insert()
_HOLD_ACCOUNT = select(holds.c.account_id).where(holds.c.transaction_id == bindparam("tx"))
_ACCOUNT_LOCKED = select(accounts).where(accounts.c.id == bindparam("account_id")).with_for_update()
_HOLD_LOCKED = select(holds).where(holds.c.transaction_id == bindparam("tx")).with_for_update()
_FINISH_HOLD = (
    holds.update()
    .where(holds.c.transaction_id == bindparam("tx"))
    .values(state=bindparam("target"), updated=bindparam("at"))
)


class Ledger:
    """The AMS's books over one SQLAlchemy engine (see `db.make_engine`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_schema(self) -> None:
        metadata.create_all(self.engine)

    def ping(self) -> bool:
        """True when the database answers (for `/readyz`)."""
        try:
            with self._read() as conn:
                conn.execute(select(1))
        except SqlError:
            return False
        return True

    # -- transactions ---------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A transaction that only reads (on SQLite it does not take the write lock)."""
        with transaction(self.engine, read_only=True) as conn:
            yield conn

    def _write(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in a write transaction, again after a deadlock, a lock timeout or a lost
        connection (a money operation's claim row makes running it twice harmless)."""
        for attempt in range(_ATTEMPTS):
            try:
                with transaction(self.engine) as conn:
                    return work(conn)
            except SqlError as err:
                if not err.retryable or attempt == _ATTEMPTS - 1:
                    raise
                log.info("lock conflict (%s); running the transaction again", err)
                time.sleep(0.01 * 2**attempt)  # back off before running it again
        raise AssertionError("unreachable")

    def _operation(
        self,
        op: str,
        transaction_id: str,
        request: dict[str, Any],
        work: Callable[[Connection, datetime], dict[str, Any] | None],
        answer: Callable[[datetime], dict[str, Any]] | None = None,
    ) -> Outcome:
        """Run a money operation once per (transactionId, op); repeats get the first answer.

        `work` returns the answer, unless `answer` gives it before the work (when it does not
        depend on what the work finds): the claim row is then written with the answer, saving
        the update after the work; it is stored only if the work succeeds, like any other."""
        fingerprint = digest(request) if request else _NO_CONTENT
        key = {"tx": transaction_id, "op": op}

        def attempt(conn: Connection) -> Outcome:
            stored = conn.execute(_CLAIMED, key).first()
            if stored is not None:
                if stored.request_hash != fingerprint:
                    raise LedgerError(
                        409, "3106", f"{op.lower()} {transaction_id} was sent with other content"
                    )
                return Outcome(json.loads(stored.response), replayed=True)
            moment = now()
            known = None if answer is None else answer(moment)
            claim = {
                "transaction_id": transaction_id,
                "operation": op,
                "request_hash": fingerprint,
                "response": "" if known is None else json.dumps(known),
                "created": moment,
            }
            conn.execute(_CLAIM, claim)  # a concurrent twin waits here, then fails on the key
            body = work(conn, moment)
            if known is not None:
                return Outcome(known, replayed=False)
            if body is None:
                raise AssertionError(f"{op} work gave no answer")
            conn.execute(_ANSWER, {**key, "body": json.dumps(body)})
            return Outcome(body, replayed=False)

        for _ in range(_ATTEMPTS):
            try:
                return self._write(attempt)
            except SqlIntegrityError:
                continue  # a twin committed first; the next attempt reads its answer back
        raise LedgerError(503, "2003", f"{op.lower()} {transaction_id} kept conflicting")

    # -- accounts -------------------------------------------------------------------------

    def open_account(
        self, party: Party, currency: str, name: str, opening_balance: str = "0"
    ) -> dict[str, Any]:
        """Create a customer account; the opening balance comes from the equity account."""
        check_party(party)
        if not 1 <= len(name) <= 128:
            raise invalid("name", "must be 1 to 128 characters")
        opening = minor_units(opening_balance, currency, "openingBalance", positive=False)

        def work(conn: Connection) -> None:
            at = now()
            equity = books.lock_system(conn, EQUITY, currency, at)
            new = conn.execute(
                accounts.insert().values(
                    kind=CUSTOMER,
                    party_id_type=party.id_type,
                    party_identifier=party.identifier,
                    currency=currency,
                    name=name,
                    balance=0,
                    held=0,
                    created=at,
                )
            )
            key = new.inserted_primary_key
            if key is None:
                raise AssertionError("the driver returned no id for the new account")
            if opening:
                legs = [(equity.id, -opening), (int(key[0]), opening)]
                books.post(conn, f"open-{key[0]}", OPEN, currency, legs, at)

        try:
            self._write(work)
        except SqlIntegrityError as err:
            raise LedgerError(409, "3003", f"{party} already has a {currency} account") from err
        return self.account(party, currency)

    def party(self, party: Party) -> dict[str, Any]:
        """What a payee lookup needs: the party's name and the currencies it can receive."""
        check_party(party)
        with self._read() as conn:
            rows = books.party_rows(conn, party)
        if not rows:
            raise LedgerError(404, "3204", f"{party}")
        return {
            "partyIdInfo": party.info(),
            "name": rows[0].name,
            "currencies": sorted({row.currency for row in rows}),
        }

    def account(self, party: Party, currency: str | None = None) -> dict[str, Any]:
        """Balance, held and available of one account (`currency` may be left out if only one)."""
        check_party(party)
        if currency is not None and not CURRENCY_PATTERN.match(currency):
            raise invalid("currency", f"{currency!r} is not an ISO 4217 code")
        with self._read() as conn:
            rows = books.party_rows(conn, party)
        if not rows:
            raise LedgerError(404, "3204", f"{party}")
        chosen = [row for row in rows if currency is None or row.currency == currency]
        if currency is None and len(chosen) > 1:
            raise LedgerError(400, "3102", "currency (the party has several accounts)")
        if not chosen:
            raise LedgerError(404, "3200", f"{party} has no {currency}")
        return books.account_view(chosen[0])

    # -- money ----------------------------------------------------------------------------

    def quote(
        self, transaction_id: str, quote_id: str, payee: Party, amount: str, currency: str
    ) -> dict[str, Any]:
        """Payee-side quote: no fees, the payee receives the amount."""
        check_id(transaction_id, "transactionId")
        check_id(quote_id, "quoteId")
        check_party(payee, "payee")
        minor = minor_units(amount, currency, "amount.amount")
        with self._read() as conn:
            books.customer(conn, payee, currency, "5106", lock=False)
        return {
            "transactionId": transaction_id,
            "quoteId": quote_id,
            "payeeReceiveAmount": money(minor, currency),
            "payeeFspFee": money(0, currency),
            "payeeFspCommission": money(0, currency),
        }

    def block(self, transaction_id: str, payer: Party, amount: str, currency: str) -> Outcome:
        """Hold funds for a payer-side transfer; 4001 when they are not available."""
        check_id(transaction_id, "transactionId")
        check_party(payer, "payer")
        minor = minor_units(amount, currency, "amount.amount")

        def answer(at: datetime) -> dict[str, Any]:
            return books.hold_body(transaction_id, payer, minor, currency, BLOCKED, at)

        def work(conn: Connection, at: datetime) -> None:
            account = books.customer(conn, payer, currency, "4103", lock=True)
            available = account.balance - account.held
            if minor > available:
                raise LedgerError(
                    422, "4001", f"available {from_minor(available, currency)} {currency}"
                )
            hold = {
                "transaction_id": transaction_id,
                "account_id": account.id,
                "currency": currency,
                "amount": minor,
                "state": BLOCKED,
                "created": at,
                "updated": at,
            }
            conn.execute(_NEW_HOLD, hold)
            books.change_held(conn, account.id, minor)

        request = {"payer": payer.info(), "amount": money(minor, currency)}
        return self._operation(BLOCK, transaction_id, request, work, answer)

    def book(self, transaction_id: str) -> Outcome:
        """Debit the payer by the blocked amount, against the settlement account."""
        check_id(transaction_id, "transactionId")
        return self._operation(BOOK, transaction_id, {}, self._finish_hold(transaction_id, BOOKED))

    def release(self, transaction_id: str) -> Outcome:
        """Give the blocked amount back to the payer's available balance."""
        check_id(transaction_id, "transactionId")
        return self._operation(
            RELEASE, transaction_id, {}, self._finish_hold(transaction_id, RELEASED)
        )

    def _finish_hold(
        self, transaction_id: str, target: str
    ) -> Callable[[Connection, datetime], dict[str, Any]]:
        def work(conn: Connection, at: datetime) -> dict[str, Any]:
            key = {"tx": transaction_id}
            first = conn.execute(_HOLD_ACCOUNT, key).first()
            if first is None:
                raise LedgerError(404, "3208", f"nothing was blocked for {transaction_id}")
            payer = conn.execute(_ACCOUNT_LOCKED, {"account_id": first.account_id}).one()
            hold = conn.execute(_HOLD_LOCKED, key).one()
            if hold.state != BLOCKED:
                raise LedgerError(409, "3000", f"{transaction_id} is {hold.state}, not {BLOCKED}")
            if target == BOOKED:
                settlement = books.lock_system(conn, SETTLEMENT, hold.currency, at)
                legs = [(payer.id, -hold.amount), (settlement.id, hold.amount)]
                release = {payer.id: -hold.amount}  # the hold ends with the payer's entry
                books.post(conn, transaction_id, BOOK, hold.currency, legs, at, release)
            else:
                books.change_held(conn, payer.id, -hold.amount)
            conn.execute(_FINISH_HOLD, {**key, "target": target, "at": at})
            party = Party(payer.party_id_type, payer.party_identifier)
            return books.hold_body(transaction_id, party, hold.amount, hold.currency, target, at)

        return work

    def credit(self, transaction_id: str, payee: Party, amount: str, currency: str) -> Outcome:
        """Credit a payee from the settlement account (payee side of a transfer)."""
        check_id(transaction_id, "transactionId")
        check_party(payee, "payee")
        minor = minor_units(amount, currency, "amount.amount")

        def answer(at: datetime) -> dict[str, Any]:
            return {
                "transactionId": transaction_id,
                "state": CREDITED,
                "payee": payee.info(),
                "amount": money(minor, currency),
                "creditedAt": iso(at),
            }

        def work(conn: Connection, at: datetime) -> None:
            account = books.customer(conn, payee, currency, "5106", lock=True)
            settlement = books.lock_system(conn, SETTLEMENT, currency, at)
            legs = [(settlement.id, -minor), (account.id, minor)]
            books.post(conn, transaction_id, CREDIT, currency, legs, at)

        request = {"payee": payee.info(), "amount": money(minor, currency)}
        return self._operation(CREDIT, transaction_id, request, work, answer)

    # -- reports --------------------------------------------------------------------------

    def transfer(self, transaction_id: str) -> dict[str, Any]:
        """BLOCKED/BOOKED/RELEASED/CREDITED, amounts, parties and timestamps; 3208 if unknown."""
        check_id(transaction_id, "transactionId")
        with self._read() as conn:
            return transfer_view(conn, transaction_id)

    def check(self) -> dict[str, Any]:
        """Whether the books balance (see `reports.check_books`)."""
        with self._read() as conn:
            return check_books(conn)
