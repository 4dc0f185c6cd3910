"""`python -m phee_operator`: wait for the leader Lease, then run the kopf operator.

Exit codes: 0 after SIGTERM/SIGINT (the lease is released so the standby takes over at once),
1 when leadership was lost (the pod restarts and queues up as a standby), 2 on bad settings.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import kopf
from prometheus_client import start_http_server

from phee.service import load_settings
from phee_operator.handlers import register
from phee_operator.kube import connect
from phee_operator.kube.lease import LeaderElector
from phee_operator.metrics import LEADER
from phee_operator.settings import OperatorSettings

log = logging.getLogger("phee_operator")


async def run(settings: OperatorSettings) -> int:
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.service.host)
    if settings.kubeconfig:
        os.environ["KUBECONFIG"] = settings.kubeconfig  # kopf's own login reads it
    client = connect(settings.kubeconfig)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    elector = LeaderElector(
        client,
        namespace=settings.lease_namespace,
        name=settings.lease_name,
        identity=settings.identity,
        duration_s=settings.lease_duration_s,
        renew_every_s=settings.renew_every_s,
    )
    try:
        if not await elector.acquire(stop):
            return 0
        LEADER.set(1)
        lost = asyncio.Event()
        kopf_stop = asyncio.Event()
        holding = asyncio.create_task(elector.hold(lost))

        async def stop_when_needed() -> None:
            waits = [asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            kopf_stop.set()

        stopper = asyncio.create_task(stop_when_needed())
        register(settings)
        await kopf.operator(
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            standalone=True,
            stop_flag=kopf_stop,
        )
        stopper.cancel()
        holding.cancel()
        LEADER.set(0)
        if lost.is_set():
            return 1
        await elector.release()
        return 0
    finally:
        await client.close()


def main() -> None:
    settings = load_settings(OperatorSettings, "phee-operator")
    sys.exit(asyncio.run(run(settings)))


if __name__ == "__main__":
    main()
