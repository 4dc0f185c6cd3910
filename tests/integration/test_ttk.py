"""The Mojaloop Testing Toolkit as the switch: a party lookup comes back as a PUT callback."""

from __future__ import annotations

from collections.abc import Iterator
from email.utils import formatdate

import httpx
import pytest

from harness.components import Running
from harness.components.ttk import configure_user
from tests.support import poll
from tests.support.recorder import Recorder, recorder


@pytest.fixture
def callback_server() -> Iterator[Recorder]:
    with recorder() as server:
        yield server


def test_party_lookup_yields_put_parties_callback(ttk: Running, callback_server: Recorder) -> None:
    base = callback_server.url
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

    got = poll(
        lambda: callback_server.received[0] if callback_server.received else None,
        what="the PUT /parties callback",
        deadline_s=30,
    )
    assert got.method == "PUT"
    assert got.path == f"/parties/MSISDN/{party_id}"
    assert got.headers["FSPIOP-Destination"] == "payerfsp"
    party = got.json()["party"]["partyIdInfo"]
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
