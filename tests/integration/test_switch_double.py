"""The switch double as a real process, driven over HTTP by a DFSP-under-test stand-in.

The stand-in is a threaded `http.server` on a free port that records every callback. It is
registered twice: as `payerfsp` (callbacks under `/payer`) and as `slowpayee` (under
`/slowpayee`), a payee that takes transfers and never answers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from doubles.switch_double import payer
from harness.components.base import Running, pid_alive
from harness.services import start_service, stop_service
from tests.support import poll

PARTY = ("MSISDN", "27710101")
SLOW_PARTY = ("MSISDN", "27715555")


@dataclass
class Callback:
    at: float
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class StandIn:
    """The DFSP under test: records what the switch sends, answers 200."""

    server: ThreadingHTTPServer
    received: list[Callback] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def find(self, method: str, path: str) -> list[Callback]:
        with self.lock:
            return [c for c in self.received if (c.method, c.path) == (method, path)]

    def wait(self, method: str, path: str, count: int = 1, deadline_s: float = 10.0) -> Callback:
        def fetch() -> Callback | None:
            found = self.find(method, path)
            return found[count - 1] if len(found) >= count else None

        return poll(
            fetch, what=f"{method} {path} (#{count})", deadline_s=deadline_s, interval_s=0.02
        )


def _stand_in() -> StandIn:
    holder: list[StandIn] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            item = Callback(
                time.monotonic(),
                self.command,
                self.path,
                {k.lower(): v for k, v in self.headers.items()},
                json.loads(raw) if raw else None,
            )
            with holder[0].lock:
                holder[0].received.append(item)
            self.send_response(202 if self.command in ("GET", "POST") else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PUT = do_PATCH = _record

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    holder.append(StandIn(server))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return holder[0]


@dataclass
class Site:
    switch: Running
    dfsp: StandIn
    http: httpx.Client

    def send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        destination: str | None = None,
    ) -> httpx.Response:
        headers = payer.headers(method, path, "payerfsp", destination)
        content = json.dumps(body) if body is not None else None
        resp = self.http.request(method, path, content=content, headers=headers)
        assert resp.status_code == (202 if method in ("GET", "POST") else 200), resp.text
        return resp

    def quote(self) -> tuple[dict[str, Any], dict[str, Any]]:
        quote = payer.quote_request(payer_fsp="payerfsp", payee_fsp="simpayee", payee_id=PARTY)
        self.send("POST", "/quotes", quote, destination="simpayee")
        return quote, self.dfsp.wait("PUT", f"/payer/quotes/{quote['quoteId']}").body


def _env(dfsp: StandIn) -> dict[str, str]:
    parties = [{"partyIdType": PARTY[0], "partyIdentifier": PARTY[1], "name": "Ana Lima"}]
    dfsps = {
        "payerfsp": {"callbackBase": f"{dfsp.base}/payer"},
        "slowpayee": {
            "callbackBase": f"{dfsp.base}/slowpayee",
            "parties": [{"partyIdType": SLOW_PARTY[0], "partyIdentifier": SLOW_PARTY[1]}],
        },
    }
    return {
        "PHEE_SWITCH_SIMULATED_PARTIES": json.dumps(parties),
        "PHEE_SWITCH_DFSPS": json.dumps(dfsps),
        "PHEE_SWITCH_ILP_SECRET": "integration secret",
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    dfsp = _stand_in()
    workdir = tmp_path_factory.mktemp("switch-double")
    switch = start_service("switch-double", "doubles.switch_double", workdir, env=_env(dfsp))
    http = httpx.Client(base_url=switch.endpoint("http"), timeout=10)
    del http.headers["Accept"]
    try:
        yield Site(switch, dfsp, http)
    finally:
        http.close()
        stop_service(switch)
        dfsp.server.shutdown()
        dfsp.server.server_close()
    assert not pid_alive(switch.pid), f"switch double pid {switch.pid} outlived stop"


@pytest.fixture(autouse=True)
def no_faults(site: Site) -> Iterator[None]:
    yield
    site.http.delete("/admin/faults")


def _condition_of(fulfilment: str) -> str:
    preimage = base64.urlsafe_b64decode(fulfilment + "=" * (-len(fulfilment) % 4))
    digest = hashlib.sha256(preimage).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _error_code(callback: Callback) -> str:
    return str(callback.body["errorInformation"]["errorCode"])


def test_full_payer_flow_against_the_simulated_payee(site: Site) -> None:
    path = payer.party_path(*PARTY)
    site.send("GET", path)
    party = site.dfsp.wait("PUT", f"/payer{path}")
    assert party.body["party"]["name"] == "Ana Lima"
    assert party.body["party"]["partyIdInfo"]["fspId"] == "simpayee"
    assert party.headers["fspiop-source"] == "simpayee"
    assert party.headers["fspiop-destination"] == "payerfsp"
    assert "accept" not in party.headers

    quote, answer = site.quote()
    assert answer["ilpPacket"]
    assert answer["condition"]
    assert answer["transferAmount"] == quote["amount"]

    transfer = payer.transfer_request(quote, answer)
    site.send("POST", "/transfers", transfer, destination="simpayee")
    done = site.dfsp.wait("PUT", f"/payer/transfers/{transfer['transferId']}")
    assert done.body["transferState"] == "COMMITTED"
    assert done.body["completedTimestamp"]
    assert _condition_of(done.body["fulfilment"]) == answer["condition"]
    state = site.http.get(f"/admin/transfers/{transfer['transferId']}").json()
    assert state["transferState"] == "COMMITTED"


def test_sync_validation_over_http(site: Site) -> None:
    headers = payer.headers("POST", "/transfers", "payerfsp", "simpayee")
    del headers["Date"]
    resp = site.http.post("/transfers", content=b"{}", headers=headers)
    assert resp.status_code == 400
    assert resp.json()["errorInformation"]["errorCode"] == "3102"
    assert "Date" in resp.json()["errorInformation"]["errorDescription"]


def test_injected_4001_on_post_transfers(site: Site) -> None:
    fault = {"match": {"method": "POST", "resource": "transfers"}, "action": "error"}
    site.http.post("/admin/faults", json={**fault, "errorCode": "4001", "count": 1})
    quote, answer = site.quote()
    transfer = payer.transfer_request(quote, answer)
    site.send("POST", "/transfers", transfer, destination="simpayee")
    err = site.dfsp.wait("PUT", f"/payer/transfers/{transfer['transferId']}/error")
    assert _error_code(err) == "4001"
    assert err.headers["fspiop-source"] == "switch"
    site.send("GET", f"/transfers/{transfer['transferId']}")
    state = site.dfsp.wait("PUT", f"/payer/transfers/{transfer['transferId']}")
    assert state.body["transferState"] == "ABORTED"


def test_delayed_callback(site: Site) -> None:
    fault = {"match": {"resource": "quotes"}, "action": "delay", "delayMs": 1500, "count": 1}
    site.http.post("/admin/faults", json=fault)
    start = time.monotonic()
    quote, _ = site.quote()
    got = site.dfsp.find("PUT", f"/payer/quotes/{quote['quoteId']}")[0]
    assert got.at - start >= 1.5


def test_dropped_callback_is_recovered_with_get_transfers(site: Site) -> None:
    quote, answer = site.quote()
    fault = {"match": {"method": "POST", "resource": "transfers"}, "action": "drop", "count": 1}
    site.http.post("/admin/faults", json=fault)
    transfer = payer.transfer_request(quote, answer)
    path = f"/transfers/{transfer['transferId']}"
    site.send("POST", "/transfers", transfer, destination="simpayee")

    def committed() -> bool | None:
        state = site.http.get(f"/admin{path}").json().get("transferState")
        return True if state == "COMMITTED" else None

    poll(committed, what="the switch commits the transfer", deadline_s=10)
    assert site.dfsp.find("PUT", f"/payer{path}") == []  # the callback was dropped
    site.send("GET", path)
    recovered = site.dfsp.wait("PUT", f"/payer{path}")
    assert recovered.body["transferState"] == "COMMITTED"
    assert _condition_of(recovered.body["fulfilment"]) == answer["condition"]


def test_unfulfilled_transfer_expires_with_3303(site: Site) -> None:
    quote = payer.quote_request(payer_fsp="payerfsp", payee_fsp="slowpayee", payee_id=SLOW_PARTY)
    answer = {"transferAmount": quote["amount"], "ilpPacket": "AQ", "condition": "c" * 43}
    transfer = payer.transfer_request(quote, answer, expires_in_s=1.0)
    site.send("POST", "/transfers", transfer, destination="slowpayee")
    forwarded = site.dfsp.wait("POST", "/slowpayee/transfers")
    assert forwarded.body["transferId"] == transfer["transferId"]
    err = site.dfsp.wait("PUT", f"/payer/transfers/{transfer['transferId']}/error")
    assert _error_code(err) == "3303"
    assert err.at - forwarded.at >= 0.5
    told = site.dfsp.wait("PUT", f"/slowpayee/transfers/{transfer['transferId']}/error")
    assert _error_code(told) == "3303"


def test_duplicate_transfers(site: Site) -> None:
    quote, answer = site.quote()
    transfer = payer.transfer_request(quote, answer)
    path = f"/payer/transfers/{transfer['transferId']}"
    site.send("POST", "/transfers", transfer, destination="simpayee")
    first = site.dfsp.wait("PUT", path)
    site.send("POST", "/transfers", transfer, destination="simpayee")  # a resend
    again = site.dfsp.wait("PUT", path, count=2)
    assert again.body == first.body
    changed = {**transfer, "amount": {"amount": "99", "currency": "USD"}}
    site.send("POST", "/transfers", changed, destination="simpayee")
    err = site.dfsp.wait("PUT", f"{path}/error")
    assert _error_code(err) == "3106"


def test_sigterm_delivers_in_flight_callbacks_then_exits(site: Site, tmp_path: Path) -> None:
    """A second instance: a delayed callback still goes out when the switch is stopped."""
    switch = start_service(
        "switch-double-2", "doubles.switch_double", tmp_path, env=_env(site.dfsp)
    )
    try:
        with httpx.Client(base_url=switch.endpoint("http"), timeout=10) as http:
            fault = {"match": {"resource": "parties"}, "action": "delay", "delayMs": 1000}
            assert http.post("/admin/faults", json=fault).status_code == 201
            path = payer.party_path(*PARTY, sub_id=uuid.uuid4().hex[:8])
            headers = payer.headers("GET", path, "payerfsp")
            assert http.get(path, headers=headers).status_code == 202
    finally:
        stop_service(switch)
    assert not pid_alive(switch.pid)
    assert site.dfsp.find("PUT", f"/payer{path}")  # delivered before the process exited
