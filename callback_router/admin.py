"""The router's small admin API: engine states, party waits, outbox and duplicate views.

Callers are the operator (engine states during upgrades), the engines (party waits, before they
send `GET /parties`) and SREs. Bodies are parsed by hand like the FSPIOP ones, so errors are
plain 400s with a reason, never FastAPI's 422. Optional bearer token (`PHEE_ROUTER_ADMIN_TOKEN`).
"""

from __future__ import annotations

import hmac
import re
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from callback_router.registry import UnknownEngine
from callback_router.routing import PartyWait
from callback_router.service import RouterService
from callback_router.validation import PARTY_ID_TYPES
from phee.contract import EngineState

_PARTY = re.compile(r"^(?P<type>[A-Z_]+)/(?P<id>[^/]{1,128})(/(?P<sub>[^/]{1,128}))?$")
#: longest wait an engine may register (a payer's lookup never waits longer than this)
MAX_WAIT_S = 3600.0


class StateChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: EngineState


class PartyWaitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    party: str
    transaction_id: str = Field(alias="transactionId", min_length=1, max_length=64)
    engine: str
    expires_in_s: float | None = Field(default=None, alias="expiresInS", gt=0, le=MAX_WAIT_S)


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


def admin_router(service: RouterService) -> APIRouter:
    """Routes under `/admin`, bound to one service."""
    router = APIRouter(prefix="/admin")
    token = service.settings.secret("admin_token")

    def denied(request: Request) -> JSONResponse | None:
        given = request.headers.get("authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return None
        return _error(401, "admin token required")

    @router.get("/engines")
    async def engines(request: Request) -> Response:
        if (refused := denied(request)) is not None:
            return refused
        registry = service.registry.get()
        return JSONResponse(registry.model_dump(mode="json"))

    @router.put("/engines/{name}/state")
    async def set_state(request: Request, name: str) -> Response:
        if (refused := denied(request)) is not None:
            return refused
        try:
            change = StateChange.model_validate_json(await request.body())
        except ValidationError as exc:
            return _error(400, _first_error(exc))
        try:
            engine = service.registry.set_state(name, change.state)
        except UnknownEngine:
            return _error(404, f"no engine named {name!r}")
        if engine.state != EngineState.DOWN:  # an engine coming back gets its backlog now
            await service.outbox.retry_now(engine.name)
        return JSONResponse(engine.model_dump(mode="json"))

    @router.post("/party-waits")
    async def add_party_wait(request: Request) -> Response:
        if (refused := denied(request)) is not None:
            return refused
        try:
            wanted = PartyWaitRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            return _error(400, _first_error(exc))
        match = _PARTY.match(wanted.party)
        if match is None or match["type"] not in PARTY_ID_TYPES:
            return _error(400, f"party {wanted.party!r} is not Type/ID[/SubId]")
        if service.registry.get().by_name(wanted.engine) is None:
            return _error(400, f"no engine named {wanted.engine!r}")
        lifetime = wanted.expires_in_s or service.settings.party_wait_default_s
        wait = PartyWait(wanted.party, wanted.transaction_id, wanted.engine, time.time() + lifetime)
        await service.state.add_party_wait(wait)
        body = {**wanted.model_dump(by_alias=True), "expiresAt": wait.expires_at}
        return JSONResponse(body, status_code=201)

    @router.get("/outbox")
    async def outbox(request: Request) -> Response:
        if (refused := denied(request)) is not None:
            return refused
        stats = await service.outbox.stats()
        return JSONResponse(
            {
                "pending": stats.pending,
                "oldestAgeS": stats.oldest_age_s,
                "dead": stats.dead,
                "byEngine": stats.by_engine,
            }
        )

    @router.get("/duplicates")
    async def duplicates(request: Request) -> Response:
        """POSTs resent while remembered: the input of a future resend API (README gaps)."""
        if (refused := denied(request)) is not None:
            return refused
        rows: list[dict[str, Any]] = [
            {
                "resource": d.resource,
                "id": d.id,
                "duplicates": d.duplicates,
                "modified": d.modified,
                "lastDuplicateAt": d.last_duplicate_at,
            }
            for d in await service.state.duplicates()
        ]
        return JSONResponse({"duplicates": rows})

    return router


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "body"
    return f"{where}: {first.get('msg', 'invalid')}"
