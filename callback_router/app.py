"""The router's FastAPI app: the DFSP's one public FSPIOP endpoint, plus admin and health.

Every FSPIOP route reads the raw body itself and runs the same pipeline: validate (validation.py)
-> route and make safe (service.py) -> 202/200. Errors are FSPIOP error bodies; FastAPI's own
422 and `{"detail": ...}` answers never reach a peer. The lifespan opens the database and the
outbox before `/readyz` turns true, and on shutdown flushes the outbox and closes channels.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from callback_router.admin import admin_router
from callback_router.db import Database
from callback_router.delivery import Delivery, EngineDelivery
from callback_router.metrics import RouterMetrics
from callback_router.outbox import Outbox
from callback_router.registry import RegistryStore
from callback_router.service import RouterService
from callback_router.settings import RouterSettings
from callback_router.state import State
from callback_router.switch_client import SwitchClient
from callback_router.validation import Inbound, ilp_transaction_id, read_body, validate_request
from phee import contract
from phee.fspiop import headers as fh
from phee.fspiop.errors import FspiopError
from phee.fspiop.jws import PeerKeys
from phee.fspiop.schemas import schemas
from phee.service import instrument, payment_context

log = logging.getLogger(__name__)

#: what a route does with a valid request, given the service and the path parameters
Action = Callable[[RouterService, Inbound, dict[str, str]], Awaitable[None]]


def _error_response(err: FspiopError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.http_status)


def create_app(
    settings: RouterSettings,
    registry: RegistryStore | None = None,
    delivery: Delivery | None = None,
    switch_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The router app; `registry` and `delivery` default to the settings' file and the real engines,
    `switch_transport` to real HTTP."""
    registry = registry or RegistryStore(settings.registry_file)
    delivery = delivery or EngineDelivery(settings.engine_timeout_s)
    metrics = RouterMetrics()
    db = Database(settings.database_url)
    outbox = Outbox(
        db,
        delivery,
        registry,
        metrics,
        backoff_s=settings.outbox_backoff_s,
        backoff_max_s=settings.outbox_backoff_max_s,
        give_up_s=settings.outbox_give_up_s,
    )
    switch = SwitchClient(settings.switch_url, settings.fsp_id, metrics, transport=switch_transport)
    service = RouterService(settings, registry, State(db), outbox, delivery, switch, metrics)
    keys = PeerKeys(settings.jws_keys_dir) if settings.jws_keys_dir is not None else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for version in fh.SUPPORTED_VERSIONS:  # refuse to start without the schemas
            schemas(version)
        if keys is None:
            log.warning(
                "!!! FSPIOP SIGNATURES ARE NOT CHECKED: PHEE_ROUTER_JWS_KEYS_DIR is not set !!!"
            )
        loaded = registry.load()
        db.open()
        await outbox.open()
        service.start()
        service.ready = True
        log.info(
            "router for %s ready: engines %s, database %s",
            settings.fsp_id,
            ", ".join(f"{e.name}({e.state})" for e in loaded.engines),
            db.url,
        )
        try:
            yield
        finally:
            service.ready = False
            await service.stop(grace_s=settings.shutdown_flush_s)
            await outbox.stop(settings.shutdown_flush_s)
            await switch.close()
            await delivery.close()
            db.close()
            log.info("router stopped")

    app = FastAPI(
        title="phee callback router",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.service = service
    instrument(app, registry=metrics.registry, ready=lambda: service.ready)
    app.include_router(admin_router(service))
    _fspiop_routes(app, service, keys)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code in (404, 405):
            err = FspiopError("3002", f"unknown URI or method ({exc.status_code})")
            return JSONResponse(err.body(), status_code=exc.status_code)
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def request_error(_request: Request, exc: RequestValidationError) -> Response:
        return _error_response(FspiopError("3100", str(exc.errors()[:1])))

    return app


def _transaction_of(inbound: Inbound) -> str | None:
    """The transactionId a request names, if any (quotes carry it, transfers in the ILP packet),
    so the log lines about it can be found by it."""
    body = inbound.body
    if not isinstance(body, dict):
        return None
    found = body.get("transactionId")
    if isinstance(found, str):
        return found
    if inbound.method == "POST" and "ilpPacket" in body:
        try:
            return ilp_transaction_id(body)
        except FspiopError:
            return None
    return None


def _fspiop_routes(app: FastAPI, service: RouterService, keys: PeerKeys | None) -> None:
    put_parties_signed = service.settings.jws_put_parties

    def route(method: str, path: str, action: Action, *, id_param: str | None = None) -> None:
        async def endpoint(request: Request) -> Response:
            resource = path.split("/")[1]
            outcome = "2001"
            try:
                if not service.ready:
                    raise FspiopError("2003", "the router is starting or stopping")
                raw = await read_body(request)
                params = dict(request.path_params)
                checked = {("RequestID" if k == id_param else k): v for k, v in params.items()}
                inbound = validate_request(
                    method=method,
                    path=request.url.path,
                    query=request.url.query,
                    headers=request.headers,
                    raw=raw,
                    params=checked,
                    keys=keys,
                    put_parties_signed=put_parties_signed,
                )
                started = time.perf_counter()
                with payment_context(_transaction_of(inbound)):
                    await action(service, inbound, params)
                service.metrics.routing_seconds.labels(resource, method).observe(
                    time.perf_counter() - started
                )
                status = 202 if method in ("GET", "POST") else 200
                outcome = str(status)
                return Response(status_code=status)
            except FspiopError as err:
                outcome = err.code
                if err.code not in ("2003",):
                    log.info("%s %s refused: %s %s", method, request.url.path, err.code, err)
                return _error_response(err)
            except Exception:
                log.exception("%s %s failed", method, request.url.path)
                return _error_response(FspiopError("2001", "the router could not take it"))
            finally:
                service.metrics.inbound.labels(resource, method, outcome).inc()

        app.add_api_route(path, endpoint, methods=[method], include_in_schema=False)

    async def get_party(s: RouterService, i: Inbound, p: dict[str, str]) -> None:
        await s.get_party(i, p["Type"], p["ID"], p.get("SubId"))

    def put_party(*, ok: bool) -> Action:
        async def action(s: RouterService, i: Inbound, p: dict[str, str]) -> None:
            sub, good = p.get("SubId"), ok
            if ok and sub == "error":  # `/parties/{Type}/{ID}/error`: the literal wins
                sub, good = None, False
            await s.put_party(i, contract.party_key(p["Type"], p["ID"], sub), ok=good)

        return action

    def put_callback(*, ok: bool) -> Action:
        async def action(s: RouterService, i: Inbound, p: dict[str, str]) -> None:
            await s.put_callback(i, p["ID"], ok=ok)

        return action

    async def post_quote(s: RouterService, i: Inbound, _p: dict[str, str]) -> None:
        await s.post_quote(i)

    async def post_transfer(s: RouterService, i: Inbound, _p: dict[str, str]) -> None:
        await s.post_transfer(i, ilp_transaction_id(i.body))

    async def patch_transfer(s: RouterService, i: Inbound, p: dict[str, str]) -> None:
        await s.patch_transfer(i, p["ID"])

    async def get_transfer(s: RouterService, i: Inbound, p: dict[str, str]) -> None:
        await s.get_transfer(i, p["ID"])

    route("GET", "/parties/{Type}/{ID}", get_party)
    route("GET", "/parties/{Type}/{ID}/{SubId}", get_party)
    route("PUT", "/parties/{Type}/{ID}", put_party(ok=True))
    route("PUT", "/parties/{Type}/{ID}/{SubId}/error", put_party(ok=False))
    route("PUT", "/parties/{Type}/{ID}/{SubId}", put_party(ok=True))
    route("POST", "/quotes", post_quote)
    route("PUT", "/quotes/{ID}/error", put_callback(ok=False), id_param="ID")
    route("PUT", "/quotes/{ID}", put_callback(ok=True), id_param="ID")
    route("POST", "/transfers", post_transfer)
    route("PUT", "/transfers/{ID}/error", put_callback(ok=False), id_param="ID")
    route("PUT", "/transfers/{ID}", put_callback(ok=True), id_param="ID")
    route("PATCH", "/transfers/{ID}", patch_transfer, id_param="ID")
    route("GET", "/transfers/{ID}", get_transfer, id_param="ID")
