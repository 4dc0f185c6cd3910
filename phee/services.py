"""Our own HTTP services (router, reference AMS, switch double, ...) as local processes.

Every service is a module with a `main()` that serves a FastAPI app with uvicorn on
127.0.0.1:`PHEE_PORT`. `start_service` launches it exactly like a component (own session, log
file, readiness polled on `/readyz`, stop by PID), so tests and the local site treat our services
and the real components alike. `instrument` gives every app `/healthz`, `/readyz` and `/metrics`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from phee.components.base import Running, free_port, http_status, launch, stop_pid, wait_until

SERVICE_VERSION = "phee-0.1.0"


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
        from prometheus_client import REGISTRY

        data = generate_latest(registry or REGISTRY)
        return Response(content=data, media_type=CONTENT_TYPE_LATEST)


def listen_host() -> str:
    """Where services listen: loopback by default; a pod sets `PHEE_HOST=0.0.0.0`."""
    return os.environ.get("PHEE_HOST") or "127.0.0.1"


def serve(app: FastAPI, *, port: int | None = None) -> None:
    """Serve on `listen_host()` until SIGTERM/SIGINT (uvicorn finishes in-flight requests)."""
    chosen = port or int(os.environ.get("PHEE_PORT") or 0) or free_port()
    logging.basicConfig(
        level=os.environ.get("PHEE_LOG_LEVEL", "INFO"),
        format='{"ts":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":%(message)r}',
    )
    # One log line per outgoing HTTP request costs more than the request on a busy service.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    uvicorn.run(
        app,
        host=listen_host(),
        port=chosen,
        log_level=os.environ.get("PHEE_LOG_LEVEL", "info").lower(),
        access_log=False,
        timeout_graceful_shutdown=10,
    )


def start_service(
    name: str,
    module: str,
    workdir: Path,
    *,
    env: Mapping[str, str] | None = None,
    deadline_s: float = 30.0,
    args: Sequence[str] = (),
) -> Running:
    """Run `python -m module *args` with a free port; return once `/readyz` answers 200."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = workdir / f"{name}.log"
    base = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    proc = launch(
        [sys.executable, "-m", module, *args],
        log_path=log_path,
        cwd=workdir,
        env={**(env or {}), "PHEE_PORT": str(port)},
    )
    try:
        wait_until(
            lambda: http_status(f"{base}/readyz") == 200,
            what=f"service {name} ({module})",
            deadline_s=deadline_s,
            log_path=log_path,
            proc=proc,
        )
    except BaseException:
        stop_pid(proc.pid, grace_s=2.0)
        raise
    return Running(
        name=name,
        version=SERVICE_VERSION,
        pid=proc.pid,
        workdir=str(workdir),
        log_path=str(log_path),
        ready_s=round(time.monotonic() - start, 2),
        endpoints={"http": base},
        ports={"http": port},
    )


def stop_service(running: Running, grace_s: float = 15.0) -> None:
    """SIGTERM (uvicorn drains in-flight requests), SIGKILL after the grace period."""
    stop_pid(running.pid, grace_s)


if __name__ == "__main__":  # pragma: no cover - documentation of the contract
    print(__doc__, file=sys.stderr)
    sys.exit(2)
