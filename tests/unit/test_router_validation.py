"""Inbound FSPIOP validation of the callback router, in process, table-driven.

The app is the real one (real SQLite outbox and routing tables, real schemas, real JWS keys)
with a delivery that records instead of calling the engine;
tests/integration/test_router_delivery.py proves the real engine delivery. Every refusal must
also leave no trace: nothing published,
no instance started, no row written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from phee.contract import EngineInfo
from phee.fspiop import ids
from phee.fspiop.headers import MAX_BODY_BYTES
from tests.support.router import (
    Harness,
    error_body,
    error_of,
    in_process_router,
    new_key_pair,
    parties_put,
    quote_post,
    quote_put,
    request,
    transfer_patch,
    transfer_post,
    transfer_put,
)

ENGINE = EngineInfo(name="engine-a", slot=1, engine_url="http://127.0.0.1:9/engine-rest")
QID = ids.new_uuid(ENGINE.slot)
TID = ids.new_uuid(ENGINE.slot)


@pytest.fixture
async def router(tmp_path: Path) -> AsyncIterator[Harness]:
    async with in_process_router(tmp_path, ENGINE, signed=True) as harness:
        yield harness


#: operation -> (method, path, body factory)
OPS: dict[str, tuple[str, str, Callable[[], Any]]] = {
    "GET /parties": ("GET", "/parties/MSISDN/27710101", lambda: None),
    "PUT /parties": ("PUT", "/parties/MSISDN/27710101", parties_put),
    "POST /quotes": ("POST", "/quotes", quote_post),
    "PUT /quotes": ("PUT", f"/quotes/{QID}", quote_put),
    "PUT /quotes/error": ("PUT", f"/quotes/{QID}/error", error_body),
    "POST /transfers": ("POST", "/transfers", lambda: transfer_post(TID, quote_post())),
    "PUT /transfers": ("PUT", f"/transfers/{TID}", transfer_put),
    "PATCH /transfers": ("PATCH", f"/transfers/{TID}", transfer_patch),
    "GET /transfers": ("GET", f"/transfers/{TID}", lambda: None),
}
MANDATORY = {
    "GET": ("Accept", "Date", "FSPIOP-Source"),
    "POST": ("Accept", "Content-Type", "Date", "FSPIOP-Source"),
    "PUT": ("Content-Type", "Date", "FSPIOP-Source"),
    "PATCH": ("Content-Type", "Date", "FSPIOP-Source"),
}
MISSING = [(op, header) for op, (method, _, _) in OPS.items() for header in MANDATORY[method]]


@pytest.mark.parametrize(("op", "header"), MISSING, ids=[f"{o}-{h}" for o, h in MISSING])
async def test_each_missing_mandatory_header_is_3102_naming_it(
    router: Harness, op: str, header: str
) -> None:
    method, path, body = OPS[op]
    response = await router.send(method, path, body(), drop=(header,))
    assert response.status_code == 400
    code, description = error_of(response.json())
    assert code == "3102"
    assert f"{header} header is missing" in description
    await router.assert_untouched()


def _drop(*path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        node = body
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


def _set(value: Any, *path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        node = body
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


#: (operation, mutation, expected code, text the description must contain)
MALFORMED: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("POST /quotes", _set("B51EC534-EE48-4575-B6A9-EAD2955B8069", "quoteId"), "3100", "/quoteId"),
    ("POST /quotes", _set("10.50", "amount", "amount"), "3100", "/amount/amount"),
    ("POST /quotes", _drop("transactionId"), "3102", "/transactionId is required"),
    ("POST /quotes", _set("PHONE", "payer", "partyIdInfo", "partyIdType"), "3100", "/payer"),
    ("POST /quotes", _set("GIVE", "amountType"), "3100", "/amountType"),
    ("PUT /quotes", _drop("condition"), "3102", "/condition is required"),
    ("PUT /quotes", _set("not base64url!", "ilpPacket"), "3100", "/ilpPacket"),
    ("PUT /quotes/error", _drop("errorInformation", "errorCode"), "3102", "/errorCode"),
    ("PUT /transfers", _set("DONE", "transferState"), "3100", "/transferState"),
    ("PATCH /transfers", _drop("completedTimestamp"), "3102", "/completedTimestamp"),
    ("PUT /parties", _drop("party", "partyIdInfo", "partyIdentifier"), "3102", "/partyIdentifier"),
    ("POST /transfers", _set("tomorrow", "expiration"), "3100", "/expiration"),
    ("POST /transfers", _set("AQID", "ilpPacket"), "3100", "/ilpPacket cannot be decoded"),
]


@pytest.mark.parametrize(
    ("op", "mutate", "code", "named"),
    MALFORMED,
    ids=[f"{m[0]}-{m[3]}" for m in MALFORMED],
)
async def test_each_malformed_field_is_refused_naming_it(
    router: Harness, op: str, mutate: Callable[[dict[str, Any]], None], code: str, named: str
) -> None:
    method, path, make = OPS[op]
    body = make()
    mutate(body)
    response = await router.send(method, path, body)  # signed: only the field is wrong
    assert response.status_code == 400
    assert error_of(response.json())[0] == code
    assert named in error_of(response.json())[1]
    await router.assert_untouched()


@pytest.mark.parametrize(
    ("method", "path", "named"),
    [
        ("PUT", "/quotes/not-an-id", "path parameter ID"),
        ("PUT", "/transfers/B51EC534-EE48-4575-B6A9-EAD2955B8069/error", "path parameter ID"),
        ("GET", "/parties/PHONE/27710101", "path parameter Type"),
    ],
)
async def test_malformed_path_parameters_are_3100(
    router: Harness, method: str, path: str, named: str
) -> None:
    body = None if method == "GET" else (error_body() if path.endswith("error") else quote_put())
    response = await router.send(method, path, body)
    assert response.status_code == 400
    assert error_of(response.json()) == ("3100", error_of(response.json())[1])
    assert named in error_of(response.json())[1]
    await router.assert_untouched()


@pytest.mark.parametrize(
    "raw",
    [b'{"transferAmount": ', b"\xff\xfe", b"", b'{"a": NaN}'],
    ids=["cut", "bytes", "empty", "nan"],
)
async def test_malformed_json_is_3101(router: Harness, raw: bytes) -> None:
    response = await router.send("PUT", f"/quotes/{QID}", quote_put(), raw=raw)
    assert response.status_code == 400
    assert error_of(response.json())[0] == "3101"
    await router.assert_untouched()


@pytest.mark.parametrize(
    ("op", "header", "value", "status", "code"),
    [
        (
            "GET /parties",
            "Accept",
            "application/vnd.interoperability.parties+json;version=3.0",
            406,
            "3001",
        ),
        (
            "POST /quotes",
            "Accept",
            "application/vnd.interoperability.quotes+json;version=9",
            406,
            "3001",
        ),
        (
            "PUT /quotes",
            "Content-Type",
            "application/vnd.interoperability.quotes+json;version=1.9",
            406,
            "3001",
        ),
        (
            "PUT /quotes",
            "Content-Type",
            "application/vnd.interoperability.parties+json;version=1.1",
            400,
            "3101",
        ),
        ("PUT /transfers", "Content-Type", "application/json", 400, "3101"),
        (
            "POST /quotes",
            "Content-Type",
            "application/vnd.interoperability.quotes+json",
            400,
            "3101",
        ),
    ],
    ids=["accept-3.0", "accept-9", "content-1.9", "wrong-resource", "plain-json", "no-version"],
)
async def test_content_type_and_accept_are_negotiated(
    router: Harness, op: str, header: str, value: str, status: int, code: str
) -> None:
    method, path, body = OPS[op]
    response = await router.send(method, path, body(), change={header: value})
    assert response.status_code == status
    assert error_of(response.json())[0] == code
    if code == "3001":  # the answer lists what we serve
        extensions = response.json()["errorInformation"]["extensionList"]["extension"]
        assert {"key": "v1", "value": "1.1"} in extensions
        assert {"key": "v2", "value": "2.0"} in extensions
    await router.assert_untouched()


async def test_an_oversized_body_is_413_3104_declared_or_streamed(router: Harness) -> None:
    big = b"{" + b" " * MAX_BODY_BYTES + b"}"
    declared = await router.send("PUT", f"/quotes/{QID}", quote_put(), raw=big)
    assert declared.status_code == 413
    assert error_of(declared.json())[0] == "3104"

    headers, _ = request("PUT", f"/quotes/{QID}", quote_put())

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for _ in range(6):
            yield b" " * (1024 * 1024)

    streamed = await router.client.put(f"/quotes/{QID}", headers=headers, content=chunks())
    assert streamed.status_code == 413
    assert error_of(streamed.json())[0] == "3104"
    await router.assert_untouched()


async def test_size_is_checked_before_headers_and_headers_before_json(router: Harness) -> None:
    big = b"x" * (MAX_BODY_BYTES + 1)
    first = await router.send("PUT", f"/quotes/{QID}", None, raw=big, drop=("Date",))
    assert error_of(first.json())[0] == "3104"
    second = await router.send("PUT", f"/quotes/{QID}", None, raw=b"{oops", drop=("Date",))
    assert error_of(second.json())[0] == "3102"
    await router.assert_untouched()


async def test_signatures_are_checked_with_the_reason(router: Harness) -> None:
    other_key, _ = new_key_pair()
    body = quote_put()
    headers, raw = request("PUT", f"/quotes/{QID}", body, key=router.key)
    tampered = raw.replace(b'"10.5"', b'"99.5"')
    assert tampered != raw
    cases = [
        (tampered, headers, "signature does not match"),
        (
            raw,
            {k: v for k, v in headers.items() if k != "FSPIOP-Signature"},
            "missing FSPIOP-Signature",
        ),
        (raw, request("PUT", f"/quotes/{QID}", body, key=other_key)[0], "signature does not match"),
        (raw, {**headers, "FSPIOP-URI": f"/quotes/{ids.new_uuid(1)}"}, "FSPIOP-URI"),
    ]
    for data, sent, reason in cases:
        response = await router.client.put(f"/quotes/{QID}", headers=sent, content=data)
        assert response.status_code == 400, reason
        code, description = error_of(response.json())
        assert code == "3105"
        assert reason in description
    unknown = await router.send("POST", "/quotes", quote_post(), source="strangerfsp")
    assert error_of(unknown.json())[0] == "3105"
    assert "no JWS public key for 'strangerfsp'" in error_of(unknown.json())[1]
    await router.assert_untouched()


async def test_valid_requests_pass_and_are_delivered(router: Harness) -> None:
    """The control case: what the refusals above must not do, a valid request does."""
    response = await router.send("PUT", f"/quotes/{QID}", quote_put())
    assert response.status_code == 200
    assert response.content == b""
    assert [(m.engine, m.correlation_key) for m in router.delivery.published] == [("engine-a", QID)]
    lookup = await router.send("GET", "/parties/MSISDN/27710101", None)
    assert lookup.status_code == 202
    assert [s[0] for s in router.delivery.started] == ["engine-a"]
    unsigned = await router.send("PUT", "/parties/MSISDN/27710101", parties_put(), key=None)
    assert unsigned.status_code == 200  # the SDK does not sign PUT /parties; neither do we ask


async def test_unknown_routes_and_methods_get_fspiop_errors_never_422(router: Harness) -> None:
    missing = await router.send("PUT", "/participants/MSISDN/1", quote_put())
    assert missing.status_code == 404
    assert error_of(missing.json())[0] == "3002"
    wrong = await router.client.delete(f"/quotes/{QID}")
    assert wrong.status_code == 405
    assert error_of(wrong.json())[0] == "3002"
    await router.assert_untouched()
