"""The channel API of one engine (PH-EE's interface for apps, USSD and agents).

`POST /channel/transfer` starts a payer transfer on this engine; `GET /channel/transfer/{id}`
answers from the engine's own payment store, so a channel sees FAILED as FAILED even when the
back office is down. `X-CorrelationID` makes a retried request return the first payment.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from engine_workers.runtime import Runtime
from phee.fspiop import ids
from phee.fspiop.errors import FspiopError
from phee.service import bind_transaction, instrument

log = logging.getLogger("engine_workers.channel")

AMOUNT_PATTERN = r"^([0]|([1-9][0-9]{0,17}))([.][0-9]{0,3}[1-9])?$"
PartyIdType = Literal[
    "MSISDN", "EMAIL", "PERSONAL_ID", "BUSINESS", "DEVICE", "ACCOUNT_ID", "IBAN", "ALIAS"
]


class PartyIdInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    partyIdType: PartyIdType
    partyIdentifier: str = Field(min_length=1, max_length=128)
    partySubIdOrType: str | None = Field(default=None, min_length=1, max_length=128)


class Party(BaseModel):
    model_config = ConfigDict(extra="forbid")
    partyIdInfo: PartyIdInfo


class Money(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: str = Field(pattern=AMOUNT_PATTERN)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class TransferRequest(BaseModel):
    """PH-EE's channel transfer request."""

    model_config = ConfigDict(extra="forbid")
    payer: Party
    payee: Party
    amount: Money
    note: str | None = Field(default=None, max_length=128)


StartProcess = Callable[[dict[str, Any]], Awaitable[int]]


def create_app(rt: Runtime, start_process: StartProcess, ready: Callable[[], bool]) -> FastAPI:
    """The channel API; `start_process` creates the payer instance (Zeebe, injected for tests)."""
    app = FastAPI(title=f"phee channel API ({rt.settings.name})", version="0.1.0")
    instrument(app, ready=ready)
    s = rt.settings

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = "/".join(str(p) for p in first["loc"][1:]) or str(first["loc"][0])
        code = "3102" if first["type"] == "missing" else "3100"
        err = FspiopError(code, f"{where}: {first['msg']}")
        return JSONResponse(err.body(), status_code=err.http_status)

    @app.exception_handler(FspiopError)
    async def fspiop_error(request: Request, exc: FspiopError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.http_status)

    @app.post("/channel/transfer", status_code=202)
    async def transfer(
        body: TransferRequest,
        tenant: Annotated[str, Header(alias="Platform-TenantId", min_length=1, max_length=64)],
        correlation_id: Annotated[
            str | None, Header(alias="X-CorrelationID", min_length=1, max_length=128)
        ] = None,
    ) -> JSONResponse:
        transaction_id = ids.new_id(s.slot, s.id_kind)
        bind_transaction(transaction_id)  # this request's log lines carry it
        request = body.model_dump(exclude_none=True)
        payment, created = await rt.store.create(
            transaction_id,
            tenant=tenant,
            correlation_id=correlation_id,
            direction="PAYER",
            request=request,
        )
        if not created:
            return JSONResponse(_view(payment), status_code=200)
        variables = {
            **request,
            "transactionId": transaction_id,
            "quoteId": ids.new_id(s.slot, s.id_kind),
            "transferId": ids.new_id(s.slot, s.id_kind),
            "tenant": tenant,
            "payerFsp": s.fsp_id,
            "correlationId": correlation_id,
            "partyWait": s.party_wait,
            "quoteWait": s.quote_wait,
            "statusWait": s.status_wait,
            "transferWait": "PT60S",  # replaced when the transfer is sent
        }
        try:
            await start_process(variables)
        except Exception as err:
            log.exception("engine refused payment %s", transaction_id)
            await rt.store.set_status(
                transaction_id, "FAILED", f"engine refused the payment: {err}"
            )
            raise FspiopError("2003", "the engine did not accept the payment") from err
        return JSONResponse(
            {"transactionId": transaction_id, "status": "RECEIVED"}, status_code=202
        )

    @app.post("/internal/resend/{resource}/{ident}", include_in_schema=False)
    async def resend(resource: Literal["quotes", "transfers"], ident: str) -> JSONResponse:
        """The router asks: send our last answer to this quote or transfer again.

        Only finished requests have one; a request still in flight gets 404 and its answer
        comes when it is done (FSPIOP: a resend in flight is ignored).
        """
        sent = await rt.store.sent(resource, ident)
        if sent is None:
            raise FspiopError("3200", f"no answer sent yet for {resource} {ident}")
        await rt.fspiop.send(
            "PUT", sent.path, body=sent.body, destination=sent.destination, version=sent.version
        )
        return JSONResponse({"resent": sent.path})

    @app.get("/channel/transfer/{transaction_id}")
    async def status(
        transaction_id: str,
        tenant: Annotated[str, Header(alias="Platform-TenantId", min_length=1, max_length=64)],
    ) -> JSONResponse:
        payment = await rt.store.get(transaction_id)
        if payment is None or payment.tenant != tenant:  # another tenant's payment: not found
            raise FspiopError("3208", f"no transfer {transaction_id}")
        return JSONResponse(_view(payment))

    return app


def _view(payment: Any) -> dict[str, Any]:
    return {
        "transactionId": payment.transaction_id,
        "correlationId": payment.correlation_id,
        "status": payment.status,
        "reason": payment.reason,
        "final": payment.final,
        "createdAt": payment.created_at.isoformat(),
        "updatedAt": payment.updated_at.isoformat(),
    }
