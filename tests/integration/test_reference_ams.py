"""The reference AMS on real MariaDB and PostgreSQL (and SQLite): books, races, the service.

The concurrency tests start their threads together on a barrier so that the requests really
overlap; correctness must come from the database (row locks, the unique key), not from luck.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from doubles.reference_ams.db import make_engine
from doubles.reference_ams.ledger import Ledger
from doubles.reference_ams.model import LedgerError, Outcome, Party
from doubles.reference_ams.tables import metadata
from harness.components.base import pid_alive
from harness.services import start_service, stop_service
from tests.unit.test_reference_ams_ledger import run_random_operations

T = TypeVar("T")
PAYER = Party("MSISDN", "256711000001")
PAYEE = Party("MSISDN", "256711000002")
THREADS = 20


def new_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture(params=["sqlite", "mariadb", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty AMS schema on each database; the tables are dropped again afterwards."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ams.db'}"
    else:
        url = request.getfixturevalue(request.param).endpoint("url")
    engine = make_engine(url)
    metadata.drop_all(engine)
    try:
        yield url
    finally:
        metadata.drop_all(engine)
        engine.dispose()


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    books = Ledger(make_engine(db_url, pool_size=THREADS))
    books.create_schema()
    try:
        yield books
    finally:
        books.engine.dispose()


def together(count: int, call: Callable[[int], T]) -> list[T | LedgerError]:
    """Run `call(i)` in `count` threads released at the same moment; refusals are returned."""
    barrier = threading.Barrier(count)

    def one(i: int) -> T | LedgerError:
        barrier.wait()
        try:
            return call(i)
        except LedgerError as err:
            return err

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def test_money_operations_and_idempotency(ledger: Ledger) -> None:
    ledger.open_account(PAYER, "USD", "Payer", "100")
    ledger.open_account(PAYEE, "USD", "Payee")
    tx = new_id()
    assert ledger.block(tx, PAYER, "60.5", "USD").body["state"] == "BLOCKED"
    assert ledger.block(tx, PAYER, "60.5", "USD").replayed
    with pytest.raises(LedgerError) as modified:
        ledger.block(tx, PAYER, "60", "USD")
    assert modified.value.code == "3106"
    with pytest.raises(LedgerError) as poor:
        ledger.block(new_id(), PAYER, "40", "USD")
    assert poor.value.code == "4001"
    assert ledger.book(tx).body["state"] == "BOOKED"
    assert ledger.book(tx).replayed
    with pytest.raises(LedgerError) as late:
        ledger.release(tx)
    assert late.value.code == "3000"
    ledger.credit(tx, PAYEE, "60.5", "USD")
    assert ledger.credit(tx, PAYEE, "60.5", "USD").replayed
    assert ledger.account(PAYER, "USD")["balance"] == "39.5"
    assert ledger.account(PAYEE, "USD")["balance"] == "60.5"
    assert ledger.transfer(tx)["payer"]["state"] == "BOOKED"
    assert ledger.check() == {"balanced": True, "totals": {"USD": "0"}, "problems": []}


def test_random_operations_keep_the_books_balanced(ledger: Ledger) -> None:
    run_random_operations(ledger, seed=7, steps=120)


def test_concurrent_blocks_never_overdraw(ledger: Ledger) -> None:
    """20 blocks of 10 at once on an account holding 100: exactly 10 succeed."""
    ledger.open_account(PAYER, "USD", "Payer", "100")
    seen: list[str] = []

    def block(_: int) -> Outcome:
        outcome = ledger.block(new_id(), PAYER, "10", "USD")
        seen.append(ledger.account(PAYER, "USD")["available"])
        return outcome

    results = together(THREADS, block)
    blocked = [r for r in results if isinstance(r, Outcome)]
    refused = [r.code for r in results if isinstance(r, LedgerError)]
    assert len(blocked) == 10
    assert refused == ["4001"] * 10
    assert all(not available.startswith("-") for available in seen)
    view = ledger.account(PAYER, "USD")
    assert (view["balance"], view["held"], view["available"]) == ("100", "100", "0")
    assert ledger.check()["balanced"] is True


def test_concurrent_twins_have_one_effect(ledger: Ledger) -> None:
    """The same block and the same credit sent 10 times at once: each takes effect once."""
    ledger.open_account(PAYER, "USD", "Payer", "100")
    ledger.open_account(PAYEE, "USD", "Payee")
    block_tx, credit_tx = new_id(), new_id()

    def twin(i: int) -> Outcome:
        if i % 2:
            return ledger.block(block_tx, PAYER, "7", "USD")
        return ledger.credit(credit_tx, PAYEE, "3", "USD")

    results = together(THREADS, twin)
    outcomes = [r for r in results if isinstance(r, Outcome)]
    assert len(outcomes) == THREADS  # no refusals
    assert sum(not o.replayed for o in outcomes) == 2  # one first answer per transaction
    assert len({str(o.body) for o in outcomes}) == 2  # every repeat got that first answer
    assert ledger.account(PAYER, "USD")["held"] == "7"
    assert ledger.account(PAYEE, "USD")["balance"] == "3"
    assert ledger.check()["balanced"] is True


def test_concurrent_book_and_release_exclude_each_other(ledger: Ledger) -> None:
    ledger.open_account(PAYER, "USD", "Payer", "100")
    tx = new_id()
    ledger.block(tx, PAYER, "25", "USD")
    results = together(2, lambda i: ledger.book(tx) if i == 0 else ledger.release(tx))
    won = [r for r in results if isinstance(r, Outcome)]
    lost = [r for r in results if isinstance(r, LedgerError)]
    assert len(won) == 1
    assert [e.code for e in lost] == ["3000"]
    expected = "75" if won[0].body["state"] == "BOOKED" else "100"
    assert ledger.account(PAYER, "USD")["balance"] == expected
    assert ledger.account(PAYER, "USD")["held"] == "0"
    assert ledger.check()["balanced"] is True


def test_service_over_http(db_url: str, tmp_path: Path) -> None:
    running = start_service(
        "reference-ams", "doubles.reference_ams", tmp_path, env={"PHEE_AMS_DATABASE_URL": db_url}
    )
    try:
        with httpx.Client(base_url=running.endpoint("http"), timeout=10) as client:
            for party, name, opening in ((PAYER, "Payer", "50"), (PAYEE, "Payee", "0")):
                body = {**party.info(), "currency": "EUR", "name": name, "openingBalance": opening}
                assert client.post("/accounts", json=body).status_code == 201
            assert client.get(f"/parties/MSISDN/{PAYEE.identifier}").json()["currencies"] == ["EUR"]
            tx = new_id()
            money = {"amount": "20.25", "currency": "EUR"}
            blocked = client.post(
                f"/transfers/{tx}/block", json={"payer": PAYER.info(), "amount": money}
            )
            assert blocked.status_code == 200
            assert blocked.json()["state"] == "BLOCKED"
            assert client.post(f"/transfers/{tx}/book").json()["state"] == "BOOKED"
            credited = client.post(
                f"/transfers/{tx}/credit", json={"payee": PAYEE.info(), "amount": money}
            )
            assert credited.json()["state"] == "CREDITED"
            bad = client.post(  # bad input changes nothing: the balances below are exact
                f"/transfers/{new_id()}/block",
                json={"payer": PAYER.info(), "amount": {"amount": "1.255", "currency": "EUR"}},
            )
            assert bad.status_code == 400
            info = bad.json()["errorInformation"]
            assert info["errorCode"] == "3100"
            assert "amount.amount" in info["errorDescription"]
            assert set(bad.json()) == {"errorInformation"}
            payer = client.get(f"/accounts/MSISDN/{PAYER.identifier}").json()
            payee = client.get(f"/accounts/MSISDN/{PAYEE.identifier}").json()
            assert (payer["balance"], payer["held"], payer["available"]) == ("29.75", "0", "29.75")
            assert payee["balance"] == "20.25"
            assert client.get(f"/transfers/{tx}").json()["state"] == "BOOKED"
            check = client.get("/ledger/check").json()
            assert check == {"balanced": True, "totals": {"EUR": "0"}, "problems": []}
            assert 'outcome="ok"' in client.get("/metrics").text
    finally:
        stop_service(running)
    assert not pid_alive(running.pid)
