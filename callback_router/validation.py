"""Synchronous validation of inbound FSPIOP requests, before anything is routed or stored.

The order is fixed so every peer gets the same answer for the same fault: size (3104), missing
mandatory headers (3102), Content-Type/Accept (3101, 406/3001), JSON syntax (3101), schema and
path parameters (3100/3102), signature (3105). Only a request that passes every check becomes
an `Inbound`, the one thing routing ever sees; a failure raises `FspiopError` and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from phee.fspiop import headers as fh
from phee.fspiop import ids, ilp, jws
from phee.fspiop.errors import FspiopError
from phee.fspiop.schemas import schemas

#: the union of PartyIdType over FSPIOP 1.1 and 2.0
PARTY_ID_TYPES = frozenset(
    {
        "MSISDN",
        "EMAIL",
        "PERSONAL_ID",
        "BUSINESS",
        "DEVICE",
        "ACCOUNT_ID",
        "IBAN",
        "ALIAS",
        "CONSENT",
        "THIRD_PARTY_LINK",
    }
)
#: headers handed to the engine with each message (canonical spelling)
FORWARDED_HEADERS = (
    "Content-Type",
    "Accept",
    "Date",
    "FSPIOP-Source",
    "FSPIOP-Destination",
    "FSPIOP-Signature",
    "FSPIOP-URI",
    "FSPIOP-HTTP-Method",
    "FSPIOP-Encryption",
    "traceparent",
    "tracestate",
)


@dataclass(frozen=True)
class Inbound:
    """A request that passed validation."""

    method: str
    path: str
    resource: str
    headers: dict[str, str]  # as received (lower-case names)
    raw: bytes
    body: Any  # parsed JSON, None for GET
    version: str  # FSPIOP version of the body (GET/POST: the negotiated answer version)
    answer_version: str  # what to answer in (Accept for GET/POST, Content-Type otherwise)
    content_hash: str  # sha256 of the canonical body: equal for equal content

    @property
    def source(self) -> str:
        return self.headers["fspiop-source"]

    def forwarded_headers(self) -> dict[str, str]:
        """The FSPIOP headers an engine may need (tracing, source, destination, signature)."""
        out: dict[str, str] = {}
        for name in FORWARDED_HEADERS:
            value = fh.get(self.headers, name)
            if value is not None:
                out[name] = value
        return out


async def read_body(request: Request, limit: int = fh.MAX_BODY_BYTES) -> bytes:
    """The raw body, refused with 3104 as soon as it is known to exceed `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise FspiopError("3104", f"body of {declared} bytes exceeds {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise FspiopError("3104", f"body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def content_hash(body: Any, raw: bytes) -> str:
    """sha256 of the body as canonical JSON, so a resend re-serialised differently still matches."""
    try:
        data = jws.canonical_body(body)
    except ValueError:  # a number JavaScript would print differently: compare the bytes
        data = raw
    return hashlib.sha256(data).hexdigest()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise FspiopError("3101", "the request has no body")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FspiopError("3101", f"body is not valid JSON: {exc}") from exc


def _check_path(params: Mapping[str, str]) -> None:
    """Path parameters the schemas do not cover: ids and party types."""
    for name, value in params.items():
        if name == "Type" and value not in PARTY_ID_TYPES:
            raise FspiopError("3100", f"path parameter Type {value!r} is not a PartyIdType")
        if name in ("ID", "SubId") and not 1 <= len(value) <= 128:
            raise FspiopError("3100", f"path parameter {name} must have 1 to 128 characters")
        if name == "RequestID" and not ids.is_fspiop_id(value):
            raise FspiopError("3100", f"path parameter ID {value!r} is not a UUID or ULID")


def validate_request(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    raw: bytes,
    params: Mapping[str, str],
    keys: jws.PeerKeys | None,
    put_parties_signed: bool = False,
) -> Inbound:
    """All synchronous checks in FSPIOP order; `params` are the path parameters by name
    (`RequestID` for a quote/transfer id, `Type`/`ID`/`SubId` for a party)."""
    method = method.upper()
    if len(raw) > fh.MAX_BODY_BYTES:
        raise FspiopError("3104", f"body exceeds {fh.MAX_BODY_BYTES} bytes")
    missing = fh.missing_mandatory(method, headers)
    if missing:
        raise FspiopError("3102", f"{missing[0]} header is missing")
    resource = fh.resource_of(path)
    answer_version = ""
    if method in ("GET", "POST"):
        answer_version = fh.negotiate(fh.get(headers, "Accept") or "", path)
    if method == "GET":
        if raw.strip():
            raise FspiopError("3100", f"GET {path} takes no body")
        version, body = answer_version, None
    else:
        version = fh.content_version(headers, path)
        answer_version = answer_version or version
        body = _parse_json(raw)
    schemas(version).validate(method, path, body)
    _check_path(params)
    if keys is not None and jws.signature_required(method, path, put_parties=put_parties_signed):
        target = f"{path}?{query}" if query else path
        try:
            jws.verify_request(method=method, path=target, headers=headers, body=raw, keys=keys)
        except ValueError as exc:  # JwsError, or a peer key file that cannot be read
            raise FspiopError("3105", str(exc)) from exc
    return Inbound(
        method=method,
        path=path,
        resource=resource,
        headers={k.lower(): v for k, v in headers.items()},
        raw=raw,
        body=body,
        version=version,
        answer_version=answer_version,
        content_hash=content_hash(body, raw),
    )


def ilp_transaction_id(body: Mapping[str, Any]) -> str:
    """The transactionId inside a `POST /transfers` ILP packet (3100 naming ilpPacket)."""
    try:
        decoded = ilp.decode(str(body["ilpPacket"]))
    except ilp.IlpError as exc:
        raise FspiopError("3100", f"/ilpPacket cannot be decoded: {exc}") from exc
    transaction_id = decoded.transaction.get("transactionId")
    if not isinstance(transaction_id, str) or not transaction_id:
        raise FspiopError("3100", "/ilpPacket data has no transactionId")
    return transaction_id
