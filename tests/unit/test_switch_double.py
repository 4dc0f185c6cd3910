"""The switch double in-process: sync validation, routing, transfers, faults, delivery.

The switch app and a recording DFSP stand-in (a second ASGI app, reached through
`httpx.ASGITransport`) run in the test's event loop; nothing listens on a port.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from doubles.switch_double import payer
from doubles.switch_double.app import create_app
from doubles.switch_double.faults import FaultBook, FaultSpec
from doubles.switch_double.settings import PartySpec, SwitchSettings
from doubles.switch_double.state import BoundedMap
from doubles.switch_double.wire import fspiop_time, now_utc
from phee.fspiop import ilp
from phee.fspiop.headers import MAX_BODY_BYTES
from phee.fspiop.schemas import schemas
from tests.support import apoll

PARTY = ("MSISDN", "27710101")
REAL_PARTY = ("MSISDN", "27719999")
PAYEE_SECRET = "real payee secret"


@dataclass
class Received:
    host: str
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw) if self.raw else None


@dataclass
class Recorder:
    """DFSP stand-ins: every callback base `http://<fsp>.test` lands here, recorded by host."""

    received: list[Received] = field(default_factory=list)
    status: int = 200
    app: FastAPI = field(default_factory=FastAPI)

    def __post_init__(self) -> None:
        @self.app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH"])
        async def record(request: Request) -> Response:
            self.received.append(
                Received(
                    request.url.hostname or "",
                    request.method,
                    request.url.path,
                    dict(request.headers),
                    await request.body(),
                )
            )
            return Response(status_code=self.status)

    def find(self, host: str, method: str, path: str) -> list[Received]:
        return [
            r for r in self.received if (r.host, r.method, r.path) == (f"{host}.test", method, path)
        ]

    async def wait(self, host: str, method: str, path: str, count: int = 1) -> Received:
        async def fetch() -> Received | None:
            found = self.find(host, method, path)
            return found[count - 1] if len(found) >= count else None

        return await apoll(
            fetch, what=f"{method} {path} at {host}", deadline_s=5.0, interval_s=0.005
        )


@dataclass
class Env:
    client: httpx.AsyncClient
    dfsps: Recorder
    app: FastAPI

    async def send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        source: str = "payerfsp",
        destination: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers = {**payer.headers(method, path, source, destination), **(extra or {})}
        content = json.dumps(body).encode() if body is not None else None
        return await self.client.request(method, path, content=content, headers=headers)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    dfsps = Recorder()
    settings = SwitchSettings(
        simulated_parties=[PartySpec(partyIdType=PARTY[0], partyIdentifier=PARTY[1])],
        callback_attempts=2,
        callback_backoff_s=0,
    )
    app = create_app(settings, transport=httpx.ASGITransport(app=dfsps.app))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://switch")
    del client.headers["Accept"]  # httpx's default `*/*` would hide a missing Accept
    for fsp, parties in (("payerfsp", []), ("realpayee", [REAL_PARTY])):
        spec = {
            "callbackBase": f"http://{fsp}.test",
            "parties": [{"partyIdType": t, "partyIdentifier": i} for t, i in parties],
        }
        assert (await client.put(f"/admin/dfsps/{fsp}", json=spec)).status_code == 200
    yield Env(client, dfsps, app)
    await client.aclose()
    await app.state.switch.aclose()


def error_of(resp: httpx.Response) -> tuple[str, str]:
    info = resp.json()["errorInformation"]
    return info["errorCode"], info["errorDescription"]


def sha256_b64url(fulfilment: str) -> str:
    raw = base64.urlsafe_b64decode(fulfilment + "=" * (-len(fulfilment) % 4))
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()).rstrip(b"=").decode()


# --- synchronous validation ----------------------------------------------------------------


@pytest.mark.parametrize("header", ["Accept", "Content-Type", "Date", "FSPIOP-Source"])
async def test_each_missing_header_is_3102_naming_it(env: Env, header: str) -> None:
    body = payer.quote_request(payer_fsp="payerfsp", payee_fsp="simpayee", payee_id=PARTY)
    headers = payer.headers("POST", "/quotes", "payerfsp", "simpayee")
    del headers[header]
    resp = await env.client.post("/quotes", content=json.dumps(body), headers=headers)
    assert resp.status_code == 400
    code, description = error_of(resp)
    assert code == "3102"
    assert header in description


async def test_get_needs_accept_but_no_content_type(env: Env) -> None:
    path = payer.party_path(*PARTY)
    headers = payer.headers("GET", path, "payerfsp")
    assert "Content-Type" in headers
    del headers["Content-Type"]
    assert (await env.client.get(path, headers=headers)).status_code == 202
    del headers["Accept"]
    resp = await env.client.get(path, headers=headers)
    assert resp.status_code == 400
    assert error_of(resp)[0] == "3102"
    assert "Accept" in error_of(resp)[1]


async def test_unserved_version_is_406_3001(env: Env) -> None:
    path = payer.party_path(*PARTY)
    accept = {"Accept": "application/vnd.interoperability.parties+json;version=3.0"}
    resp = await env.send("GET", path, extra=accept)
    assert resp.status_code == 406
    assert error_of(resp)[0] == "3001"
    ctype = {"Content-Type": "application/vnd.interoperability.parties+json;version=9.0"}
    resp = await env.send("PUT", path, {"party": {}}, extra=ctype)
    assert (resp.status_code, error_of(resp)[0]) == (406, "3001")


async def test_malformed_media_type_and_json_are_3101(env: Env) -> None:
    resp = await env.send("POST", "/quotes", {}, extra={"Content-Type": "application/json"})
    assert (resp.status_code, error_of(resp)[0]) == (400, "3101")
    headers = payer.headers("POST", "/quotes", "payerfsp", "simpayee")
    resp = await env.client.post("/quotes", content=b"{not json", headers=headers)
    assert (resp.status_code, error_of(resp)[0]) == (400, "3101")
    resp = await env.client.post("/quotes", content=b"[1, 2]", headers=headers)
    assert (resp.status_code, error_of(resp)[0]) == (400, "3101")


async def test_oversized_body_is_413_3104(env: Env) -> None:
    headers = payer.headers("POST", "/transfers", "payerfsp", "simpayee")
    big = b'{"x": "' + b"a" * MAX_BODY_BYTES + b'"}'
    resp = await env.client.post("/transfers", content=big, headers=headers)
    assert resp.status_code == 413
    assert error_of(resp)[0] == "3104"


async def test_missing_and_invalid_fields_are_fspiop_errors_not_422(env: Env) -> None:
    quote = payer.quote_request(payer_fsp="payerfsp", payee_fsp="simpayee", payee_id=PARTY)
    answer = {"transferAmount": quote["amount"], "ilpPacket": "AQ", "condition": "c" * 43}
    body = payer.transfer_request(quote, answer)
    del body["condition"]
    resp = await env.send("POST", "/transfers", body, destination="simpayee")
    assert resp.status_code == 400
    assert error_of(resp) == ("3102", "Missing mandatory element - /condition is required")
    body = payer.transfer_request(quote, answer, transfer_id="not-a-uuid")
    resp = await env.send("POST", "/transfers", body, destination="simpayee")
    assert (resp.status_code, error_of(resp)[0]) == (400, "3100")
    body = {**payer.transfer_request(quote, answer), "expiration": "tomorrow"}
    resp = await env.send("POST", "/transfers", body, destination="simpayee")
    assert (resp.status_code, error_of(resp)[0]) == (400, "3100")
    resp = await env.client.put("/admin/dfsps/x", json={"callbackBase": 5, "nonsense": True})
    assert resp.status_code == 400
    assert error_of(resp)[0] == "3100"
    assert "detail" not in resp.json()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/participants/MSISDN/1"),
        ("PATCH", f"/transfers/{uuid.uuid4()}"),
        ("POST", f"/transfers/{uuid.uuid4()}"),
        ("GET", "/parties/MSISDN"),
        ("DELETE", "/quotes"),
    ],
)
async def test_unserved_paths_are_3002(env: Env, method: str, path: str) -> None:
    resp = await env.client.request(method, path, headers={"FSPIOP-Source": "payerfsp"})
    assert resp.status_code == 404
    assert error_of(resp)[0] == "3002"


async def test_full_schema_validation_when_enabled() -> None:
    app = create_app(SwitchSettings(validate_schemas=True))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://switch"
    ) as client:
        body = payer.quote_request(payer_fsp="payerfsp", payee_fsp="simpayee", payee_id=PARTY)
        body["amountType"] = "BOTH"  # not in the enum (1.1 allows extra properties)
        headers = payer.headers("POST", "/quotes", "payerfsp", "simpayee")
        resp = await client.post("/quotes", content=json.dumps(body), headers=headers)
        assert (resp.status_code, error_of(resp)[0]) == (400, "3100")
        assert "amountType" in error_of(resp)[1]
        named = payer.quote_request(payer_fsp="payerfsp", payee_fsp="simpayee", payee_id=PARTY)
        named["payer"]["name"] = "Jürgen Ødegård"  # a `\p{L}` pattern Python cannot check
        resp = await client.post("/quotes", content=json.dumps(named), headers=headers)
        assert resp.status_code == 202
    await app.state.switch.aclose()


# --- routing with the simulated payee ------------------------------------------------------


async def test_payer_flow_against_the_simulated_payee(env: Env) -> None:
    path = payer.party_path(*PARTY)
    assert (await env.send("GET", path)).status_code == 202
    party = await env.dfsps.wait("payerfsp", "PUT", path)
    assert party.headers["fspiop-source"] == "simpayee"
    assert party.headers["fspiop-destination"] == "payerfsp"
    assert "accept" not in party.headers
    assert party.headers["content-type"].endswith("parties+json;version=1.1")
    assert party.body["party"]["partyIdInfo"]["fspId"] == "simpayee"

    quote = payer.quote_request(payer_fsp="payerfsp", payee_fsp="simpayee", payee_id=PARTY)
    resp = await env.send("POST", "/quotes", quote, destination="simpayee")
    assert resp.status_code == 202
    answer = (await env.dfsps.wait("payerfsp", "PUT", f"/quotes/{quote['quoteId']}")).body
    assert answer["transferAmount"] == quote["amount"]
    transfer = payer.transfer_request(quote, answer)
    resp = await env.send("POST", "/transfers", transfer, destination="simpayee")
    assert resp.status_code == 202
    done = await env.dfsps.wait("payerfsp", "PUT", f"/transfers/{transfer['transferId']}")
    assert done.body["transferState"] == "COMMITTED"
    assert sha256_b64url(done.body["fulfilment"]) == answer["condition"]
    # What the switch sends is what the official FSPIOP 1.1 API accepts. (Party bodies are not
    # checked: the official name patterns use `\p{L}`, which Python's `re` cannot compile.)
    v11 = schemas("1.1")
    v11.validate("PUT", f"/quotes/{quote['quoteId']}", answer)
    v11.validate("PUT", done.path, done.body)
    state = (await env.client.get(f"/admin/transfers/{transfer['transferId']}")).json()
    assert state["transferState"] == "COMMITTED"


async def test_unknown_party_and_destination_are_error_callbacks(env: Env) -> None:
    path = payer.party_path("MSISDN", "0000")
    await env.send("GET", path)
    err = await env.dfsps.wait("payerfsp", "PUT", path + "/error")
    assert err.body["errorInformation"]["errorCode"] == "3204"
    assert err.headers["fspiop-source"] == "switch"
    schemas("1.1").validate("PUT", err.path, err.body)

    quote = payer.quote_request(payer_fsp="payerfsp", payee_fsp="nobody", payee_id=PARTY)
    await env.send("POST", "/quotes", quote, destination="nobody")
    err = await env.dfsps.wait("payerfsp", "PUT", f"/quotes/{quote['quoteId']}/error")
    assert err.body["errorInformation"]["errorCode"] == "3201"


async def test_simulated_payee_rejects_a_condition_it_did_not_quote(env: Env) -> None:
    quote = payer.quote_request(payer_fsp="payerfsp", payee_fsp="simpayee", payee_id=PARTY)
    await env.send("POST", "/quotes", quote, destination="simpayee")
    answer = (await env.dfsps.wait("payerfsp", "PUT", f"/quotes/{quote['quoteId']}")).body
    forged = {**answer, "condition": sha256_b64url(base64.urlsafe_b64encode(b"x" * 32).decode())}
    transfer = payer.transfer_request(quote, forged)
    await env.send("POST", "/transfers", transfer, destination="simpayee")
    err = await env.dfsps.wait("payerfsp", "PUT", f"/transfers/{transfer['transferId']}/error")
    assert err.body["errorInformation"]["errorCode"] == "5105"
    assert err.headers["fspiop-source"] == "simpayee"


# --- routing between real DFSPs ------------------------------------------------------------


async def _quote_with_real_payee(env: Env) -> tuple[dict[str, Any], dict[str, Any], str]:
    """POST /quotes to `realpayee`; it answers with a packet made with its own secret."""
    quote = payer.quote_request(payer_fsp="payerfsp", payee_fsp="realpayee", payee_id=REAL_PARTY)
    signature = {"FSPIOP-Signature": '{"signature":"s","protectedHeader":"p"}'}
    await env.send("POST", "/quotes", quote, destination="realpayee", extra=signature)
    forwarded = await env.dfsps.wait("realpayee", "POST", "/quotes")
    assert forwarded.raw == json.dumps(quote).encode()  # byte for byte, so a JWS still holds
    assert forwarded.headers["fspiop-signature"] == signature["FSPIOP-Signature"]
    expiration = fspiop_time(now_utc() + timedelta(minutes=1))
    made = ilp.v1_response(
        {**{k: quote[k] for k in ("quoteId", "transactionId", "transactionType", "payee")}}
        | {"payer": quote["payer"], "expiration": expiration, "amount": quote["amount"]},
        PAYEE_SECRET,
    )
    answer = {
        "transferAmount": quote["amount"],
        "expiration": expiration,
        "ilpPacket": made.packet,
        "condition": made.condition,
    }
    path = f"/quotes/{quote['quoteId']}"
    assert (await env.send("PUT", path, answer, source="realpayee")).status_code == 200
    got = await env.dfsps.wait("payerfsp", "PUT", path)
    assert got.body == answer
    assert got.headers["fspiop-source"] == "realpayee"
    return quote, answer, made.fulfilment


@pytest.mark.parametrize("payee_state", ["COMMITTED", "RESERVED"])
async def test_transfer_between_real_dfsps_commits_on_a_valid_fulfilment(
    env: Env, payee_state: str
) -> None:
    quote, answer, fulfilment = await _quote_with_real_payee(env)
    transfer = payer.transfer_request(quote, answer)
    await env.send("POST", "/transfers", transfer, destination="realpayee")
    await env.dfsps.wait("realpayee", "POST", "/transfers")
    path = f"/transfers/{transfer['transferId']}"
    fulfil = {
        "fulfilment": fulfilment,
        "completedTimestamp": fspiop_time(now_utc()),
        "transferState": payee_state,
    }
    await env.send("PUT", path, fulfil, source="realpayee", destination="payerfsp")
    got = await env.dfsps.wait("payerfsp", "PUT", path)
    assert got.body["transferState"] == "COMMITTED"
    assert got.body["fulfilment"] == fulfilment
    if payee_state == "RESERVED":
        patch = await env.dfsps.wait("realpayee", "PATCH", path)
        assert patch.body["transferState"] == "COMMITTED"
        assert "accept" not in patch.headers
    # GET from either side answers with the state; a third DFSP learns nothing.
    await env.send("GET", path, source="realpayee")
    state = await env.dfsps.wait("realpayee", "PUT", path)
    assert state.body["transferState"] == "COMMITTED"
    assert state.headers["fspiop-source"] == "switch"
    await env.client.put("/admin/dfsps/nosy", json={"callbackBase": "http://nosy.test"})
    await env.send("GET", path, source="nosy")
    assert (await env.dfsps.wait("nosy", "PUT", path + "/error")).body["errorInformation"][
        "errorCode"
    ] == "3208"


async def test_invalid_fulfilment_aborts_and_tells_both_sides(env: Env) -> None:
    quote, answer, _ = await _quote_with_real_payee(env)
    transfer = payer.transfer_request(quote, answer)
    await env.send("POST", "/transfers", transfer, destination="realpayee")
    await env.dfsps.wait("realpayee", "POST", "/transfers")
    path = f"/transfers/{transfer['transferId']}"
    wrong = base64.urlsafe_b64encode(b"w" * 32).rstrip(b"=").decode()
    fulfil = {"fulfilment": wrong, "transferState": "COMMITTED"}
    await env.send("PUT", path, fulfil, source="realpayee", destination="payerfsp")
    for side in ("payerfsp", "realpayee"):
        err = await env.dfsps.wait(side, "PUT", path + "/error")
        assert err.body["errorInformation"]["errorCode"] == "3100"
        assert "invalid fulfilment" in err.body["errorInformation"]["errorDescription"]
    state = (await env.client.get(f"/admin/transfers/{transfer['transferId']}")).json()
    assert state["transferState"] == "ABORTED"


async def test_payee_error_is_forwarded_and_aborts(env: Env) -> None:
    quote, answer, _ = await _quote_with_real_payee(env)
    transfer = payer.transfer_request(quote, answer)
    await env.send("POST", "/transfers", transfer, destination="realpayee")
    await env.dfsps.wait("realpayee", "POST", "/transfers")
    path = f"/transfers/{transfer['transferId']}/error"
    error = {"errorInformation": {"errorCode": "5105", "errorDescription": "no"}}
    await env.send("PUT", path, error, source="realpayee", destination="payerfsp")
    assert (await env.dfsps.wait("payerfsp", "PUT", path)).body == error
    state = (await env.client.get(f"/admin/transfers/{transfer['transferId']}")).json()
    assert (state["transferState"], state["errorCode"]) == ("ABORTED", "5105")


async def test_unfulfilled_transfer_expires_with_3303(env: Env) -> None:
    quote, answer, _ = await _quote_with_real_payee(env)
    transfer = payer.transfer_request(quote, answer, expires_in_s=0.3)
    await env.send("POST", "/transfers", transfer, destination="realpayee")
    path = f"/transfers/{transfer['transferId']}"
    for side in ("payerfsp", "realpayee"):  # the payee had been sent it: reserved
        err = await env.dfsps.wait(side, "PUT", path + "/error")
        assert err.body["errorInformation"]["errorCode"] == "3303"
    # a fulfilment after that is refused
    fulfil = {"fulfilment": "x" * 43, "transferState": "COMMITTED"}
    await env.send("PUT", path, fulfil, source="realpayee", destination="payerfsp")
    late = await env.dfsps.wait("realpayee", "PUT", path + "/error", count=2)
    assert late.body["errorInformation"]["errorCode"] == "3303"
    assert len(env.dfsps.find("payerfsp", "PUT", path + "/error")) == 1


async def test_party_callback_without_destination_reaches_every_requester(env: Env) -> None:
    await env.client.put("/admin/dfsps/otherpayer", json={"callbackBase": "http://otherpayer.test"})
    path = payer.party_path(*REAL_PARTY)
    await env.send("GET", path)
    await env.send("GET", path, source="otherpayer")
    await env.dfsps.wait("realpayee", "GET", path, count=2)
    party = {"party": {"partyIdInfo": {"partyIdType": "MSISDN", "partyIdentifier": "27719999"}}}
    await env.send("PUT", path, party, source="realpayee")
    for fsp in ("payerfsp", "otherpayer"):
        assert (await env.dfsps.wait(fsp, "PUT", path)).body == party


# --- delivery and faults ------------------------------------------------------------------


async def test_unreachable_payee_gives_the_payer_1001_after_retries(env: Env) -> None:
    env.dfsps.status = 503
    quote = payer.quote_request(payer_fsp="payerfsp", payee_fsp="realpayee", payee_id=REAL_PARTY)
    await env.send("POST", "/quotes", quote, destination="realpayee")
    await env.dfsps.wait("realpayee", "POST", "/quotes", count=2)  # callback_attempts = 2
    await env.dfsps.wait("payerfsp", "PUT", f"/quotes/{quote['quoteId']}/error", count=2)
    assert len(env.dfsps.find("realpayee", "POST", "/quotes")) == 2
    metrics = (await env.client.get("/metrics")).text
    assert (
        'phee_switch_callbacks_total{method="POST",outcome="failed",resource="quotes"}' in metrics
    )


async def test_injected_error_and_count(env: Env) -> None:
    fault = {"match": {"method": "GET", "resource": "parties"}, "action": "error"}
    resp = await env.client.post("/admin/faults", json={**fault, "errorCode": "2003", "count": 1})
    assert resp.status_code == 201
    path = payer.party_path(*PARTY)
    await env.send("GET", path)
    err = await env.dfsps.wait("payerfsp", "PUT", path + "/error")
    assert err.body["errorInformation"]["errorCode"] == "2003"
    await env.send("GET", path)  # the rule is used up
    await env.dfsps.wait("payerfsp", "PUT", path)
    assert (await env.client.get("/admin/faults")).json() == []


def test_fault_rules_match_in_order_and_run_out() -> None:
    book = FaultBook()
    book.add(FaultSpec.model_validate({"match": {"destination": "b"}, "action": "drop"}))
    book.add(
        FaultSpec.model_validate(
            {"match": {"path_regex": "^/transfers/"}, "action": "delay", "delayMs": 10, "count": 2}
        )
    )
    assert book.take("POST", "transfers", "/transfers", "a") is None
    fault = book.take("GET", "transfers", "/transfers/x", "a")
    assert fault is not None
    assert (fault.action, fault.delay_s) == ("delay", 0.01)
    assert book.take("GET", "transfers", "/transfers/x", "b") is not None  # drop rule first
    assert book.take("GET", "transfers", "/transfers/x", "a") is not None
    assert book.take("GET", "transfers", "/transfers/x", "a") is None  # count used up
    with pytest.raises(ValueError, match="delayMs"):
        FaultSpec.model_validate({"action": "delay"})
    with pytest.raises(ValueError, match="9999"):
        FaultSpec.model_validate({"action": "error", "errorCode": "9999"})


def test_bounded_map_forgets_oldest_and_expired() -> None:
    now = [0.0]
    evicted: list[int] = []
    store: BoundedMap[str, int] = BoundedMap(3, 10.0, on_evict=evicted.append, clock=lambda: now[0])
    for i in range(4):
        store.put(str(i), i)
    assert (store.get("0"), len(store), evicted) == (None, 3, [0])
    now[0] = 10.5
    assert store.get("1") is None
    store.put("new", 9)
    assert len(store) == 1
    assert sorted(evicted) == [0, 1, 2, 3]
