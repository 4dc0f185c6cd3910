"""The Mojaloop Testing Toolkit as the switch: a party lookup comes back as a PUT callback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from phee.components import Running
from phee.components.ttk import configure_user
from tests.support import poll


class _Recorder(BaseHTTPRequestHandler):
    """Accepts every FSPIOP callback with 200 and remembers it."""

    received: list[tuple[str, str, dict[str, str], bytes]]

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.server.received.append(  # type: ignore[attr-defined]
            (self.command, self.path, dict(self.headers), body)
        )
        self.send_response(200)
        self.end_headers()

    do_PUT = do_POST = do_GET = _record

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def callback_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_party_lookup_yields_put_parties_callback(
    ttk: Running, callback_server: ThreadingHTTPServer
) -> None:
    base = f"http://127.0.0.1:{callback_server.server_address[1]}"
    merged = configure_user(ttk, CALLBACK_ENDPOINT=base)
    assert merged["CALLBACK_ENDPOINT"] == base

    party_id = "27713803912"
    resp = httpx.get(
        f"{ttk.endpoint('switch')}/parties/MSISDN/{party_id}",
        headers={
            "Accept": "application/vnd.interoperability.parties+json;version=1.1",
            "Content-Type": "application/vnd.interoperability.parties+json;version=1.1",
            "Date": formatdate(usegmt=True),
            "FSPIOP-Source": "payerfsp",
        },
        timeout=10,
    )
    assert resp.status_code == 202, resp.text

    received: list[tuple[str, str, dict[str, str], bytes]] = callback_server.received  # type: ignore[attr-defined]
    method, path, headers, body = poll(
        lambda: received[0] if received else None, what="the PUT /parties callback", deadline_s=30
    )
    assert method == "PUT"
    assert path == f"/parties/MSISDN/{party_id}"
    assert headers["FSPIOP-Destination"] == "payerfsp"
    party = json.loads(body)["party"]["partyIdInfo"]
    assert party["partyIdType"] == "MSISDN"
    assert party["partyIdentifier"] == party_id


def test_a_lookup_without_mandatory_headers_is_rejected(ttk: Running) -> None:
    resp = httpx.get(
        f"{ttk.endpoint('switch')}/parties/MSISDN/123",
        headers={"Accept": "application/vnd.interoperability.parties+json;version=1.1"},
        timeout=10,
    )
    assert resp.status_code == 400
    assert resp.json()["errorInformation"]["errorCode"] == "3100"
