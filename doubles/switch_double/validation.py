"""Synchronous checks of an inbound FSPIOP request, before the switch answers 202/200.

Failures are `FspiopError`s, answered with their HTTP status and an `errorInformation` body:
3002 unknown path or method, 3102 missing header or field (named), 3101 malformed header or
JSON, 406/3001 unserved version, 413/3104 body over 5 MB, 3100 invalid field.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

from doubles.switch_double.wire import PASSTHROUGH, Message, Route, parse_path, parse_time
from phee.fspiop import headers as fh
from phee.fspiop.errors import FspiopError
from phee.fspiop.ids import is_fspiop_id
from phee.fspiop.schemas import schemas

log = logging.getLogger("doubles.switch_double")

#: (resource, has id, method) the switch serves
_ALLOWED = {
    ("parties", True, "GET"),
    ("parties", True, "PUT"),
    ("quotes", False, "POST"),
    ("quotes", True, "GET"),
    ("quotes", True, "PUT"),
    ("transfers", False, "POST"),
    ("transfers", True, "GET"),
    ("transfers", True, "PUT"),
}

#: fields the switch itself relies on (checked when full schema validation is off)
_REQUIRED: dict[tuple[str, str, bool], tuple[str, ...]] = {
    ("POST", "quotes", False): (
        "quoteId",
        "transactionId",
        "payee",
        "payer",
        "amountType",
        "amount",
        "transactionType",
    ),
    ("POST", "transfers", False): (
        "transferId",
        "payeeFsp",
        "payerFsp",
        "amount",
        "ilpPacket",
        "condition",
        "expiration",
    ),
    ("PUT", "parties", False): ("party",),
    ("PUT", "quotes", False): ("transferAmount", "expiration", "ilpPacket", "condition"),
    ("PUT", "transfers", False): ("transferState",),
    ("PUT", "parties", True): ("errorInformation",),
    ("PUT", "quotes", True): ("errorInformation",),
    ("PUT", "transfers", True): ("errorInformation",),
}


def check_route(method: str, path: str) -> Route:
    route = parse_path(path)
    if (route.resource, route.id is not None, method) not in _ALLOWED or (
        route.error and method != "PUT"
    ):
        raise FspiopError("3002", f"{method} {path} is not served by the switch double")
    return route


def check_headers(method: str, path: str, headers: Mapping[str, str]) -> str:
    """The FSPIOP version of the request, after the mandatory and media-type headers."""
    missing = fh.missing_mandatory(method, headers)
    if missing:
        raise FspiopError("3102", f"missing header {', '.join(missing)}")
    version: str | None = None
    accept = fh.get(headers, "Accept")
    if method in ("GET", "POST") and accept is not None:
        version = fh.negotiate(accept, path)
    if method in ("POST", "PUT"):
        version = fh.content_version(headers, path)
    return version or fh.SUPPORTED_VERSIONS[-1]


async def read_body(headers: Mapping[str, str], stream: AsyncIterator[bytes]) -> bytes:
    """The body, refusing (3104) anything over 5 MB before reading it all."""
    declared = fh.get(headers, "Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > fh.MAX_BODY_BYTES:
        raise FspiopError("3104", f"body of {declared} bytes is over {fh.MAX_BODY_BYTES}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > fh.MAX_BODY_BYTES:
            raise FspiopError("3104", f"body is over {fh.MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_body(method: str, raw: bytes) -> dict[str, Any] | None:
    if method == "GET":
        return None
    try:
        body = json.loads(raw)
    except ValueError as err:
        raise FspiopError("3101", f"body is not JSON: {err}") from err
    if not isinstance(body, dict):
        raise FspiopError("3101", "body is not a JSON object")
    return body


def check_body(method: str, route: Route, body: dict[str, Any] | None) -> None:
    """Fields the switch needs to route and check (full validation is the schemas' job)."""
    if body is None:
        return
    for name in _REQUIRED.get((method, route.resource, route.error), ()):
        if name not in body:
            raise FspiopError("3102", f"/{name} is required")
    if method == "POST":
        key = "quoteId" if route.resource == "quotes" else "transferId"
        if not isinstance(body[key], str) or not is_fspiop_id(body[key]):
            raise FspiopError("3100", f"/{key} {body[key]!r} is not a UUID or ULID")
    if method == "POST" and route.resource == "transfers":
        parse_time(body["expiration"], "/expiration")
        for name in ("condition", "ilpPacket", "payeeFsp", "payerFsp"):
            if not isinstance(body[name], str):
                raise FspiopError("3100", f"/{name} must be a string")


def check_schema(version: str, method: str, path: str, body: dict[str, Any]) -> None:
    """The official OpenAPI's verdict (3100/3102), when it can be had.

    Some official patterns (names) use `\\p{L}` classes that Python's `re` cannot compile; a
    body that reaches one is let through rather than answered with a 500.
    """
    try:
        schemas(version).validate(method, path, body)
    except re.error as err:
        log.debug("schema pattern not checkable for %s %s: %s", method, path, err)


def check_path_id(route: Route) -> None:
    if route.resource in ("quotes", "transfers") and route.id and not is_fspiop_id(route.id):
        raise FspiopError("3100", f"{route.resource} id {route.id!r} is not a UUID or ULID")


def message(
    method: str,
    path: str,
    headers: Mapping[str, str],
    version: str,
    body: dict[str, Any] | None,
    raw: bytes,
) -> Message:
    passthrough = {name: v for name in PASSTHROUGH if (v := fh.get(headers, name)) is not None}
    return Message(
        method=method,
        path=path,
        source=fh.get(headers, "FSPIOP-Source") or "",
        destination=fh.get(headers, "FSPIOP-Destination") or None,
        body=body,
        version=version,
        raw=raw if body is not None else None,
        passthrough=passthrough,
    )
