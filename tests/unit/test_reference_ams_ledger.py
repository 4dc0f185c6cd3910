"""The reference AMS ledger on SQLite: money operations, idempotency, refusals, balanced books.

`run_random_operations` is also used by the integration tests on MariaDB and PostgreSQL.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Table, func, select, update

from doubles.reference_ams.amounts import AmountError, from_minor, to_minor
from doubles.reference_ams.app import REPLAY_HEADER, create_app
from doubles.reference_ams.db import make_engine
from doubles.reference_ams.ledger import Ledger
from doubles.reference_ams.model import LedgerError, Outcome, Party
from doubles.reference_ams.settings import AmsSettings
from doubles.reference_ams.tables import accounts, entries, holds, operations

ALICE = Party("MSISDN", "256700000001")
BOB = Party("MSISDN", "256700000002")
NOBODY = Party("MSISDN", "256700000099")


def new_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    books = Ledger(make_engine(f"sqlite:///{tmp_path / 'ams.db'}"))
    books.create_schema()
    try:
        yield books
    finally:
        books.engine.dispose()


@pytest.fixture
def funded(ledger: Ledger) -> Ledger:
    """Alice has 100 USD, Bob 0 USD."""
    ledger.open_account(ALICE, "USD", "Alice", "100")
    ledger.open_account(BOB, "USD", "Bob")
    return ledger


def balances(ledger: Ledger, party: Party) -> tuple[str, str, str]:
    view = ledger.account(party, "USD")
    return view["balance"], view["held"], view["available"]


def count(ledger: Ledger, table: Table) -> int:
    with ledger.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def refused(code: str, call: Callable[..., object], *args: object) -> LedgerError:
    """Call and expect a refusal with `code`."""
    with pytest.raises(LedgerError) as caught:
        call(*args)
    assert caught.value.code == code, caught.value.error.description
    return caught.value


# -- amounts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [("100", "USD", 10000), ("0.5", "USD", 50), ("7", "JPY", 7), ("1.234", "KWD", 1234)],
)
def test_amounts_round_trip_through_minor_units(text: str, currency: str, minor: int) -> None:
    assert to_minor(text, currency) == minor
    assert from_minor(minor, currency) == text
    assert from_minor(-minor, currency) == f"-{text}"


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("1.5", "JPY"),
        ("1.001", "USD"),
        ("1.50", "USD"),
        ("01", "USD"),
        ("1e3", "USD"),
        ("1", "usd"),
    ],
)
def test_amounts_refuse_what_the_currency_or_fspiop_forbids(text: str, currency: str) -> None:
    with pytest.raises(AmountError):
        to_minor(text, currency)


# -- money operations ---------------------------------------------------------------------


def test_block_holds_funds_without_moving_money(funded: Ledger) -> None:
    tx = new_id()
    outcome = funded.block(tx, ALICE, "30.5", "USD")
    assert outcome.body["state"] == "BLOCKED"
    assert outcome.body["amount"] == {"amount": "30.5", "currency": "USD"}
    assert not outcome.replayed
    assert balances(funded, ALICE) == ("100", "30.5", "69.5")
    assert funded.transfer(tx)["state"] == "BLOCKED"
    assert funded.check()["balanced"] is True


def test_book_debits_the_payer_against_settlement(funded: Ledger) -> None:
    tx = new_id()
    funded.block(tx, ALICE, "30.5", "USD")
    outcome = funded.book(tx)
    assert outcome.body["state"] == "BOOKED"
    assert balances(funded, ALICE) == ("69.5", "0", "69.5")
    with funded.engine.connect() as conn:
        legs = conn.execute(
            select(entries.c.amount)
            .where(entries.c.transaction_id == tx)
            .order_by(entries.c.amount)
        ).scalars()
        assert list(legs) == [-3050, 3050]
    view = funded.transfer(tx)
    assert view["state"] == "BOOKED"
    assert view["payer"]["partyIdInfo"] == ALICE.info()
    assert funded.check() == {"balanced": True, "totals": {"USD": "0"}, "problems": []}


def test_release_gives_the_funds_back(funded: Ledger) -> None:
    tx = new_id()
    funded.block(tx, ALICE, "40", "USD")
    assert funded.release(tx).body["state"] == "RELEASED"
    assert balances(funded, ALICE) == ("100", "0", "100")
    assert funded.transfer(tx)["state"] == "RELEASED"
    assert funded.check()["balanced"] is True


def test_credit_pays_the_payee_from_settlement(funded: Ledger) -> None:
    tx = new_id()
    outcome = funded.credit(tx, BOB, "12.25", "USD")
    assert outcome.body["state"] == "CREDITED"
    assert balances(funded, BOB) == ("12.25", "0", "12.25")
    view = funded.transfer(tx)
    assert view["state"] == "CREDITED"
    assert view["payee"]["amount"] == {"amount": "12.25", "currency": "USD"}
    assert funded.check()["balanced"] is True


def test_every_operation_repeated_has_one_effect(funded: Ledger) -> None:
    booked, released, credited = new_id(), new_id(), new_id()
    first = funded.block(booked, ALICE, "10", "USD")
    again = funded.block(booked, ALICE, "10", "USD")
    assert again.replayed
    assert again.body == first.body
    assert funded.book(booked).body == funded.book(booked).body
    funded.block(released, ALICE, "5", "USD")
    assert funded.release(released).body == funded.release(released).body
    assert (
        funded.credit(credited, BOB, "3", "USD").body
        == funded.credit(credited, BOB, "3", "USD").body
    )
    assert balances(funded, ALICE) == ("90", "0", "90")
    assert balances(funded, BOB) == ("3", "0", "3")
    assert count(funded, operations) == 5
    assert funded.check()["balanced"] is True


def test_same_transaction_with_other_content_is_3106_and_changes_nothing(funded: Ledger) -> None:
    tx = new_id()
    funded.block(tx, ALICE, "10", "USD")
    refused("3106", funded.block, tx, ALICE, "11", "USD")
    funded.credit(tx, BOB, "10", "USD")
    refused("3106", funded.credit, tx, BOB, "10.01", "USD")
    refused("3106", funded.credit, tx, ALICE, "10", "USD")
    assert balances(funded, ALICE) == ("100", "10", "90")
    assert balances(funded, BOB) == ("10", "0", "10")


def test_insufficient_funds_is_4001_and_may_be_retried_once_funded(funded: Ledger) -> None:
    tx = new_id()
    error = refused("4001", funded.block, tx, ALICE, "100.01", "USD")
    assert error.status == 422
    assert balances(funded, ALICE) == ("100", "0", "100")
    assert count(funded, holds) == 0
    funded.credit(new_id(), ALICE, "1", "USD")
    assert funded.block(tx, ALICE, "100.01", "USD").body["state"] == "BLOCKED"
    assert balances(funded, ALICE) == ("101", "100.01", "0.99")


def test_book_and_release_exclude_each_other(funded: Ledger) -> None:
    booked, released = new_id(), new_id()
    funded.block(booked, ALICE, "1", "USD")
    funded.block(released, ALICE, "2", "USD")
    funded.book(booked)
    funded.release(released)
    assert refused("3000", funded.release, booked).status == 409
    assert refused("3000", funded.book, released).status == 409
    assert balances(funded, ALICE) == ("99", "0", "99")


def test_book_or_release_without_a_block_is_3208(funded: Ledger) -> None:
    assert refused("3208", funded.book, new_id()).status == 404
    refused("3208", funded.release, new_id())
    refused("3208", funded.transfer, new_id())
    assert count(funded, operations) == 0


def test_unknown_parties_and_currencies(funded: Ledger) -> None:
    assert refused("3204", funded.party, NOBODY).status == 404
    refused("3204", funded.block, new_id(), NOBODY, "1", "USD")
    refused("3204", funded.credit, new_id(), NOBODY, "1", "USD")
    refused("4103", funded.block, new_id(), ALICE, "1", "EUR")
    refused("5106", funded.credit, new_id(), BOB, "1", "EUR")
    refused("5106", funded.quote, new_id(), new_id(), BOB, "1", "EUR")
    assert funded.party(ALICE) == {
        "partyIdInfo": ALICE.info(),
        "name": "Alice",
        "currencies": ["USD"],
    }
    quote = funded.quote(new_id(), new_id(), BOB, "5.5", "USD")
    assert quote["payeeReceiveAmount"] == {"amount": "5.5", "currency": "USD"}
    assert quote["payeeFspFee"] == {"amount": "0", "currency": "USD"}


@pytest.mark.parametrize(
    ("amount", "currency", "field"),
    [
        ("1.001", "USD", "amount.amount"),
        ("1.5", "JPY", "amount.amount"),
        ("-1", "USD", "amount.amount"),
        ("0", "USD", "amount.amount"),
        ("1", "US", "amount.currency"),
    ],
)
def test_bad_amounts_are_3100_naming_the_field(
    funded: Ledger, amount: str, currency: str, field: str
) -> None:
    error = refused("3100", funded.block, new_id(), ALICE, amount, currency)
    assert field in error.error.description
    assert error.status == 400
    assert balances(funded, ALICE) == ("100", "0", "100")


def test_bad_ids_and_party_types_are_3100(funded: Ledger) -> None:
    assert "transactionId" in refused("3100", funded.book, "not-an-id").error.description
    bad_party = Party("PHONE", "1")
    assert (
        "payer.partyIdType"
        in refused("3100", funded.block, new_id(), bad_party, "1", "USD").error.description
    )


def test_opening_an_account_twice_is_3003_and_opening_balances_balance(ledger: Ledger) -> None:
    ledger.open_account(ALICE, "USD", "Alice", "250.75")
    ledger.open_account(ALICE, "JPY", "Alice", "1000")
    assert refused("3003", ledger.open_account, ALICE, "USD", "Alice", "1").status == 409
    assert ledger.party(ALICE)["currencies"] == ["JPY", "USD"]
    assert refused("3102", ledger.account, ALICE).status == 400  # which currency?
    assert ledger.account(ALICE, "JPY")["balance"] == "1000"
    assert ledger.check() == {"balanced": True, "totals": {"JPY": "0", "USD": "0"}, "problems": []}


def test_check_notices_books_that_do_not_balance(funded: Ledger) -> None:
    """The check can fail: tamper with a cached balance behind the ledger's back."""
    with funded.engine.begin() as conn:
        conn.execute(
            update(accounts).where(accounts.c.party_identifier == BOB.identifier).values(balance=5)
        )
    report = funded.check()
    assert report["balanced"] is False
    assert any("balance differs" in p for p in report["problems"])


# -- random sequences ---------------------------------------------------------------------


def _repeat(ledger: Ledger, op: str, tx: str, party: Party, amount: str) -> Outcome:
    if op == "block":
        return ledger.block(tx, party, amount, "USD")
    if op == "credit":
        return ledger.credit(tx, party, amount, "USD")
    return ledger.book(tx) if op == "book" else ledger.release(tx)


def run_random_operations(ledger: Ledger, seed: int, steps: int) -> None:
    """Random blocks, books, releases, credits and repeats against a model of the balances.

    After every operation the ledger must agree with the model (balance and held per party),
    and at the end the books must balance.
    """
    rng = random.Random(seed)
    parties = [Party("MSISDN", f"2567{seed:04d}{n:04d}") for n in range(4)]
    balance = {p: rng.randrange(0, 5000) for p in parties}
    held = dict.fromkeys(parties, 0)
    for p in parties:
        ledger.open_account(p, "USD", f"party {p.identifier}", from_minor(balance[p], "USD"))
    open_holds: dict[str, tuple[Party, int]] = {}
    done: list[tuple[str, str, Party, int]] = []  # (operation, transactionId, party, minor)
    for _ in range(steps):
        kind = rng.choice(["block", "block", "book", "release", "credit", "repeat"])
        party, minor, tx = rng.choice(parties), rng.randrange(1, 2000), new_id()
        amount = from_minor(minor, "USD")
        if kind == "block":
            if minor <= balance[party] - held[party]:
                ledger.block(tx, party, amount, "USD")
                held[party] += minor
                open_holds[tx] = (party, minor)
                done.append(("block", tx, party, minor))
            else:
                refused("4001", ledger.block, tx, party, amount, "USD")
        elif kind in ("book", "release") and open_holds:
            tx = rng.choice(sorted(open_holds))
            party, minor = open_holds.pop(tx)
            held[party] -= minor
            if kind == "book":
                ledger.book(tx)
                balance[party] -= minor
            else:
                ledger.release(tx)
            done.append((kind, tx, party, minor))
        elif kind == "credit":
            ledger.credit(tx, party, amount, "USD")
            balance[party] += minor
            done.append(("credit", tx, party, minor))
        elif kind == "repeat" and done:
            op, tx, party, minor = rng.choice(done)
            amount = from_minor(minor, "USD")
            outcome = _repeat(ledger, op, tx, party, amount)
            assert outcome.replayed
        view = ledger.account(party, "USD")  # the party this step touched
        expected = (from_minor(balance[party], "USD"), from_minor(held[party], "USD"))
        assert (view["balance"], view["held"]) == expected
    report = ledger.check()
    assert report["problems"] == []
    assert report["balanced"] is True
    assert report["totals"]["USD"] == "0"
    for p in parties:
        assert ledger.account(p, "USD")["balance"] == from_minor(balance[p], "USD")


def test_random_operations_keep_the_books_balanced(ledger: Ledger) -> None:
    run_random_operations(ledger, seed=20240601, steps=250)


# -- HTTP mapping (in process) ------------------------------------------------------------


async def test_http_errors_are_fspiop_bodies_and_counted(tmp_path: Path) -> None:
    app = create_app(AmsSettings(database_url=f"sqlite:///{tmp_path / 'ams.db'}"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ams") as client:
        made = await client.post(
            "/accounts",
            json={**ALICE.info(), "currency": "USD", "name": "Alice", "openingBalance": "5"},
        )
        assert made.status_code == 201
        tx = new_id()
        block = {"payer": ALICE.info(), "amount": {"amount": "2", "currency": "USD"}}
        first = await client.post(f"/transfers/{tx}/block", json=block)
        again = await client.post(f"/transfers/{tx}/block", json=block)
        assert first.json() == again.json()
        assert REPLAY_HEADER not in first.headers
        assert again.headers[REPLAY_HEADER] == "true"
        cases = [
            (
                {"payer": {"partyIdType": "MSISDN"}, "amount": block["amount"]},
                "3102",
                "payer.partyIdentifier",
            ),
            ({**block, "amount": {"amount": 2, "currency": "USD"}}, "3100", "amount.amount"),
            ({**block, "extra": "x"}, "3100", "extra"),
            ({**block, "amount": {"amount": "2.001", "currency": "USD"}}, "3100", "amount.amount"),
        ]
        for body, code, field in cases:
            answer = await client.post(f"/transfers/{new_id()}/block", json=body)
            assert answer.status_code == 400
            info = answer.json()["errorInformation"]
            assert info["errorCode"] == code
            assert field in info["errorDescription"]
        garbled = await client.post(
            f"/transfers/{new_id()}/block",
            content=b"{",
            headers={"content-type": "application/json"},
        )
        assert garbled.json()["errorInformation"]["errorCode"] == "3101"
        unknown = await client.get("/no/such/path")
        assert (unknown.status_code, unknown.json()["errorInformation"]["errorCode"]) == (
            404,
            "3002",
        )
        account = (await client.get("/accounts/MSISDN/256700000001")).json()
        assert (account["balance"], account["held"], account["available"]) == ("5", "2", "3")
        metrics = (await client.get("/metrics")).text
    assert 'phee_ams_operations_total{operation="block",outcome="ok"} 1.0' in metrics
    assert 'phee_ams_operations_total{operation="block",outcome="replayed"} 1.0' in metrics
    assert 'phee_ams_operations_total{operation="block",outcome="3100"} 3.0' in metrics
