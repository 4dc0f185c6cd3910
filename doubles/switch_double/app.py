"""The switch double's FastAPI app: FSPIOP endpoints, the admin API, health and metrics.

Every FSPIOP request is checked synchronously (headers, size, JSON, the fields the switch needs;
the whole schema when `validate_schemas` is on) and answered 202 (GET/POST) or 200 (PUT) with
an empty body; the outcome comes later as callbacks. Errors never use FastAPI's 422 shape: they
are FSPIOP `errorInformation` bodies.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from doubles.switch_double.admin import admin_router
from doubles.switch_double.core import Switch
from doubles.switch_double.delivery import Delivery, Signer
from doubles.switch_double.metrics import SwitchMetrics
from doubles.switch_double.settings import DfspSpec, SwitchSettings
from doubles.switch_double.validation import (
    check_body,
    check_headers,
    check_path_id,
    check_route,
    check_schema,
    message,
    parse_body,
    read_body,
)
from phee.fspiop.errors import FspiopError
from phee.fspiop.schemas import schemas
from phee.service import instrument

log = logging.getLogger("doubles.switch_double")


def _register_from_settings(switch: Switch, settings: SwitchSettings) -> None:
    for fsp_id, spec in settings.dfsps.items():
        switch.directory.register(fsp_id, spec)
    if settings.simulated_payee:
        given = settings.dfsps.get(settings.simulated_payee, DfspSpec())
        parties = [*given.parties, *settings.simulated_parties]
        switch.directory.register(
            settings.simulated_payee, DfspSpec(callbackBase=None, parties=parties)
        )


def create_app(
    settings: SwitchSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    signer: Signer | None = None,
) -> FastAPI:
    """The app; `transport` lets tests deliver callbacks to in-process apps, `signer` adds JWS."""
    metrics = SwitchMetrics()
    switch = Switch(
        settings, metrics, Delivery(settings, metrics, transport=transport, signer=signer)
    )
    _register_from_settings(switch, settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.validate_schemas:  # load the documents before the first request, not during
            for version in ("1.1", "2.0"):
                schemas(version).schema_name("POST", "/transfers")
        log.info(
            "switch double up as %r, simulated payee %r", settings.fsp_id, settings.simulated_payee
        )
        yield
        await switch.aclose()

    app = FastAPI(title="phee switch double", lifespan=lifespan)
    app.state.switch = switch
    instrument(app, registry=metrics.registry)
    app.include_router(admin_router(switch))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = "/".join(str(p) for p in first.get("loc", ()))
        err = FspiopError("3100", f"{where}: {first.get('msg', 'invalid')}")
        return JSONResponse(err.body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "3002", 409: "3003"}.get(exc.status_code, "3000")
        err = FspiopError(code, str(exc.detail))
        return JSONResponse(err.body(), status_code=exc.status_code)

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def fspiop(request: Request) -> Response:
        method, path = request.method, request.url.path
        resource = path.strip("/").split("/", 1)[0] or "-"
        try:
            route = check_route(method, path)
            version = check_headers(method, path, request.headers)
            check_path_id(route)
            try:
                raw = await read_body(request.headers, request.stream())
            except ClientDisconnect:  # the sender is gone: nobody to answer, nothing to do
                return Response(status_code=400)
            body = parse_body(method, raw)
            if settings.validate_schemas and body is not None:
                check_schema(version, method, path, body)
            check_body(method, route, body)
        except FspiopError as err:
            outcome = err.code
            if resource not in ("parties", "quotes", "transfers"):
                resource = "other"
            metrics.requests.labels(resource, method, outcome).inc()
            return JSONResponse(err.body(), status_code=err.http_status)
        msg = message(method, path, request.headers, version, body, raw)
        switch.accept(msg)
        metrics.requests.labels(route.resource, method, "accepted").inc()
        return Response(status_code=200 if method == "PUT" else 202)

    return app
