"""HTTP face of the reference AMS: FSPIOP-style JSON in and out, every error an `errorInformation`.

The ledger uses blocking SQLAlchemy, so each request hands its ledger call to the thread pool
(Starlette's, which FastAPI uses for plain `def` endpoints) once: the money operations are plain
`def`s answering with a `JSONResponse`; the endpoints answering with a dict are `async` and hand
only the ledger call to the pool, because FastAPI validates a sync endpoint's dict in the pool
again (a second handoff, costing more CPU than the validation); the exception handlers are
`async`, so a refusal costs no handoff of its own. Concurrency control lives in the database,
not in this process, so several processes may serve the same database. Request models check
shape only (types, required and unknown fields); the ledger checks meaning (amount formats,
currencies, ids) so that direct callers get the same errors.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from doubles.reference_ams.db import make_engine
from doubles.reference_ams.ledger import Ledger
from doubles.reference_ams.model import LedgerError, Outcome, Party
from doubles.reference_ams.settings import AmsSettings
from phee.fspiop.errors import FspiopError
from phee.service import instrument
from phee.sql import SqlError

log = logging.getLogger("doubles.reference_ams")

#: header set on a money operation's answer when it is the stored answer to an earlier request
REPLAY_HEADER = "X-Idempotent-Replay"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PartyIdInfo(_Strict):
    partyIdType: str
    partyIdentifier: str

    def party(self) -> Party:
        return Party(self.partyIdType, self.partyIdentifier)


class Money(_Strict):
    amount: str
    currency: str


class NewAccount(_Strict):
    partyIdType: str
    partyIdentifier: str
    currency: str
    name: str
    openingBalance: str = "0"


class QuoteRequest(_Strict):
    transactionId: str
    quoteId: str
    payee: PartyIdInfo
    amount: Money
    amountType: Literal["SEND", "RECEIVE"]


class BlockRequest(_Strict):
    payer: PartyIdInfo
    amount: Money


class CreditRequest(_Strict):
    payee: PartyIdInfo
    amount: Money


def _error(status: int, error: FspiopError) -> JSONResponse:
    return JSONResponse(status_code=status, content=error.body())


def _field(loc: tuple[Any, ...]) -> str:
    """`("body", "payer", "partyIdType")` -> `payer.partyIdType`."""
    parts = [str(p) for p in loc if p not in ("body", "path", "query")]
    return ".".join(parts) or "body"


def validation_error(exc: RequestValidationError) -> FspiopError:
    """Pydantic's first complaint as FSPIOP: 3101 unparsable, 3102 missing, else 3100."""
    errors = exc.errors()
    if not errors:
        return FspiopError("3100", "body")
    first = errors[0]
    kind, field = str(first.get("type", "")), _field(tuple(first.get("loc", ())))
    if kind == "json_invalid":
        return FspiopError("3101", "body is not valid JSON")
    if kind == "missing":
        return FspiopError("3102", field)
    if kind == "extra_forbidden":
        return FspiopError("3100", f"{field}: unexpected element")
    return FspiopError("3100", f"{field}: {first.get('msg', 'invalid')}")


def create_app(settings: AmsSettings | None = None, *, ledger: Ledger | None = None) -> FastAPI:
    """The AMS app over `settings.database_url` (or an existing `ledger`, for tests)."""
    settings = settings or AmsSettings()
    books = ledger or Ledger(make_engine(settings.database_url, pool_size=settings.pool_size))
    if settings.create_schema:
        books.create_schema()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if ledger is None:  # ours to close; a ledger passed in belongs to the caller
            books.engine.dispose()

    app = FastAPI(title="phee reference AMS", lifespan=lifespan)
    registry = CollectorRegistry()
    operations = Counter(
        "phee_ams_operations",
        "AMS requests by operation and outcome (ok, replayed, or the FSPIOP error code)",
        ["operation", "outcome"],
        registry=registry,
    )
    instrument(app, registry=registry, ready=books.ping)
    app.state.ledger = books

    def count(request: Request, outcome: str) -> None:
        route = request.scope.get("route")
        operations.labels(getattr(route, "name", "unknown"), outcome).inc()

    def answer(request: Request, outcome: Outcome) -> JSONResponse:
        count(request, "replayed" if outcome.replayed else "ok")
        log.info(
            "%s %s %s",
            getattr(request.scope.get("route"), "name", "?"),
            outcome.body.get("transactionId"),
            "replayed" if outcome.replayed else outcome.body.get("state"),
        )
        headers = {REPLAY_HEADER: "true"} if outcome.replayed else None
        return JSONResponse(outcome.body, headers=headers)

    @app.exception_handler(LedgerError)
    async def on_ledger_error(request: Request, exc: LedgerError) -> JSONResponse:
        count(request, exc.code)
        log.info("%s refused: %s", request.url.path, exc.error.description)
        return _error(exc.status, exc.error)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        error = validation_error(exc)
        count(request, error.code)
        return _error(400, error)

    @app.exception_handler(HTTPException)
    async def on_http(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return _error(404, FspiopError("3002", request.url.path))
        return _error(exc.status_code, FspiopError("3000", str(exc.detail)))

    @app.exception_handler(SqlError)
    async def on_database_error(request: Request, exc: SqlError) -> JSONResponse:
        if not exc.retryable:
            count(request, "2001")
            log.error("database error: %s", exc)
            return _error(500, FspiopError("2001", "the ledger database failed"))
        count(request, "2003")
        log.warning("database unavailable: %s", exc)
        return _error(503, FspiopError("2003", "the ledger database is unavailable"))

    @app.post("/accounts", status_code=201, name="open_account")
    async def open_account(request: Request, body: NewAccount) -> dict[str, Any]:
        party = Party(body.partyIdType, body.partyIdentifier)
        result = await run_in_threadpool(
            books.open_account, party, body.currency, body.name, body.openingBalance
        )
        count(request, "ok")
        return result

    @app.get("/parties/{partyIdType}/{partyIdentifier}", name="party")
    async def party(partyIdType: str, partyIdentifier: str) -> dict[str, Any]:
        return await run_in_threadpool(books.party, Party(partyIdType, partyIdentifier))

    @app.get("/accounts/{partyIdType}/{partyIdentifier}", name="account")
    async def account(
        partyIdType: str, partyIdentifier: str, currency: str | None = None
    ) -> dict[str, Any]:
        return await run_in_threadpool(books.account, Party(partyIdType, partyIdentifier), currency)

    @app.post("/quotes", name="quote")
    async def quote(request: Request, body: QuoteRequest) -> dict[str, Any]:
        result = await run_in_threadpool(
            books.quote,
            body.transactionId,
            body.quoteId,
            body.payee.party(),
            body.amount.amount,
            body.amount.currency,
        )
        count(request, "ok")
        return result

    @app.post("/transfers/{transactionId}/block", name="block")
    def block(request: Request, transactionId: str, body: BlockRequest) -> JSONResponse:
        outcome = books.block(
            transactionId, body.payer.party(), body.amount.amount, body.amount.currency
        )
        return answer(request, outcome)

    @app.post("/transfers/{transactionId}/book", name="book")
    def book(request: Request, transactionId: str) -> JSONResponse:
        return answer(request, books.book(transactionId))

    @app.post("/transfers/{transactionId}/release", name="release")
    def release(request: Request, transactionId: str) -> JSONResponse:
        return answer(request, books.release(transactionId))

    @app.post("/transfers/{transactionId}/credit", name="credit")
    def credit(request: Request, transactionId: str, body: CreditRequest) -> JSONResponse:
        outcome = books.credit(
            transactionId, body.payee.party(), body.amount.amount, body.amount.currency
        )
        return answer(request, outcome)

    @app.get("/transfers/{transactionId}", name="transfer")
    async def transfer(transactionId: str) -> dict[str, Any]:
        return await run_in_threadpool(books.transfer, transactionId)

    @app.get("/ledger/check", name="ledger_check")
    async def ledger_check() -> dict[str, Any]:
        return await run_in_threadpool(books.check)

    return app
