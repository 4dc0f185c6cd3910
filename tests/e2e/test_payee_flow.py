"""Payee side through the router: quote, transfer, and the duplicates FSPIOP asks us to handle.

The test plays a payer DFSP registered with the switch double: it sends the switch's requests to
our router directly (as the switch forwards them) and receives our callbacks via the switch.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from harness.stack import OUR_FSP, PaymentStack, payer_party
from phee.fspiop import headers as fh
from phee.fspiop import jws
from tests.support import poll
from tests.support.recorder import Received, Recorder, recorder

PAYER_FSP = "testpayer"
PAYEE = payer_party(9)  # one of our DFSP's customers, owned by us at the switch


@pytest.fixture(scope="module")
def payer_dfsp(payment_stack: PaymentStack) -> Iterator[Recorder]:
    with recorder() as server:
        httpx.put(
            f"{payment_stack.switch.endpoint('http')}/admin/dfsps/{PAYER_FSP}",
            json={"callbackBase": server.url, "parties": []},
            timeout=10,
        ).raise_for_status()
        yield server


def _send(
    stack: PaymentStack, method: str, path: str, body: Any = None, *, via_switch: bool = False
) -> httpx.Response:
    """A request from the payer DFSP: to our router as the switch forwards it, or to the switch."""
    hdrs = fh.request_headers(method=method, path=path, source=PAYER_FSP, destination=OUR_FSP)
    content = jws.canonical_body(body) if body is not None else None
    base = (stack.switch if via_switch else stack.router).endpoint("http")
    return httpx.request(method, f"{base}{path}", content=content, headers=hdrs, timeout=10)


def _resends(stack: PaymentStack, resource: str) -> float:
    """The router's count of callbacks an engine sent again for `resource`."""
    text = httpx.get(f"{stack.router.endpoint('http')}/metrics", timeout=10).text
    prefix = f'phee_router_resends_total{{outcome="resent",resource="{resource}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    return 0.0


def _callbacks(server: Recorder, path: str, count: int) -> list[Received]:
    return poll(
        lambda: found if len(found := server.matching("PUT", path)) >= count else None,
        what=f"{count} callback(s) PUT {path}",
        deadline_s=30,
    )


def _quote(amount: str) -> dict[str, Any]:
    return {
        "quoteId": str(uuid.uuid4()),
        "transactionId": str(uuid.uuid4()),
        "payee": {
            "partyIdInfo": {"partyIdType": "MSISDN", "partyIdentifier": PAYEE, "fspId": OUR_FSP}
        },
        "payer": {
            "partyIdInfo": {
                "partyIdType": "MSISDN",
                "partyIdentifier": "27730000001",
                "fspId": PAYER_FSP,
            }
        },
        "amountType": "SEND",
        "amount": {"amount": amount, "currency": "USD"},
        "transactionType": {
            "scenario": "TRANSFER",
            "initiator": "PAYER",
            "initiatorType": "CONSUMER",
        },
    }


def _balance(stack: PaymentStack) -> Decimal:
    body = httpx.get(f"{stack.ams.endpoint('http')}/accounts/MSISDN/{PAYEE}", timeout=10).json()
    return Decimal(body["balance"])


def _credited(stack: PaymentStack, before: Decimal, amount: Decimal) -> None:
    poll(
        lambda: True if _balance(stack) - before == amount else None,
        what=f"the payee credited {amount}",
        deadline_s=30,
    )


def _status(stack: PaymentStack, transaction_id: str) -> dict[str, Any]:
    """The payee payment as our engine records it, once final."""
    url = f"{stack.channel('engine-a')}/channel/transfer/{transaction_id}"

    def final() -> dict[str, Any] | None:
        resp = httpx.get(url, headers={"Platform-TenantId": "default"}, timeout=10)
        body: dict[str, Any] = resp.json()
        return body if resp.status_code == 200 and body.get("final") else None

    return poll(final, what=f"payee payment {transaction_id} final", deadline_s=60)


def test_a_transfer_the_switch_aborts_after_our_answer_credits_nothing(
    payment_stack: PaymentStack, payer_dfsp: Recorder, switch_admin: httpx.Client
) -> None:
    before = _balance(payment_stack)
    quote = _quote("7")
    assert _send(payment_stack, "POST", "/quotes", quote).status_code == 202
    (quoted,) = _callbacks(payer_dfsp, f"/quotes/{quote['quoteId']}", 1)
    answer = quoted.json()
    transfer_id = str(uuid.uuid4())
    # The switch does not take our fulfilment: it aborts the transfer and tells us so.
    switch_admin.post(
        "/admin/faults",
        json={
            "match": {"method": "PUT", "resource": "transfers", "path_regex": transfer_id},
            "action": "error",
            "errorCode": "2001",
            "count": 1,
        },
    ).raise_for_status()
    transfer = {
        "transferId": transfer_id,
        "payerFsp": PAYER_FSP,
        "payeeFsp": OUR_FSP,
        "amount": answer["transferAmount"],
        "ilpPacket": answer["ilpPacket"],
        "condition": answer["condition"],
        "expiration": answer["expiration"],
    }
    assert _send(payment_stack, "POST", "/transfers", transfer, via_switch=True).status_code == 202
    outcome = _status(payment_stack, quote["transactionId"])
    assert outcome["status"] == "ABORTED", outcome
    assert "not credited" in outcome["reason"]
    assert _balance(payment_stack) == before
    assert httpx.get(f"{payment_stack.ams.endpoint('http')}/ledger/check").json()["balanced"]


def test_quote_duplicates_and_transfer_duplicates(
    payment_stack: PaymentStack, payer_dfsp: Recorder
) -> None:
    before = _balance(payment_stack)
    quote = _quote("5")
    qpath = f"/quotes/{quote['quoteId']}"
    assert _send(payment_stack, "POST", "/quotes", quote).status_code == 202
    (first,) = _callbacks(payer_dfsp, qpath, 1)
    answer = first.json()
    assert answer["transferAmount"] == {"amount": "5", "currency": "USD"}

    # The same POST again: the same answer again, no second process.
    assert _send(payment_stack, "POST", "/quotes", quote).status_code == 202
    again = _callbacks(payer_dfsp, qpath, 2)[1]
    assert again.json() == answer

    # Same id, other content: 3106.
    modified = {**quote, "amount": {"amount": "6", "currency": "USD"}}
    assert _send(payment_stack, "POST", "/quotes", modified).status_code == 202
    (err,) = _callbacks(payer_dfsp, f"{qpath}/error", 1)
    assert err.json()["errorInformation"]["errorCode"] == "3106"

    transfer_id = str(uuid.uuid4())
    transfer = {
        "transferId": transfer_id,
        "payerFsp": PAYER_FSP,
        "payeeFsp": OUR_FSP,
        "amount": answer["transferAmount"],
        "ilpPacket": answer["ilpPacket"],
        "condition": answer["condition"],
        "expiration": answer["expiration"],
    }
    tpath = f"/transfers/{transfer_id}"
    # Through the switch, which checks our fulfilment against the condition before committing.
    assert _send(payment_stack, "POST", "/transfers", transfer, via_switch=True).status_code == 202
    (done,) = _callbacks(payer_dfsp, tpath, 1)
    result = done.json()
    assert result["transferState"] == "COMMITTED"
    fulfilment = base64.urlsafe_b64decode(result["fulfilment"] + "==")
    condition = base64.urlsafe_b64encode(hashlib.sha256(fulfilment).digest()).rstrip(b"=")
    assert condition.decode() == answer["condition"]
    # We answered RESERVED; the switch committed and told us (PATCH): only then the credit.
    _credited(payment_stack, before, Decimal("5"))

    # GET /transfers/{id} and a resent POST reach us: the engine answers again (the switch
    # ignores a repeated fulfilment of a committed transfer) and credits nothing twice.
    resent = _resends(payment_stack, "transfers")
    assert _send(payment_stack, "GET", tpath).status_code == 202
    poll(
        lambda: True if _resends(payment_stack, "transfers") >= resent + 1 else None,
        what="the engine to answer GET /transfers again",
        deadline_s=30,
    )
    assert _send(payment_stack, "POST", "/transfers", transfer).status_code == 202
    poll(
        lambda: True if _resends(payment_stack, "transfers") >= resent + 2 else None,
        what="the engine to answer the resent POST /transfers again",
        deadline_s=30,
    )
    _credited(payment_stack, before, Decimal("5"))
    assert httpx.get(f"{payment_stack.ams.endpoint('http')}/ledger/check").json()["balanced"]
