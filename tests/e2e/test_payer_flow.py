"""Payer payments end to end: channel -> Operaton -> router -> switch double -> AMS ledger.

Every payment must end in a final state with a reason; money moves once or not at all.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx
import pytest

from harness.stack import PaymentStack, payee_party, payer_party, transfer_request, wait_final

TENANT = {"Platform-TenantId": "default"}


def _balance(ams: httpx.Client, party: str) -> dict[str, Decimal]:
    body = ams.get(f"/accounts/MSISDN/{party}").json()
    return {k: Decimal(body[k]) for k in ("balance", "held", "available")}


def _pay(channel: httpx.Client, payer: int, payee: int, amount: str, **headers: str) -> str:
    resp = channel.post(
        "/channel/transfer",
        json=transfer_request(payer_party(payer), payee_party(payee), amount),
        headers={**TENANT, **headers},
    )
    assert resp.status_code == 202, resp.text
    return str(resp.json()["transactionId"])


def _ledger_balanced(ams: httpx.Client) -> None:
    check = ams.get("/ledger/check").json()
    assert check["balanced"] is True, check


def _fault(admin: httpx.Client, **rule: Any) -> None:
    resp = admin.post("/admin/faults", json=rule)
    assert resp.status_code == 201, resp.text


def test_payment_commits_and_debits_once(
    channel: httpx.Client, ams: httpx.Client, payment_stack: PaymentStack
) -> None:
    before = _balance(ams, payer_party(0))
    tx = _pay(channel, 0, 1, "10.5")
    final = wait_final(channel, tx, 60)
    assert final["status"] == "COMMITTED", (final["status"], final.get("reason"))
    after = _balance(ams, payer_party(0))
    assert before["balance"] - after["balance"] == Decimal("10.5")
    assert after["held"] == before["held"]
    state = ams.get(f"/transfers/{tx}").json()
    assert state["state"] == "BOOKED"
    _ledger_balanced(ams)


def test_error_callback_4001_aborts_and_releases_the_block(
    channel: httpx.Client, ams: httpx.Client, switch_admin: httpx.Client
) -> None:
    _fault(
        switch_admin,
        match={"method": "POST", "resource": "transfers"},
        action="error",
        errorCode="4001",
        count=1,
    )
    before = _balance(ams, payer_party(1))
    tx = _pay(channel, 1, 2, "7")
    final = wait_final(channel, tx, 60)
    assert final["status"] == "ABORTED", final
    assert "4001" in final["reason"]
    assert _balance(ams, payer_party(1)) == before  # blocked, then released: no money moved
    assert ams.get(f"/transfers/{tx}").json()["state"] == "RELEASED"
    _ledger_balanced(ams)


def test_missing_transfer_callback_is_settled_by_asking(
    channel: httpx.Client, ams: httpx.Client, switch_admin: httpx.Client
) -> None:
    """No PUT /transfers: after expiry plus grace the engine asks GET /transfers/{id}."""
    _fault(
        switch_admin,
        match={"method": "POST", "resource": "transfers"},
        action="drop",
        count=1,
    )
    start = time.monotonic()
    tx = _pay(channel, 2, 3, "3")
    final = wait_final(channel, tx, 60)
    elapsed = time.monotonic() - start
    assert final["final"] is True
    assert final["status"] in ("COMMITTED", "ABORTED"), final
    assert elapsed >= 4  # not before the transfer expired
    if final["status"] == "COMMITTED":
        assert ams.get(f"/transfers/{tx}").json()["state"] == "BOOKED"
    else:
        assert ams.get(f"/transfers/{tx}").json()["state"] == "RELEASED"
    _ledger_balanced(ams)


def test_an_unanswered_party_lookup_ends_after_the_deployed_wait(
    channel: httpx.Client, ams: httpx.Client, switch_admin: httpx.Client
) -> None:
    """The site's 6 s party wait is written into the deployed definition (engine_workers.bpmn),
    not passed with each payment: the payment ends after it, long before the shipped 30 s."""
    _fault(switch_admin, match={"method": "GET", "resource": "parties"}, action="drop", count=1)
    before = _balance(ams, payer_party(6))
    start = time.monotonic()
    tx = _pay(channel, 6, 7, "1")
    final = wait_final(channel, tx, 60)
    elapsed = time.monotonic() - start
    assert final["status"] == "ABORTED", final
    assert "no answer to the party lookup" in final["reason"]
    assert 6 <= elapsed < 25, elapsed
    assert _balance(ams, payer_party(6)) == before


def test_a_callback_delayed_1_5_s_completes(
    channel: httpx.Client, switch_admin: httpx.Client
) -> None:
    _fault(
        switch_admin,
        match={"method": "POST", "resource": "transfers"},
        action="delay",
        delayMs=1500,
        count=1,
    )
    start = time.monotonic()
    tx = _pay(channel, 3, 4, "2.25")
    final = wait_final(channel, tx, 60)
    assert final["status"] == "COMMITTED", (final["status"], final.get("reason"))
    assert time.monotonic() - start >= 1.5


def test_insufficient_funds_aborts_with_the_payer_reason(
    channel: httpx.Client, ams: httpx.Client
) -> None:
    before = _balance(ams, payer_party(4))
    tx = _pay(channel, 4, 5, "99999999")
    final = wait_final(channel, tx, 60)
    assert final["status"] == "ABORTED", final
    assert "4001" in final["reason"]
    assert _balance(ams, payer_party(4)) == before


def test_unknown_payee_aborts_with_3204(channel: httpx.Client) -> None:
    resp = channel.post(
        "/channel/transfer",
        json=transfer_request(payer_party(5), "27799999999", "1"),
        headers=TENANT,
    )
    final = wait_final(channel, resp.json()["transactionId"], 60)
    assert final["status"] == "ABORTED", final
    assert "3204" in final["reason"]


@pytest.mark.parametrize("attempts", [2])
def test_same_correlation_id_pays_once(
    channel: httpx.Client, ams: httpx.Client, attempts: int
) -> None:
    before = _balance(ams, payer_party(6))
    ids = {_pay_or_existing(channel, 6, 7, "5", "order-e2e-1") for _ in range(attempts)}
    assert len(ids) == 1
    final = wait_final(channel, ids.pop(), 60)
    assert final["status"] == "COMMITTED"
    assert before["balance"] - _balance(ams, payer_party(6))["balance"] == Decimal("5")


def _pay_or_existing(channel: httpx.Client, payer: int, payee: int, amount: str, corr: str) -> str:
    resp = channel.post(
        "/channel/transfer",
        json=transfer_request(payer_party(payer), payee_party(payee), amount),
        headers={**TENANT, "X-CorrelationID": corr},
    )
    assert resp.status_code in (200, 202), resp.text
    return str(resp.json()["transactionId"])
