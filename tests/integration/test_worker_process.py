"""The engine workers as a process against a real Operaton: how it stops.

A worker process long-polls the engine for tasks. Stopped with SIGTERM, it must finish what it
holds and end its pending poll; a poll left pending in the engine would lock the next task for
a process that no longer exists (the payment then waits for the lock to run out).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from harness.components.operaton import RunningEngine
from harness.services import start_service, stop_service
from phee.engine import EngineClient, TopicRequest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

#: an external task on a topic the workers serve, in a process of its own
PROBE = b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  xmlns:camunda="http://camunda.org/schema/1.0/bpmn"
                  id="probeDefinitions" targetNamespace="http://phee.local/test">
  <bpmn:process id="phee_worker_probe" isExecutable="true" camunda:historyTimeToLive="P1D">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="toProbe" sourceRef="start" targetRef="probe"/>
    <bpmn:serviceTask id="probe" camunda:type="external" camunda:topic="fspiop-party-lookup"/>
    <bpmn:sequenceFlow id="toEnd" sourceRef="probe" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>
"""


async def _probe_task_locked_by(rest: str) -> list[str]:
    """Start a probe instance; return the worker ids that can lock its task at once."""
    business_key = f"probe-{uuid.uuid4().hex[:12]}"
    async with EngineClient(rest) as client:
        await client.deploy("phee-worker-probe", {"probe.bpmn": PROBE})
        await client.start("phee_worker_probe", business_key=business_key, variables={})
        got = await client.fetch_and_lock(
            "probe-checker",
            [TopicRequest("fspiop-party-lookup", 10_000, business_key=business_key)],
            max_tasks=1,
            async_response_timeout_ms=5_000,
        )
        return [task.worker_id for task in got]


def test_a_stopped_worker_finishes_and_leaves_no_poll_that_locks_the_next_task(
    tmp_path: Path, engine_a: RunningEngine
) -> None:
    rest = engine_a.rest_urls[0]
    env = {
        "PHEE_DEV_MODE": "true",
        "PHEE_ENGINE_ENGINE_URL": rest,
        "PHEE_ENGINE_STORE_URL": f"sqlite:///{tmp_path / 'payments.db'}",
        "PHEE_ENGINE_WORKER_ID": "probe-worker-0",
    }
    # ready means serving HTTP; the worker's first long poll was sent before the server started
    workers = start_service("workers-probe", "engine_workers", tmp_path / "w", env=env)
    stop_service(workers)
    log = Path(workers.log_path).read_text()
    assert "workers stopped" in log, log  # the graceful stop ran to its end
    # the stopped worker's poll is gone: a new task goes to the next caller at once
    assert asyncio.run(_probe_task_locked_by(rest)) == ["probe-checker"]
