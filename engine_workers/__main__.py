"""One engine's worker process: deploy the BPMN, work the jobs, serve the channel API.

Run `python -m engine_workers` with PHEE_ENGINE_* settings (engine_workers/README.md). SIGTERM
stops taking HTTP requests, lets uvicorn finish those in flight, then stops the Zeebe worker
(jobs it still holds time out and are handed to another worker) and closes the adapters.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
from pyzeebe import ZeebeClient, ZeebeWorker, create_insecure_channel

from engine_workers import bpmn, channel, failures, tasks_payee, tasks_payer
from engine_workers.runtime import Runtime
from engine_workers.settings import EngineSettings
from phee import contract
from phee.service import load_settings, uvicorn_config

log = logging.getLogger("engine_workers")


async def run(settings: EngineSettings) -> None:
    rt = Runtime.from_settings(settings)
    grpc = create_insecure_channel(grpc_address=settings.gateway)
    client = ZeebeClient(grpc)
    for path in bpmn.paths():
        await client.deploy_resource(str(path))
    log.info(
        "engine %s deployed %d processes on %s", settings.name, len(bpmn.FILES), settings.gateway
    )

    # Job push (Zeebe 8.4+): jobs are streamed to us as they are created instead of each task
    # type long-polling; polling still picks up older jobs.
    worker = ZeebeWorker(
        grpc,
        name=settings.name,
        exception_handler=failures.handle,
        stream_enabled=settings.job_streaming,
    )
    tasks_payer.register(worker, rt)
    tasks_payee.register(worker, rt)
    working = asyncio.create_task(worker.work())

    async def start_payer(variables: dict[str, Any]) -> int:
        created = await client.run_process(contract.PAYER_TRANSFER, variables)
        return int(created.process_instance_key)

    app = channel.create_app(rt, start_payer, ready=lambda: not working.done())
    server = uvicorn.Server(uvicorn_config(app, settings.service))
    try:
        await server.serve()  # returns after SIGTERM/SIGINT, in-flight requests finished
    finally:
        await worker.stop()
        await working
        await rt.close()
        await grpc.close()


def main() -> None:
    settings = load_settings(EngineSettings, "engine workers")
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
