"""One engine's worker process: deploy the BPMN, work the external tasks, serve the channel API.

Run `python -m engine_workers` with PHEE_ENGINE_* settings (engine_workers/README.md). Any number
of these processes may serve one engine: tasks are fetched and locked by the engine, and the
payment store is shared. SIGTERM stops taking HTTP requests, lets uvicorn finish those in
flight, then stops fetching tasks, finishes the ones it holds, and closes the adapters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

import uvicorn
import uvloop

from engine_workers import bpmn, channel, tasks_payee, tasks_payer
from engine_workers.registration import Tasks
from engine_workers.runtime import Runtime
from engine_workers.settings import EngineSettings
from engine_workers.starting import EngineStarts, PayerStarts, unstarted_cutoff, utcnow
from phee import contract
from phee.engine import EngineClient, EngineError, TaskWorker
from phee.service import load_settings, uvicorn_config

log = logging.getLogger("engine_workers")

#: a payment with no instance this long after it was received is checked against the engine
START_GRACE_S = 60.0
SWEEP_EVERY_S = 15.0


async def sweep_unstarted(rt: Runtime, starts: PayerStarts, stop: asyncio.Event) -> None:
    """Fail payments whose start was lost and that the engine certainly does not have.

    Never restarts them: the client was not told, so only the client's retry (same
    X-CorrelationID) may start such a payment. A late instance finds it FAILED and cannot claim it.
    """
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=SWEEP_EVERY_S)
        try:
            for payment in await rt.store.unstarted(unstarted_cutoff(utcnow(), START_GRACE_S)):
                if await starts.known(payment.transaction_id):
                    continue
                await rt.store.set_status(
                    payment.transaction_id,
                    "FAILED",
                    "the engine has no instance for this payment; nothing was sent",
                )
                log.warning("payment %s never started: FAILED", payment.transaction_id)
        except EngineError as err:
            log.warning("sweep of unstarted payments skipped: %s", err)


async def run(settings: EngineSettings) -> None:
    rt = Runtime.from_settings(settings)
    engine = EngineClient(settings.engine_url, timeout_s=settings.http_timeout_s)
    files = bpmn.deployment(
        {
            "partyWait": settings.party_wait,
            "quoteWait": settings.quote_wait,
            "statusWait": settings.status_wait,
        }
    )
    deployed = await engine.deploy(f"phee-{settings.name}", files)
    log.info("engine %s runs %s (%s)", settings.name, deployed, settings.engine_url)

    tasks = Tasks(retries=settings.retries)
    tasks_payer.register(tasks, rt)
    tasks_payee.register(tasks, rt)
    worker = TaskWorker(
        engine,
        settings.worker_id or f"{settings.name}-{socket.gethostname()}-{os.getpid()}",
        tasks.handlers(),
        max_in_flight=settings.max_jobs,
        lock_ms=settings.lock_ms,
        long_poll_ms=settings.long_poll_ms,
        fetch_variables=tasks.fetch_variables(),
        lock_ms_by_topic=tasks.lock_ms(),
    )
    working = asyncio.create_task(worker.run())
    starts = EngineStarts(engine, await engine.latest_definition_id(contract.PAYER_TRANSFER))
    stop_sweeping = asyncio.Event()
    sweeping = asyncio.create_task(sweep_unstarted(rt, starts, stop_sweeping))

    async def stop_work() -> None:
        """Stop fetching, finish the tasks held, close the adapters (once)."""
        if stop_sweeping.is_set():
            return
        stop_sweeping.set()
        worker.stop()
        await working
        await sweeping
        await engine.close()
        await rt.close()
        log.info("engine %s workers stopped: %s", settings.name, worker.stats)

    app = channel.create_app(rt, starts, ready=lambda: not working.done(), on_stop=stop_work)
    server = uvicorn.Server(uvicorn_config(app, settings.service))
    try:
        # SIGTERM: uvicorn finishes the requests in flight, then the lifespan's end runs
        # stop_work; code after serve() does not run on a signal (uvicorn re-raises it)
        await server.serve()
    finally:
        await stop_work()  # serve() failed or ended without a signal


def main() -> None:
    settings = load_settings(EngineSettings, "engine workers")
    # uvloop (as uvicorn uses for the other services): the worker is one event loop doing
    # thousands of small HTTP calls a minute, and uvloop's transports halve their overhead.
    uvloop.run(run(settings))


if __name__ == "__main__":
    main()
