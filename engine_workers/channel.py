"""The channel API of one engine (PH-EE's interface for apps, USSD and agents).

`POST /channel/transfer` starts a payer transfer on this engine; `GET /channel/transfer/{id}`
answers from the engine's payment store, so a channel sees FAILED as FAILED even when the back
office is down. `X-CorrelationID` makes a retried request return the first payment, on any
worker process of the engine (the store is shared); a retry of a payment whose start was lost
starts it (`engine_workers.starting`: never twice in effect). A payment is answered FAILED only
when the engine certainly has no instance for it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from engine_workers.admission import Admission
from engine_workers.runtime import Runtime, iso_duration
from engine_workers.starting import PayerStarts, Started, start_payment
from phee.engine import EngineError
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


def create_app(
    rt: Runtime,
    starts: PayerStarts,
    ready: Callable[[], bool],
    on_stop: Callable[[], Awaitable[None]] | None = None,
    admission: Admission | None = None,
) -> FastAPI:
    """The channel API; `starts` creates payer instances on the engine.

    `admission` (default: from the settings' `max_open_payments`) refuses a new payment with
    503 and `Retry-After` while the engine is full; the refusal stores and starts nothing.

    `on_stop` runs when uvicorn ends the lifespan (requests in flight are done by then). Work
    that must end with the process belongs there: uvicorn re-raises the SIGTERM it caught as
    soon as `serve()` returns, so code after `serve()` never runs on a signal.
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if on_stop is not None:
            await on_stop()

    app = FastAPI(
        title=f"phee channel API ({rt.settings.name})", version="0.1.0", lifespan=lifespan
    )
    instrument(app, ready=ready)
    s = rt.settings
    door = admission or Admission(
        rt.store.count_open, s.max_open_payments, refresh_s=s.open_payments_refresh_ms / 1000
    )

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
        verdict = await door.admit()
        if not verdict.admitted:
            log.warning(
                "payment refused: %d payer payments open, limit %d",
                verdict.open_payments,
                verdict.limit,
            )
            err = FspiopError(
                "2003",
                f"the engine is full ({verdict.open_payments} payments in flight, limit "
                f"{verdict.limit}); nothing was started, retry later",
            )
            return JSONResponse(err.body(), status_code=503, headers={"Retry-After": "1"})
        transaction_id = ids.new_id(s.slot, s.id_kind)
        bind_transaction(transaction_id)  # this request's log lines carry it
        request = body.model_dump(exclude_none=True)
        variables = {
            **request,
            "transactionId": transaction_id,
            "quoteId": ids.new_id(s.slot, s.id_kind),
            "transferId": ids.new_id(s.slot, s.id_kind),
            "tenant": tenant,
            "payerFsp": s.fsp_id,
            "transferWait": iso_duration(s.transfer_wait_s),
        }
        if correlation_id is not None:  # no variable for nothing: each costs rows per payment
            variables["correlationId"] = correlation_id
        # The whole start is kept, so that a retry can start exactly this payment again.
        payment, created = await rt.store.create(
            transaction_id,
            tenant=tenant,
            correlation_id=correlation_id,
            direction="PAYER",
            request=variables,
        )
        if not created:
            bind_transaction(payment.transaction_id)
            started_before = payment.instance_id is not None or payment.status != "RECEIVED"
            if started_before or await _known(starts, payment.transaction_id):
                return JSONResponse(_view(payment), status_code=200)
            variables = payment.request  # a retry of a payment whose start was lost
            transaction_id = payment.transaction_id
        started = await start_payment(starts, transaction_id, variables, attempts=s.start_attempts)
        if started == Started.REFUSED:
            await rt.store.set_status(
                transaction_id, "FAILED", "the engine did not accept the payment; nothing was sent"
            )
            raise FspiopError("2003", "the engine did not accept the payment")
        # UNKNOWN: the engine may have it; the client polls (or retries with its correlation id).
        return JSONResponse(
            {"transactionId": transaction_id, "status": "RECEIVED"},
            status_code=202 if created else 200,
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


async def _known(starts: PayerStarts, transaction_id: str) -> bool:
    """Whether the engine has an instance; when it cannot say, assume it has (never start twice
    on a guess: the client keeps polling or retrying)."""
    try:
        return await starts.known(transaction_id)
    except EngineError:
        return True


def _view(payment: Any) -> dict[str, Any]:
    return {
        "transactionId": payment.transaction_id,
        "correlationId": payment.correlation_id,
        # the ids this payment carries at the switch (for the operator and reconciliation)
        "quoteId": payment.request.get("quoteId"),
        "transferId": payment.request.get("transferId"),
        "status": payment.status,
        "reason": payment.reason,
        "final": payment.final,
        "createdAt": payment.created_at.isoformat(),
        "updatedAt": payment.updated_at.isoformat(),
    }
