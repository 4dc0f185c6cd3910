"""Builders for callback router tests: FSPIOP bodies and headers, signing keys, registries."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from callback_router.app import create_app
from callback_router.delivery import DeliveryError
from callback_router.routing import Publish
from callback_router.service import RouterService
from callback_router.settings import RouterSettings
from phee.contract import EngineInfo, EngineRegistry
from phee.fspiop import headers as fh
from phee.fspiop import ids, ilp, jws

PAYER = "payerfsp"
PAYEE = "payeefsp"
ADMIN_TOKEN = "router-admin-token-for-tests"
ILP_SECRET = "router-test-secret"


def write_registry(path: Path, *engines: EngineInfo) -> Path:
    path.write_text(EngineRegistry(engines=list(engines)).model_dump_json(indent=2))
    return path


def new_key_pair() -> tuple[bytes, bytes]:
    """An EC P-256 (ES256) private and public key, PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def request(
    method: str,
    path: str,
    body: Any = None,
    *,
    source: str = PAYER,
    destination: str | None = PAYEE,
    version: str = "1.1",
    key: bytes | None = None,
) -> tuple[dict[str, str], bytes]:
    """Headers and raw body of an FSPIOP request, signed with `key` when given (not GETs)."""
    headers = fh.request_headers(
        method=method, path=path, source=source, destination=destination, version=version
    )
    raw = b"" if body is None else jws.canonical_body(body)
    if key is not None and raw and jws.signature_required(method, path):
        headers["FSPIOP-URI"] = jws.fspiop_uri(path)
        headers["FSPIOP-HTTP-Method"] = method.upper()
        headers["FSPIOP-Signature"] = jws.sign(
            method=method, uri=path, headers=headers, body=raw, private_key_pem=key
        )
    return headers, raw


def _expiration(seconds: int = 60) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def party_info(msisdn: str = "27710101") -> dict[str, Any]:
    return {"partyIdType": "MSISDN", "partyIdentifier": msisdn}


def quote_post(quote_id: str | None = None, transaction_id: str | None = None) -> dict[str, Any]:
    """A `POST /quotes` body (ids made by the payer, slot 900 on its side)."""
    return {
        "quoteId": quote_id or ids.new_uuid(900),
        "transactionId": transaction_id or ids.new_uuid(900),
        "payee": {"partyIdInfo": {**party_info("27710101"), "fspId": PAYEE}},
        "payer": {"partyIdInfo": {**party_info("27710202"), "fspId": PAYER}},
        "amountType": "SEND",
        "amount": {"amount": "10.5", "currency": "USD"},
        "transactionType": {
            "scenario": "TRANSFER",
            "initiator": "PAYER",
            "initiatorType": "CONSUMER",
        },
    }


def ilp_for(quote: dict[str, Any]) -> ilp.IlpResponse:
    """The v1 packet, condition and fulfilment a payee would make for `quote`."""
    transaction = {
        "quoteId": quote["quoteId"],
        "transactionId": quote["transactionId"],
        "transactionType": quote["transactionType"],
        "payee": quote["payee"],
        "payer": quote["payer"],
        "expiration": _expiration(),
        "amount": quote["amount"],
    }
    return ilp.v1_response(transaction, ILP_SECRET)


def quote_put(quote: dict[str, Any] | None = None) -> dict[str, Any]:
    """A `PUT /quotes/{id}` body."""
    response = ilp_for(quote or quote_post())
    return {
        "transferAmount": {"amount": "10.5", "currency": "USD"},
        "expiration": _expiration(),
        "ilpPacket": response.packet,
        "condition": response.condition,
    }


def transfer_post(transfer_id: str, quote: dict[str, Any]) -> dict[str, Any]:
    """A `POST /transfers` body carrying the ILP packet made for `quote`."""
    response = ilp_for(quote)
    return {
        "transferId": transfer_id,
        "payeeFsp": PAYEE,
        "payerFsp": PAYER,
        "amount": {"amount": "10.5", "currency": "USD"},
        "ilpPacket": response.packet,
        "condition": response.condition,
        "expiration": _expiration(),
    }


def transfer_put(state: str = "COMMITTED") -> dict[str, Any]:
    return {"transferState": state, "completedTimestamp": _expiration(0)}


def transfer_patch() -> dict[str, Any]:
    return {"transferState": "COMMITTED", "completedTimestamp": _expiration(0)}


def parties_put(msisdn: str = "27710101") -> dict[str, Any]:
    return {"party": {"partyIdInfo": {**party_info(msisdn), "fspId": PAYEE}, "name": "Ann"}}


def error_body(code: str = "3204", description: str = "Party not found") -> dict[str, Any]:
    return {"errorInformation": {"errorCode": code, "errorDescription": description}}


def error_of(response_json: Any) -> tuple[str, str]:
    """(errorCode, errorDescription) of an FSPIOP error answer."""
    info = response_json["errorInformation"]
    return str(info["errorCode"]), str(info["errorDescription"])


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


class RecordingDelivery:
    """Records what the router would publish or start; engines in `unreachable` fail.

    Only for in-process tests: tests/integration/test_router_delivery.py proves the real
    engine delivery the same router code uses.
    """

    def __init__(self) -> None:
        self.published: list[Publish] = []
        self.started: list[tuple[str, str, dict[str, Any]]] = []
        self.unreachable: set[str] = set()

    async def publish(self, engine: EngineInfo, message: Publish) -> None:
        if engine.name in self.unreachable:
            raise DeliveryError(engine.name, "unreachable", retryable=True, ambiguous=False)
        self.published.append(message)

    async def start(self, engine: EngineInfo, process_id: str, variables: dict[str, Any]) -> str:
        if engine.name in self.unreachable:
            raise DeliveryError(engine.name, "unreachable", retryable=True, ambiguous=False)
        self.started.append((engine.name, process_id, variables))
        return str(len(self.started))

    async def close(self) -> None:
        return None


@dataclass
class Harness:
    """An in-process router (real app, SQLite, schemas, keys) with a recording delivery."""

    client: httpx.AsyncClient
    delivery: RecordingDelivery
    service: RouterService
    key: bytes | None

    async def send(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        drop: tuple[str, ...] = (),
        change: dict[str, str] | None = None,
        raw: bytes | None = None,
        key: bytes | str | None = "default",
        source: str = PAYER,
    ) -> httpx.Response:
        """An FSPIOP request, signed with the harness key unless `key` says otherwise."""
        signing_key = self.key if key == "default" else key
        assert not isinstance(signing_key, str)
        headers, data = request(method, path, body, key=signing_key, source=source)
        for name in drop:
            del headers[name]
        headers.update(change or {})
        return await self.client.request(
            method, path, headers=headers, content=data if raw is None else raw
        )

    async def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """An admin API call with the admin token."""
        return await self.client.request(
            method, f"/admin{path}", json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )

    async def assert_untouched(self) -> None:
        """Nothing delivered, nothing started, nothing stored."""
        assert self.delivery.published == []
        assert self.delivery.started == []
        counts = await self.service.state.counts()
        assert len(counts) == 3
        assert counts == dict.fromkeys(counts, 0)
        stats = await self.service.outbox.stats()
        assert (stats.pending, stats.dead) == (0, 0)


@asynccontextmanager
async def in_process_router(
    tmp_path: Path,
    *engines: EngineInfo,
    signed: bool = False,
    switch_transport: httpx.AsyncBaseTransport | None = None,
    **settings: Any,
) -> AsyncIterator[Harness]:
    """Start the router app in this event loop (lifespan included) and talk to it over ASGI."""
    key: bytes | None = None
    if signed:
        keys = tmp_path / "keys"
        keys.mkdir()
        key, public = new_key_pair()
        (keys / f"{PAYER}.pem").write_bytes(public)
        settings["jws_keys_dir"] = keys
    settings.setdefault("admin_token", ADMIN_TOKEN)
    config = RouterSettings(
        fsp_id=PAYEE,
        registry_file=write_registry(tmp_path / "engines.json", *engines),
        database_url=f"sqlite:///{tmp_path / 'router.db'}",
        **settings,
    )
    delivery = RecordingDelivery()
    app = create_app(config, delivery=delivery, switch_transport=switch_transport)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            del client.headers["accept"]  # httpx's default */* would hide a missing Accept
            yield Harness(client, delivery, app.state.service, key)
