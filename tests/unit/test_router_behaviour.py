"""What the callback router does with valid requests, in process with a recording delivery.

Party fan-out through registered waits, payee work on accepting engines with fail-over, the
payee follow-ups reaching the engine that holds the transaction (also while it drains),
duplicates and modified requests, the outbox for down engines, the admin API and metrics.
The real engine delivery is proven by tests/integration/test_router_delivery.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from callback_router.routing import PartyWait
from phee import contract
from phee.contract import EngineInfo
from phee.fspiop import ids
from tests.support import apoll
from tests.support.router import (
    PAYER,
    Harness,
    error_body,
    error_of,
    in_process_router,
    parties_put,
    quote_post,
    quote_put,
    request,
    transfer_patch,
    transfer_post,
    transfer_put,
)

A = EngineInfo(name="engine-a", slot=1, engine_url="http://127.0.0.1:9/engine-rest")
B = EngineInfo(name="engine-b", slot=2, engine_url="http://127.0.0.1:10/engine-rest")


@dataclass
class Switch:
    """The switch's side of the error callbacks the router sends itself."""

    received: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.put("/{resource}/{id_value}/error")
        async def error(request: Request, resource: str, id_value: str) -> Response:
            self.received.append((request.url.path, dict(request.headers), await request.json()))
            return Response(status_code=200)

        return app


@dataclass
class Site:
    router: Harness
    switch: Switch


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    switch = Switch()
    async with in_process_router(
        tmp_path,
        A,
        B,
        switch_url="http://switch",
        switch_transport=httpx.ASGITransport(app=switch.app()),
    ) as router:
        yield Site(router, switch)


async def wait_for(site: Site, party: str, tx: str, engine: str, expires: float = 60) -> None:
    response = await site.router.admin(
        "POST",
        "/party-waits",
        {"party": party, "transactionId": tx, "engine": engine, "expiresInS": expires},
    )
    assert response.status_code == 201, response.text


async def test_a_party_callback_reaches_every_waiting_transaction_once(site: Site) -> None:
    await wait_for(site, "MSISDN/27710101", "tx-a", "engine-a")
    await wait_for(site, "MSISDN/27710101", "tx-b", "engine-b")
    await wait_for(site, "MSISDN/27710999", "tx-other", "engine-a")
    await site.router.service.state.add_party_wait(  # expired a second ago
        PartyWait("MSISDN/27710101", "tx-late", "engine-a", time.time() - 1)
    )
    body = parties_put("27710101")
    assert (await site.router.send("PUT", "/parties/MSISDN/27710101", body)).status_code == 200
    published = site.router.delivery.published
    assert {(m.engine, m.correlation_key) for m in published} == {
        ("engine-a", "tx-a"),
        ("engine-b", "tx-b"),
    }
    for message in published:
        assert message.name == contract.MSG_PARTY_CALLBACK
        assert message.variables["partyCallback"]["ok"] is True
        assert message.variables["partyCallback"]["body"] == body
    # the waits are satisfied: the same callback again reaches nobody, and is still answered
    again = await site.router.send("PUT", "/parties/MSISDN/27710101", body)
    assert again.status_code == 200
    assert len(published) == 2
    metrics = (await site.router.client.get("/metrics")).text
    assert 'phee_router_unroutable_total{reason="no-waiter",resource="parties"} 1.0' in metrics


@pytest.mark.parametrize(
    ("path", "party", "ok"),
    [
        ("/parties/MSISDN/27710101/error", "MSISDN/27710101", False),
        ("/parties/MSISDN/27710101/SUB1", "MSISDN/27710101/SUB1", True),
        ("/parties/MSISDN/27710101/SUB1/error", "MSISDN/27710101/SUB1", False),
    ],
)
async def test_party_paths_with_sub_ids_and_errors(
    site: Site, path: str, party: str, ok: bool
) -> None:
    await wait_for(site, party, "tx-1", "engine-b")
    body = parties_put() if ok else error_body("3204")
    assert (await site.router.send("PUT", path, body)).status_code == 200
    (message,) = site.router.delivery.published
    assert (message.engine, message.correlation_key) == ("engine-b", "tx-1")
    assert message.variables["partyCallback"]["ok"] is ok


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"party": "MSISDN/1", "transactionId": "t", "engine": "engine-z"}, "no engine named"),
        ({"party": "PHONE/1", "transactionId": "t", "engine": "engine-a"}, "not Type/ID"),
        ({"party": "MSISDN/1", "engine": "engine-a"}, "transactionId"),
        ({"party": "MSISDN/1", "transactionId": "t", "engine": "engine-a", "x": 1}, "x"),
        (
            {"party": "MSISDN/1", "transactionId": "t", "engine": "engine-a", "expiresInS": -1},
            "expiresInS",
        ),
    ],
)
async def test_bad_party_waits_are_400_and_stored_nowhere(
    site: Site, body: dict[str, Any], reason: str
) -> None:
    response = await site.router.admin("POST", "/party-waits", body)
    assert response.status_code == 400
    assert reason in response.json()["error"]
    await site.router.assert_untouched()


async def test_payee_work_alternates_and_follow_ups_reach_the_holder_while_it_drains(
    site: Site,
) -> None:
    router = site.router
    first, second = quote_post(), quote_post()
    assert (await router.send("POST", "/quotes", first)).status_code == 202
    assert (await router.send("POST", "/quotes", second)).status_code == 202
    started = router.delivery.started
    assert [(e, p) for e, p, _ in started] == [
        ("engine-a", contract.PAYEE_QUOTE_TRANSFER),
        ("engine-b", contract.PAYEE_QUOTE_TRANSFER),
    ]
    assert started[0][2] == {
        "tenant": "default",  # PHEE_ROUTER_TENANT: the back office files the payment under it
        "quoteRequest": first,
        "quoteId": first["quoteId"],
        "transactionId": first["transactionId"],
        "requester": PAYER,
        "fspiopVersion": "1.1",
    }
    # engine-a drains: no new work for it, but its quote's transfer still goes there
    drained = await router.admin("PUT", "/engines/engine-a/state", {"state": "draining"})
    assert drained.json()["state"] == "draining"
    assert (await router.send("POST", "/quotes", quote_post())).status_code == 202
    assert started[-1][0] == "engine-b"

    transfer_id = ids.new_uuid(900)  # the payer's id: its "slot" means nothing to us
    transfer = transfer_post(transfer_id, first)
    assert (await router.send("POST", "/transfers", transfer)).status_code == 202
    (request_msg,) = router.delivery.published
    assert (request_msg.engine, request_msg.name, request_msg.correlation_key) == (
        "engine-a",
        contract.MSG_TRANSFER_REQUEST,
        first["transactionId"],
    )
    assert request_msg.variables["transferRequest"]["body"] == transfer
    assert request_msg.variables["transferRequest"]["ok"] is True

    assert (
        await router.send("PATCH", f"/transfers/{transfer_id}", transfer_patch())
    ).status_code == 200
    expired = await router.send("PUT", f"/transfers/{transfer_id}/error", error_body("3303"))
    assert expired.status_code == 200
    patch, error = router.delivery.published[1:]
    assert (patch.engine, patch.name, patch.correlation_key) == (
        "engine-a",
        contract.MSG_TRANSFER_PATCH,
        transfer_id,
    )
    assert (error.engine, error.name, error.correlation_key) == (
        "engine-a",
        contract.MSG_TRANSFER_CALLBACK,
        transfer_id,
    )
    assert error.variables["transferCallback"]["ok"] is False


async def test_no_accepting_engine_is_503_2003_and_remembers_nothing(site: Site) -> None:
    router = site.router
    for name in ("engine-a", "engine-b"):
        await router.admin("PUT", f"/engines/{name}/state", {"state": "draining"})
    quote = await router.send("POST", "/quotes", quote_post())
    lookup = await router.send("GET", "/parties/MSISDN/27710101")
    for response in (quote, lookup):
        assert response.status_code == 503
        assert error_of(response.json())[0] == "2003"
    await router.assert_untouched()


async def test_an_unreachable_engine_is_skipped_for_new_work(site: Site) -> None:
    site.router.delivery.unreachable.add("engine-a")
    assert (await site.router.send("GET", "/parties/MSISDN/27710101")).status_code == 202
    assert [e for e, _, _ in site.router.delivery.started] == ["engine-b"]
    site.router.delivery.unreachable.add("engine-b")
    refused = await site.router.send("POST", "/quotes", quote_post())
    assert refused.status_code == 503
    assert (await site.router.service.state.counts())["router_requests"] == 0


async def test_duplicates_start_nothing_and_modified_requests_get_3106(site: Site) -> None:
    router = site.router
    quote = quote_post()
    assert (await router.send("POST", "/quotes", quote)).status_code == 202
    resent = await router.client.post(  # same content, other formatting: still a resend
        "/quotes",
        headers=request("POST", "/quotes", quote)[0],
        content=json.dumps(quote, indent=2).encode(),
    )
    assert resent.status_code == 202
    assert len(router.delivery.started) == 1
    duplicates = (await router.admin("GET", "/duplicates")).json()["duplicates"]
    assert [(d["resource"], d["id"], d["duplicates"]) for d in duplicates] == [
        ("quotes", quote["quoteId"], 1)
    ]

    modified = {**quote, "amount": {"amount": "11", "currency": "USD"}}
    assert (await router.send("POST", "/quotes", modified)).status_code == 202
    assert len(router.delivery.started) == 1

    async def got_error() -> bool | None:
        return True if site.switch.received else None

    await apoll(got_error, what="3106 error callback at the switch", deadline_s=10)
    ((path, headers, body),) = site.switch.received
    assert path == f"/quotes/{quote['quoteId']}/error"
    assert body["errorInformation"]["errorCode"] == "3106"
    assert headers["fspiop-source"] == "payeefsp"
    assert headers["fspiop-destination"] == PAYER
    assert "accept" not in headers  # FSPIOP: callbacks carry no Accept
    assert headers["content-type"] == "application/vnd.interoperability.quotes+json;version=1.1"


async def test_a_transfer_for_an_unknown_transaction_is_answered_and_counted(site: Site) -> None:
    transfer = transfer_post(ids.new_uuid(900), quote_post())
    assert (await site.router.send("POST", "/transfers", transfer)).status_code == 202
    assert site.router.delivery.published == []
    assert (await site.router.service.state.counts())["router_requests"] == 0  # claim released
    metrics = (await site.router.client.get("/metrics")).text
    assert 'reason="unknown-payee-id",resource="transfers"} 1.0' in metrics


async def test_a_down_engine_gets_its_callbacks_through_the_outbox(site: Site) -> None:
    router = site.router
    router.delivery.unreachable.add("engine-b")  # really gone, not only marked down
    await router.admin("PUT", "/engines/engine-b/state", {"state": "down"})
    quote_id = ids.new_uuid(B.slot)
    assert (await router.send("PUT", f"/quotes/{quote_id}", quote_put())).status_code == 200
    second = ids.new_uuid(B.slot)
    assert (await router.send("PUT", f"/transfers/{second}", transfer_put())).status_code == 200
    assert router.delivery.published == []
    outbox = (await router.admin("GET", "/outbox")).json()
    assert (outbox["pending"], outbox["byEngine"]) == (2, {"engine-b": 2})
    router.delivery.unreachable.clear()  # the engine is back; the operator says so
    await router.admin("PUT", "/engines/engine-b/state", {"state": "accepting"})

    async def delivered() -> list[str] | None:
        keys = [m.correlation_key for m in router.delivery.published]
        return keys if len(keys) == 2 else None

    assert await apoll(delivered, what="outbox delivery", deadline_s=15) == [quote_id, second]
    assert (await router.admin("GET", "/outbox")).json()["pending"] == 0
    metrics = (await router.client.get("/metrics")).text
    assert "phee_router_outbox_depth 0.0" in metrics
    assert 'phee_router_deliveries_total{engine="engine-b",outcome="redelivered"} 2.0' in metrics


async def test_admin_engine_states_persist_and_unknown_ones_are_refused(
    site: Site, tmp_path: Path
) -> None:
    router = site.router
    changed = await router.admin("PUT", "/engines/engine-b/state", {"state": "draining"})
    assert changed.status_code == 200
    on_disk = json.loads((tmp_path / "engines.json").read_text())
    assert [e["state"] for e in on_disk["engines"]] == ["accepting", "draining"]
    assert (
        await router.admin("PUT", "/engines/engine-z/state", {"state": "down"})
    ).status_code == 404
    bad = await router.admin("PUT", "/engines/engine-a/state", {"state": "sleepy"})
    assert bad.status_code == 400
    listed = (await router.admin("GET", "/engines")).json()
    assert [e["state"] for e in listed["engines"]] == ["accepting", "draining"]


async def test_admin_needs_its_token(tmp_path: Path) -> None:
    async with in_process_router(tmp_path, A, admin_token="s3cret") as router:
        assert (await router.client.get("/admin/engines")).status_code == 401
        wrong = await router.client.get("/admin/engines", headers={"Authorization": "Bearer x"})
        assert wrong.status_code == 401
        allowed = await router.client.get(
            "/admin/engines", headers={"Authorization": "Bearer s3cret"}
        )
        assert allowed.status_code == 200


async def test_readiness_and_request_metrics(site: Site) -> None:
    router = site.router
    assert (await router.client.get("/readyz")).status_code == 200
    await router.send("PUT", f"/quotes/{ids.new_uuid(A.slot)}", quote_put(), drop=("Date",))
    await router.send("PUT", f"/quotes/{ids.new_uuid(A.slot)}", quote_put())
    metrics = (await router.client.get("/metrics")).text
    assert (
        'phee_router_inbound_requests_total{method="PUT",outcome="3102",resource="quotes"} 1.0'
        in metrics
    )
    assert (
        'phee_router_inbound_requests_total{method="PUT",outcome="200",resource="quotes"} 1.0'
        in metrics
    )
    assert 'phee_router_routing_seconds_count{method="PUT",resource="quotes"} 1.0' in metrics
