"""The importer as a service: the import loop inside a small FastAPI app.

The app gives the importer what every phee service has (`/healthz`, `/readyz` once Kafka and the
database are reached, `/metrics` with the import counters and the lag) and a graceful stop:
on SIGTERM uvicorn ends the lifespan, the loop finishes its batch, commits and leaves the group.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from backoffice.importer import Importer
from backoffice.settings import BackofficeSettings
from phee.service import instrument

log = logging.getLogger(__name__)


def create_app(settings: BackofficeSettings) -> FastAPI:
    importer = Importer(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await importer.start()
        task = asyncio.create_task(importer.run(), name="import-loop")
        task.add_done_callback(_crash_loudly)
        try:
            yield
        finally:
            importer.stop()
            await asyncio.wait({task}, timeout=60)
            await importer.close()

    app = FastAPI(title="phee back-office importer", version="0.1.0", lifespan=lifespan)
    instrument(app, ready=lambda: importer.ready)
    app.state.importer = importer
    return app


def _crash_loudly(task: asyncio.Task[None]) -> None:
    """An import loop that died must not leave a healthy-looking process behind."""
    if task.cancelled() or task.exception() is None:
        return
    log.error("the import loop failed", exc_info=task.exception())
    os.kill(os.getpid(), signal.SIGTERM)
