"""The callback router as a real process delivering to a real Operaton engine.

A small test process (tests/resources/router-quote-callback.bpmn) keeps the quote callback in a
message event subprocess whenever it arrives, as the payer process does; its main flow is held
by an external task the test controls, then waits for the callback. The instance ending with the
callback's body in its history proves the router correlated the right message on the right
engine. Also: a callback that arrives before the flow waits is kept (an early callback) and a
resend is harmless; a callback for an ended instance is reported (dead, late), not retried
forever; an unreachable engine's callbacks wait in the durable outbox, across a router restart,
until the engine can be reached.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.components import Running
from harness.components.base import free_port, pid_alive
from harness.components.operaton import RunningEngine
from harness.services import start_service, stop_service
from phee.contract import EngineInfo, EngineState
from phee.engine import EngineClient, TopicRequest
from phee.fspiop import ids
from tests.support import apoll
from tests.support.router import ADMIN_TOKEN, PAYEE, PAYER, quote_put, request, write_registry

pytestmark = pytest.mark.timeout(300)

BPMN = Path(__file__).resolve().parents[1] / "resources" / "router-quote-callback.bpmn"
PROCESS = "phee-test-router-quote-callback"
HOLD = "test-router-hold"
ENGINE = "engine-a"
SLOT = 7


class Routers:
    """Starts router processes sharing one registry file and one outbox database."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.registry = tmp_path / "engines.json"
        self.started: list[Running] = []

    def engine(self, url: str, state: EngineState = EngineState.ACCEPTING) -> None:
        """(Re)write the registry file, as the operator would."""
        write_registry(
            self.registry, EngineInfo(name=ENGINE, slot=SLOT, engine_url=url, state=state)
        )

    def start(self) -> Running:
        env = {
            "PHEE_ROUTER_FSP_ID": PAYER,
            "PHEE_ROUTER_REGISTRY_FILE": str(self.registry),
            "PHEE_ROUTER_DATABASE_URL": f"sqlite:///{self.tmp_path / 'router.db'}",
            "PHEE_ROUTER_ENGINE_TIMEOUT_S": "3",
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
async def engine_client(url: str) -> AsyncIterator[EngineClient]:
    async with EngineClient(url) as client:
        await client.deploy("phee-test-router", {BPMN.name: BPMN.read_bytes()})
        yield client


async def start_held(client: EngineClient, quote_id: str) -> str:
    """An instance for `quote_id`, held at its external task (locked by the test)."""
    instance = await client.start(PROCESS, business_key=quote_id, variables={"quoteId": quote_id})
    return instance


async def release(client: EngineClient, instance: str) -> None:
    """Complete the instance's held task: its flow then waits for (or finds) the callback."""

    async def locked() -> Any:
        tasks = await client.fetch_and_lock(
            f"test-{instance}",
            [TopicRequest(HOLD, 60_000, [])],
            max_tasks=20,
            async_response_timeout_ms=0,
        )
        mine = [t for t in tasks if t.process_instance_id == instance]
        for other in (t for t in tasks if t.process_instance_id != instance):
            await client.failure(
                other, message="not this test's", details=None, retries=1, retry_timeout_ms=0
            )
        return mine[0] if mine else None

    task = await apoll(locked, what=f"the held task of {instance}", deadline_s=30)
    await client.complete(task)


async def ended_with_callback(client: EngineClient, quote_id: str) -> dict[str, Any]:
    """Wait until the instance has ended; the quote callback it kept (from its history)."""

    async def ended() -> list[dict[str, Any]] | None:
        found = await client.historic_instances(business_key=quote_id)
        return found if found and found[0].get("state") == "COMPLETED" else None

    (instance,) = await apoll(ended, what=f"instance of {quote_id} ended", deadline_s=60)
    async with httpx.AsyncClient(base_url=_base(client)) as http:
        rows = (
            await http.get(
                "/history/variable-instance",
                params={"processInstanceId": instance["id"], "variableName": "quoteCallback"},
            )
        ).json()
    assert len(rows) == 1
    value: dict[str, Any] = json.loads(rows[0]["value"])
    return value


def _base(client: EngineClient) -> str:
    return client.base_url


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


async def outbox_drained(router: Running) -> bool | None:
    stats = await admin(router, "GET", "/outbox")
    return True if stats["pending"] == 0 and stats["dead"] == 0 else None


async def test_an_early_callback_is_kept_and_completes_the_instance_and_a_resend_is_harmless(
    engine_a: RunningEngine, routers: Routers
) -> None:
    url = engine_a.rest_urls[0]
    routers.engine(url)
    router = routers.start()
    quote_id = ids.new_uuid(SLOT)
    body = quote_put()
    async with engine_client(url) as client:
        instance = await start_held(client, quote_id)
        # The callback arrives while the flow is still held before its wait: an early callback.
        assert (await put_quote(router, quote_id, body)).status_code == 200
        assert (await put_quote(router, quote_id, body)).status_code == 200  # a resend
        assert await outbox_drained(router)  # both correlated at once: neither queued nor dead
        await release(client, instance)
        kept = await ended_with_callback(client, quote_id)
    assert kept["ok"] is True
    assert kept["body"] == body
    assert kept["headers"]["FSPIOP-Source"] == PAYEE


async def test_a_callback_for_an_ended_instance_is_reported_late_not_retried(
    engine_a: RunningEngine, routers: Routers
) -> None:
    url = engine_a.rest_urls[0]
    routers.engine(url)
    router = routers.start()
    quote_id = ids.new_ulid(SLOT)  # FSPIOP 2.0 ids route the same way
    body = quote_put()
    async with engine_client(url) as client:
        instance = await start_held(client, quote_id)
        assert (await put_quote(router, quote_id, body)).status_code == 200
        await release(client, instance)
        await ended_with_callback(client, quote_id)
    late = quote_put()
    assert (await put_quote(router, quote_id, late)).status_code == 200  # accepted, then reported
    stats = await admin(router, "GET", "/outbox")
    assert (stats["pending"], stats["dead"]) == (0, 1)


async def test_an_unreachable_engine_gets_its_callback_from_the_outbox(
    engine_a: RunningEngine, routers: Routers
) -> None:
    url = engine_a.rest_urls[0]
    routers.engine(f"http://127.0.0.1:{free_port()}/engine-rest")  # nothing listens there
    router = routers.start()
    quote_id = ids.new_uuid(SLOT)
    body = quote_put()
    async with engine_client(url) as client:
        instance = await start_held(client, quote_id)
        await release(client, instance)  # the flow waits for the callback from now on
        assert (await put_quote(router, quote_id, body)).status_code == 200  # safe in the outbox
        stats = await admin(router, "GET", "/outbox")
        assert stats["pending"] == 1
        assert stats["byEngine"] == {ENGINE: 1}
        assert stats["oldestAgeS"] >= 0

        down = await admin(router, "PUT", f"/engines/{ENGINE}/state", {"state": "down"})
        assert down["state"] == "down"
        assert json.loads(routers.registry.read_text())["engines"][0]["state"] == "down"
        routers.engine(url, EngineState.DOWN)  # the operator points it at the live engine
        up = await admin(router, "PUT", f"/engines/{ENGINE}/state", {"state": "accepting"})
        assert up == {**up, "state": "accepting", "engine_url": url}
        kept = await ended_with_callback(client, quote_id)
    assert kept["body"] == body
    assert await apoll(lambda: outbox_drained(router), what="outbox drained", deadline_s=30)
    listed = await admin(router, "GET", "/engines")
    assert listed["engines"][0]["state"] == "accepting"


async def test_a_router_restart_between_accept_and_delivery_loses_nothing(
    engine_a: RunningEngine, routers: Routers
) -> None:
    url = engine_a.rest_urls[0]
    routers.engine(f"http://127.0.0.1:{free_port()}/engine-rest")
    first = routers.start()
    quote_ids = [ids.new_uuid(SLOT) for _ in range(3)]
    bodies = {q: quote_put() for q in quote_ids}
    async with engine_client(url) as client:
        for quote_id in quote_ids:
            await release(client, await start_held(client, quote_id))
        for quote_id, body in bodies.items():
            assert (await put_quote(first, quote_id, body)).status_code == 200
        assert (await admin(first, "GET", "/outbox"))["pending"] == 3
        routers.stop(first)  # SIGTERM: the flush cannot reach the engine; the rows stay

        routers.engine(url)
        second = routers.start()  # same database: it finds the three and delivers them
        for quote_id in quote_ids:
            kept = await ended_with_callback(client, quote_id)
            assert kept["body"] == bodies[quote_id]
    assert await apoll(lambda: outbox_drained(second), what="outbox drained", deadline_s=30)
