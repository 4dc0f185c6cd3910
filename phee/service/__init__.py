"""The service runtime every image ships: health, metrics, serving, settings and logs.

Every service is a module with a `main()` that loads its settings and sets up its JSON logs
(`load_settings`, which refuses to start without a secret), builds a FastAPI app, gives it
`/healthz`, `/readyz` and `/metrics` (`instrument`) and serves it (`serve`) until SIGTERM.
"""

from __future__ import annotations

from collections.abc import Callable

import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from phee.service.logs import bind_transaction, configure_logging, payment_context
from phee.service.settings import ComponentSettings, MissingSecretError, ServiceSettings
from phee.service.startup import load_settings

__all__ = [
    "ComponentSettings",
    "MissingSecretError",
    "ServiceSettings",
    "bind_transaction",
    "configure_logging",
    "instrument",
    "load_settings",
    "payment_context",
    "serve",
    "uvicorn_config",
]


def instrument(
    app: FastAPI,
    *,
    registry: CollectorRegistry | None = None,
    ready: Callable[[], bool] = lambda: True,
) -> None:
    """Add `/healthz` (process alive), `/readyz` (dependencies ready) and `/metrics`."""

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz(response: Response) -> dict[str, str]:
        if ready():
            return {"status": "ready"}
        response.status_code = 503
        return {"status": "not ready"}

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        data = generate_latest(registry or REGISTRY)
        return Response(content=data, media_type=CONTENT_TYPE_LATEST)


def uvicorn_config(app: FastAPI, settings: ServiceSettings) -> uvicorn.Config:
    """How every service is served: our logging (not uvicorn's), no access log, and up to 10 s
    for in-flight requests after SIGTERM."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=10,
    )


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Serve until SIGTERM/SIGINT (uvicorn finishes in-flight requests); the logs are set up by
    `load_settings`."""
    uvicorn.Server(uvicorn_config(app, settings)).run()
