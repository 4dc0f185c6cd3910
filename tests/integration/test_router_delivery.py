"""The callback router as a real process delivering to a real Zeebe engine.

A small test process (tests/resources/router-quote-callback.bpmn) waits for the quote callback
correlated by quoteId; it completing with the callback's body proves the router published the
right message to the right engine. Also: a callback that arrives before the instance exists is
buffered by Zeebe (message TTL); an unreachable engine's callbacks wait in the durable outbox,
across a router restart, until the engine can be reached.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyzeebe import ZeebeClient, create_insecure_channel

from harness.components import Running
from harness.components.base import free_port, pid_alive
from harness.engine_smoke import exported_records, instance_completed
from harness.services import start_service, stop_service
from phee.contract import EngineInfo, EngineState
from phee.fspiop import ids
from phee.zeebe_export import topic_for
from tests.support import apoll
from tests.support.router import ADMIN_TOKEN, PAYEE, PAYER, quote_put, request, write_registry

BPMN = Path(__file__).resolve().parents[1] / "resources" / "router-quote-callback.bpmn"
PROCESS = "phee-test-router-quote-callback"
ENGINE = "engine-a"
SLOT = 7
WAIT_MS = 90_000


class Routers:
    """Starts router processes sharing one registry file and one outbox database."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.registry = tmp_path / "engines.json"
        self.started: list[Running] = []

    def engine(self, gateway: str, state: EngineState = EngineState.ACCEPTING) -> None:
        """(Re)write the registry file, as the operator would."""
        write_registry(
            self.registry, EngineInfo(name=ENGINE, slot=SLOT, gateway=gateway, state=state)
        )

    def start(self) -> Running:
        env = {
            "PHEE_ROUTER_FSP_ID": PAYER,
            "PHEE_ROUTER_REGISTRY_FILE": str(self.registry),
            "PHEE_ROUTER_DATABASE_URL": f"sqlite:///{self.tmp_path / 'router.db'}",
            "PHEE_ROUTER_ZEEBE_TIMEOUT_S": "3",
            "PHEE_ROUTER_OUTBOX_BACKOFF_MAX_S": "1",
            "PHEE_ROUTER_SHUTDOWN_FLUSH_S": "1",
            "PHEE_ROUTER_ADMIN_TOKEN": ADMIN_TOKEN,
        }
        workdir = self.tmp_path / f"router-{len(self.started)}"
        run = start_service("callback-router", "callback_router", workdir, env=env)
        self.started.append(run)
        return run

    def stop(self, run: Running) -> None:
        stop_service(run)
        assert not pid_alive(run.pid), f"router pid {run.pid} outlived its stop"


@pytest.fixture
def routers(tmp_path: Path) -> Iterator[Routers]:
    made = Routers(tmp_path)
    yield made
    for run in made.started:
        made.stop(run)


@asynccontextmanager
async def engine_client(gateway: str) -> AsyncIterator[ZeebeClient]:
    channel = create_insecure_channel(grpc_address=gateway)
    try:
        client = ZeebeClient(channel)
        await client.deploy_resource(str(BPMN))
        yield client
    finally:
        await channel.close()


async def put_quote(router: Running, quote_id: str, body: dict[str, Any]) -> httpx.Response:
    path = f"/quotes/{quote_id}"
    headers, raw = request("PUT", path, body, source=PAYEE, destination=PAYER)
    async with httpx.AsyncClient(base_url=router.endpoint("http")) as http:
        return await http.put(path, headers=headers, content=raw)


async def admin(router: Running, method: str, path: str, body: Any = None) -> Any:
    async with httpx.AsyncClient(base_url=router.endpoint("http")) as http:
        response = await http.request(
            method,
            f"/admin{path}",
            json=body,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        response.raise_for_status()
        return response.json()


def callback_body(result: Any) -> Any:
    """The body of the quote callback an instance completed with."""
    callback: Any = result.variables["quoteCallback"]
    return callback["body"]


async def outbox_drained(router: Running) -> bool | None:
    stats = await admin(router, "GET", "/outbox")
    return True if stats["pending"] == 0 and stats["dead"] == 0 else None


async def test_a_quote_callback_completes_the_instance_waiting_for_it(
    zeebe: Running, kafka: Running, routers: Routers
) -> None:
    gateway = zeebe.endpoint("gateway")
    routers.engine(gateway)
    router = routers.start()
    quote_id = ids.new_uuid(SLOT)
    body = quote_put()
    async with engine_client(gateway) as client:
        created = await client.run_process(PROCESS, {"quoteId": quote_id})  # waits from now on
        response = await put_quote(router, quote_id, body)
    assert response.status_code == 200
    key = created.process_instance_key
    records = await exported_records(
        kafka.endpoint("bootstrap"), topic_for(ENGINE), instance_completed(key)
    )
    values = [
        json.loads(r["value"]["value"])
        for r in records
        if r.get("valueType") == "VARIABLE"
        and r["value"].get("processInstanceKey") == key
        and r["value"].get("name") == "quoteCallback"
    ]
    assert len(values) == 1
    assert values[0]["ok"] is True
    assert values[0]["body"] == body
    assert values[0]["headers"]["FSPIOP-Source"] == PAYEE
    assert await outbox_drained(router)


async def test_a_callback_before_the_instance_is_buffered_and_a_resend_is_harmless(
    zeebe: Running, routers: Routers
) -> None:
    gateway = zeebe.endpoint("gateway")
    routers.engine(gateway)
    router = routers.start()
    quote_id = ids.new_ulid(SLOT)  # FSPIOP 2.0 ids route the same way
    body = quote_put()
    assert (await put_quote(router, quote_id, body)).status_code == 200
    assert (await put_quote(router, quote_id, body)).status_code == 200  # same message id
    async with engine_client(gateway) as client:
        result = await client.run_process_with_result(
            PROCESS, {"quoteId": quote_id}, timeout=WAIT_MS, variables_to_fetch=["quoteCallback"]
        )
    assert callback_body(result) == body
    assert await outbox_drained(router)  # the resend was neither outboxed nor dead


async def test_an_unreachable_engine_gets_its_callback_from_the_outbox(
    zeebe: Running, routers: Routers
) -> None:
    gateway = zeebe.endpoint("gateway")
    routers.engine(f"127.0.0.1:{free_port()}")  # nothing listens there
    router = routers.start()
    quote_id = ids.new_uuid(SLOT)
    body = quote_put()
    assert (await put_quote(router, quote_id, body)).status_code == 200  # safe in the outbox
    stats = await admin(router, "GET", "/outbox")
    assert stats["pending"] == 1
    assert stats["byEngine"] == {ENGINE: 1}
    assert stats["oldestAgeS"] >= 0

    down = await admin(router, "PUT", f"/engines/{ENGINE}/state", {"state": "down"})
    assert down["state"] == "down"
    assert json.loads(routers.registry.read_text())["engines"][0]["state"] == "down"
    async with engine_client(gateway) as client:
        waiting = asyncio.create_task(
            client.run_process_with_result(
                PROCESS,
                {"quoteId": quote_id},
                timeout=WAIT_MS,
                variables_to_fetch=["quoteCallback"],
            )
        )
        routers.engine(gateway, EngineState.DOWN)  # the operator points it at the live gateway
        up = await admin(router, "PUT", f"/engines/{ENGINE}/state", {"state": "accepting"})
        assert up == {**up, "state": "accepting", "gateway": gateway}
        result = await asyncio.wait_for(waiting, timeout=WAIT_MS / 1000)
    assert callback_body(result) == body
    assert await apoll(lambda: outbox_drained(router), what="outbox drained", deadline_s=30)
    listed = await admin(router, "GET", "/engines")
    assert listed["engines"][0]["state"] == "accepting"


async def test_a_router_restart_between_accept_and_delivery_loses_nothing(
    zeebe: Running, routers: Routers
) -> None:
    gateway = zeebe.endpoint("gateway")
    routers.engine(f"127.0.0.1:{free_port()}")
    first = routers.start()
    quote_ids = [ids.new_uuid(SLOT) for _ in range(3)]
    bodies = {q: quote_put() for q in quote_ids}
    for quote_id, body in bodies.items():
        assert (await put_quote(first, quote_id, body)).status_code == 200
    assert (await admin(first, "GET", "/outbox"))["pending"] == 3
    routers.stop(first)  # SIGTERM: the flush cannot reach the engine; the rows stay

    routers.engine(gateway)
    second = routers.start()  # same database: it finds the three and delivers them
    async with engine_client(gateway) as client:
        results = await asyncio.gather(
            *(
                client.run_process_with_result(
                    PROCESS, {"quoteId": q}, timeout=WAIT_MS, variables_to_fetch=["quoteCallback"]
                )
                for q in quote_ids
            )
        )
    for quote_id, result in zip(quote_ids, results, strict=True):
        assert callback_body(result) == bodies[quote_id]
    assert await apoll(lambda: outbox_drained(second), what="outbox drained", deadline_s=30)
