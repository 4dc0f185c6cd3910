"""Conformance against the real Mojaloop Testing Toolkit (TTK) as the switch and the peer DFSP.

Payer role: channel payments go out through the TTK, whose default rules answer like a payee DFSP:
the PUT /quotes carries an ILP packet and condition the TTK builds with its ILP_SECRET
(sdk-standard-components), the PUT /transfers a fulfilment it regenerates from the packet we send.
The TTK also checks our POST /transfers against its quote (TRANSFERS_VALIDATION_*). Faults come
from TTK rules put in front of its defaults for one test and bound to that test's amount.

Payee role: the TTK's own `p2p_happy_path` collection runs through its outbound API against our
router (its CALLBACK_ENDPOINT), and every one of its assertions must pass.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from harness import stack
from harness.components import get
from harness.stack import payee_party, payer_party, transfer_request, wait_final
from phee.fspiop import ilp
from tests.e2e.conftest import TTK_FSP, TTK_ILP_SECRET, TtkSite
from tests.support.ttk import RULE_KINDS, assertion_results, request_summary, resource

TENANT = {"Platform-TenantId": "default"}
#: the engine's transfer expiry and grace in the ttk_site fixture (PHEE_ENGINE_*)
EXPIRY_S, GRACE_S = 4, 2
#: assertions in the TTK's p2p_happy_path collection: 8 party, 11 quote, 9 transfer
P2P_HAPPY_PATH_ASSERTIONS = 28
UNKNOWN_PARTY = "27799999999"


@pytest.fixture
def site(ttk_site: TtkSite) -> Iterator[TtkSite]:
    """The module's site; every test starts and must end with the TTK's default rules."""
    for kind in RULE_KINDS:
        assert ttk_site.admin.active(kind) == "default.json", f"{kind} rules left active"
    yield ttk_site
    for kind in RULE_KINDS:
        assert ttk_site.admin.active(kind) == "default.json", f"{kind} rules not restored"


@pytest.fixture
def channel(ttk_site: TtkSite) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ttk_site.stack.channel("engine-a"), timeout=10) as http:
        yield http


@pytest.fixture
def ams(ttk_site: TtkSite) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ttk_site.stack.ams.endpoint("http"), timeout=10) as http:
        yield http


def _balance(ams: httpx.Client, party: str) -> dict[str, Decimal]:
    body = ams.get(f"/accounts/MSISDN/{party}").json()
    return {k: Decimal(body[k]) for k in ("balance", "held", "available")}


def _ledger_balanced(ams: httpx.Client) -> None:
    check = ams.get("/ledger/check").json()
    assert check["balanced"] is True, check


def _pay(channel: httpx.Client, payer: int, payee: int, amount: str) -> str:
    resp = channel.post(
        "/channel/transfer",
        json=transfer_request(payer_party(payer), payee_party(payee), amount),
        headers=TENANT,
    )
    assert resp.status_code == 202, resp.text
    return str(resp.json()["transactionId"])


def _rule(name: str, amount: str) -> dict[str, Any]:
    """A rule from tests/resources/ttk, narrowed to requests for `amount`."""
    rule: dict[str, Any] = resource(name)
    rule["conditions"]["all"].append(
        {"fact": "body", "operator": "equal", "value": amount, "path": "amount.amount"}
    )
    return rule


class Seen:
    """What the TTK received and sent for one of our payer payments."""

    def __init__(self, site: TtkSite, transaction_id: str) -> None:
        received = site.admin.received()
        sent = site.admin.sent_callbacks()
        quotes = [
            r
            for r in received
            if (r["method"], r["path"]) == ("post", "/quotes")
            and r["body"].get("transactionId") == transaction_id
        ]
        assert len(quotes) == 1, f"POST /quotes of {transaction_id}: {quotes}"
        self.quote_request: dict[str, Any] = quotes[0]["body"]
        quote_path = f"/quotes/{self.quote_request['quoteId']}"
        self.quote_callbacks = [c for c in sent if c["path"] == quote_path]
        self.transfer_requests = [
            r
            for r in received
            if (r["method"], r["path"]) == ("post", "/transfers")
            and ilp.decode(r["body"]["ilpPacket"]).transaction.get("transactionId")
            == transaction_id
        ]
        assert len(self.transfer_requests) == 1, self.transfer_requests
        self.transfer: dict[str, Any] = self.transfer_requests[0]["body"]
        path = f"/transfers/{self.transfer['transferId']}"
        self.transfer_callbacks = [c for c in sent if c["path"] in (path, f"{path}/error")]
        self.status_requests = [r for r in received if (r["method"], r["path"]) == ("get", path)]

    @property
    def quote(self) -> dict[str, Any]:
        assert len(self.quote_callbacks) == 1, self.quote_callbacks
        body: dict[str, Any] = self.quote_callbacks[0]["body"]
        return body


@pytest.mark.timeout(180)
def test_payer_payment_commits_with_a_fulfilment_matching_the_condition(
    site: TtkSite, channel: httpx.Client, ams: httpx.Client
) -> None:
    before = _balance(ams, payer_party(0))
    tx = _pay(channel, 0, 0, "10.5")
    final = wait_final(channel, tx, 60)
    assert final["status"] == "COMMITTED", final

    seen = Seen(site, tx)
    # We sent back the packet and condition the TTK quoted, between the right FSPs ...
    assert seen.transfer["ilpPacket"] == seen.quote["ilpPacket"]
    assert seen.transfer["condition"] == seen.quote["condition"]
    assert (seen.transfer["payerFsp"], seen.transfer["payeeFsp"]) == (stack.OUR_FSP, TTK_FSP)
    assert seen.transfer["amount"] == {"amount": "10.5", "currency": "USD"}
    # ... and the TTK (checking the packet and condition itself) committed with a fulfilment that
    # matches the condition and is the one our ILP code derives with the shared secret.
    [callback] = seen.transfer_callbacks
    assert callback["path"].endswith(seen.transfer["transferId"]), callback
    fulfilment = callback["body"]["fulfilment"]
    assert callback["body"]["transferState"] == "COMMITTED"
    assert ilp.fulfilment_matches(fulfilment, seen.quote["condition"])
    assert ilp.fulfilment_for_packet(seen.quote["ilpPacket"], TTK_ILP_SECRET) == fulfilment

    after = _balance(ams, payer_party(0))
    assert before["balance"] - after["balance"] == Decimal("10.5")  # one debit, no more
    assert after["held"] == before["held"]
    assert ams.get(f"/transfers/{tx}").json()["state"] == "BOOKED"
    _ledger_balanced(ams)


def test_error_callback_4001_aborts_and_releases_the_block(
    site: TtkSite, channel: httpx.Client, ams: httpx.Client
) -> None:
    before = _balance(ams, payer_party(1))
    with site.admin.rules("validation", [_rule("validation-transfer-error-4001.json", "7")]):
        tx = _pay(channel, 1, 1, "7")
        final = wait_final(channel, tx, 60)
    assert final["status"] == "ABORTED", final
    assert "4001" in final["reason"], final

    seen = Seen(site, tx)
    [callback] = seen.transfer_callbacks
    assert callback["path"].endswith("/error"), callback
    assert callback["body"]["errorInformation"]["errorCode"] == "4001"
    assert _balance(ams, payer_party(1)) == before  # blocked, then released: no money moved
    assert ams.get(f"/transfers/{tx}").json()["state"] == "RELEASED"
    _ledger_balanced(ams)


@pytest.mark.timeout(180)
def test_missing_transfer_callback_is_settled_by_get_transfers(
    site: TtkSite, channel: httpx.Client, ams: httpx.Client
) -> None:
    """No PUT /transfers: after expiry plus grace the engine asks GET /transfers/{id}.

    The TTK answers that GET with its default mock rule: the fulfilment for the packet we sent,
    but a random transferState. Whatever it says, the payment must end in the matching final
    state and the ledger must agree.
    """
    before = _balance(ams, payer_party(2))
    with site.admin.rules("callback", [_rule("callback-transfer-none.json", "3")]):
        start = time.monotonic()
        tx = _pay(channel, 2, 2, "3")
        final = wait_final(channel, tx, 90)
        elapsed = time.monotonic() - start
    assert final["final"] is True, final
    assert elapsed >= EXPIRY_S + GRACE_S, f"settled after {elapsed:.1f} s, before expiry + grace"

    seen = Seen(site, tx)
    [status_request] = seen.status_requests
    [posted] = seen.transfer_requests
    asked_after_s = (status_request["timestamp"] - posted["timestamp"]) / 1000
    assert asked_after_s >= EXPIRY_S + GRACE_S - 0.5, asked_after_s  # TTK clock, ms resolution
    [answer] = seen.transfer_callbacks  # the answer to the GET: the POST got none
    state = answer["body"]["transferState"]
    assert ilp.fulfilment_matches(answer["body"]["fulfilment"], seen.quote["condition"])

    after = _balance(ams, payer_party(2))
    ams_state = ams.get(f"/transfers/{tx}").json()["state"]
    expected = {
        "COMMITTED": ("COMMITTED", "BOOKED", Decimal("3"), Decimal(0)),
        "ABORTED": ("ABORTED", "RELEASED", Decimal(0), Decimal(0)),
        # Not decided by the switch: neither booked nor released, flagged for reconciliation.
        "RESERVED": ("FAILED", "BLOCKED", Decimal(0), Decimal("3")),
        "RECEIVED": ("FAILED", "BLOCKED", Decimal(0), Decimal("3")),
    }
    assert state in expected, answer
    print(f"TTK answered GET /transfers with {state}: payment {final['status']}")
    status, blocked, debited, held = expected[state]
    observed = (final["status"], ams_state, before["balance"] - after["balance"])
    assert observed == (status, blocked, debited), (state, final)
    assert after["held"] - before["held"] == held
    _ledger_balanced(ams)


def test_a_transfer_callback_delayed_1_5_s_completes(
    site: TtkSite, channel: httpx.Client, ams: httpx.Client
) -> None:
    before = _balance(ams, payer_party(3))
    with site.admin.rules("callback", [_rule("callback-transfer-delayed.json", "2.25")]):
        start = time.monotonic()
        tx = _pay(channel, 3, 3, "2.25")
        final = wait_final(channel, tx, 60)
        elapsed = time.monotonic() - start
    assert final["status"] == "COMMITTED", final
    assert elapsed >= 1.5

    seen = Seen(site, tx)
    [callback] = seen.transfer_callbacks
    [posted] = seen.transfer_requests
    assert callback["timestamp"] - posted["timestamp"] >= 1500  # the TTK really held it back
    assert ilp.fulfilment_matches(callback["body"]["fulfilment"], seen.quote["condition"])
    assert before["balance"] - _balance(ams, payer_party(3))["balance"] == Decimal("2.25")
    _ledger_balanced(ams)


def _ttk_example(relative: str) -> dict[str, Any]:
    package = get("ttk").cache_dir / "node_modules" / "ml-testing-toolkit"
    data: dict[str, Any] = json.loads((package / "examples" / relative).read_text())
    return data


def _failures(report: dict[str, Any]) -> str:
    results = assertion_results(report)
    lines = [str(r) for r in results if r.status != "SUCCESS"]
    return "\n".join([*lines, "requests:", *request_summary(report)])


@pytest.mark.timeout(120)
def test_ttk_p2p_happy_path_collection_passes_every_assertion(
    site: TtkSite, channel: httpx.Client, ams: httpx.Client
) -> None:
    """The TTK as payer DFSP: party lookup, quote, transfer to one of our accounts."""
    payee = payer_party(9)  # an MSISDN account in our AMS, in USD
    collection = _ttk_example("collections/dfsp/p2p_happy_path.json")
    environment = _ttk_example("environments/dfsp_local_environment.json")
    environment["inputValues"].update(
        fromFspId=TTK_FSP,
        toIdType="MSISDN",
        toIdValue=payee,
        toFspId=stack.OUR_FSP,
        currency=stack.CURRENCY,
        amount="100",
    )
    before = _balance(ams, payee)

    report = site.admin.run_collection(collection, environment)

    results = assertion_results(report)
    passed = [r for r in results if r.status == "SUCCESS"]
    print(f"p2p_happy_path: {len(passed)}/{len(results)} assertions passed")
    assert len(results) == P2P_HAPPY_PATH_ASSERTIONS, _failures(report)
    assert len(passed) == len(results), _failures(report)
    info = report["runtimeInformation"]
    assert info["totalAssertions"] == P2P_HAPPY_PATH_ASSERTIONS, info
    assert info["totalPassedAssertions"] == P2P_HAPPY_PATH_ASSERTIONS, info

    # The money arrived once, and our engine recorded the payee payment as committed.
    assert _balance(ams, payee)["balance"] - before["balance"] == Decimal("100")
    quote = report["test_cases"][0]["requests"][1]["request"]["body"]
    # The outcome is recorded right after the PUT /transfers the TTK already has.
    state = wait_final(channel, quote["transactionId"], 30)
    assert state["status"] == "COMMITTED", state
    _ledger_balanced(ams)


@pytest.mark.timeout(120)
def test_unknown_party_gets_put_parties_error_3204(site: TtkSite) -> None:
    collection = resource("unknown-party.json")
    report = site.admin.run_collection(
        collection, {"inputValues": {"fromFspId": TTK_FSP, "unknownIdValue": UNKNOWN_PARTY}}
    )
    results = assertion_results(report)
    assert len(results) == 5, _failures(report)
    assert all(r.status == "SUCCESS" for r in results), _failures(report)

    # The TTK itself received the error callback on its switch port.
    errors = [
        r
        for r in site.admin.received()
        if (r["method"], r["path"]) == ("put", f"/parties/MSISDN/{UNKNOWN_PARTY}/error")
    ]
    assert len(errors) == 1, errors
    assert errors[0]["body"]["errorInformation"]["errorCode"] == "3204"
    assert errors[0]["headers"]["fspiop-source"] == stack.OUR_FSP
