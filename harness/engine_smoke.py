"""A smoke check of one engine through pyzeebe: deploy, create instances, work jobs, complete.

Used by the Zeebe smoke test and by `phee site up` to prove each engine really executes
processes (and, through its exporter, feeds Kafka) before the site is reported up.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pyzeebe import ZeebeClient, ZeebeWorker, create_insecure_channel

from harness import resources
from phee.kafka import Record, Until, read_from_start

PROCESS_ID = "phee-smoke"
TASK_TYPE = "phee-smoke"


@dataclass(frozen=True)
class Completed:
    """One process instance that ran to its end event."""

    process_instance_key: int
    variables: dict[str, Any]


async def run_instances(gateway: str, count: int, timeout_s: float = 60.0) -> list[Completed]:
    """Deploy the smoke process, run `count` instances with a worker, return them completed."""
    channel = create_insecure_channel(grpc_address=gateway)
    try:
        client = ZeebeClient(channel)
        await client.deploy_resource(str(resources.path("phee-smoke.bpmn")))
        worker = ZeebeWorker(channel)

        # pyzeebe's decorator is typed with a ParamSpec union mypy cannot solve.
        @worker.task(task_type=TASK_TYPE)  # type: ignore[arg-type]
        async def double(n: int) -> dict[str, int]:
            return {"doubled": n * 2}

        working = asyncio.create_task(worker.work())
        try:
            done = []
            for n in range(count):
                result = await client.run_process_with_result(
                    PROCESS_ID, {"n": n}, timeout=int(timeout_s * 1000)
                )
                done.append(Completed(result.process_instance_key, dict(result.variables)))
            return done
        finally:
            await worker.stop()
            await working
    finally:
        await channel.close()


#: an `exported_records` condition over the records read so far
Condition = Callable[[Sequence[dict[str, Any]]], bool]


async def exported_records(
    bootstrap: str, topic: str, until: Condition, timeout_s: float = 60.0
) -> list[dict[str, Any]]:
    """Read an engine's export topic from the start until `until(records)` holds.

    Each returned item is the record's JSON with the Kafka partition and key added under
    `_kafka`, so callers can check both Zeebe's (partitionId, position) and Kafka's view.
    """
    return await read_from_start(bootstrap, topic, Until(until, timeout_s), decode=_exported)


def _exported(msg: Record) -> dict[str, Any] | None:
    if msg.value is None:  # a tombstone: the exporter never sends one
        return None
    record: dict[str, Any] = json.loads(msg.value)
    key = json.loads(msg.key) if msg.key else None
    record["_kafka"] = {"partition": msg.partition, "offset": msg.offset, "key": key}
    return record


def instance_completed(key: int) -> Condition:
    """`until` condition: the process instance `key` reached ELEMENT_COMPLETED for the process."""

    def check(records: Sequence[dict[str, Any]]) -> bool:
        return any(
            r.get("valueType") == "PROCESS_INSTANCE"
            and r.get("intent") == "ELEMENT_COMPLETED"
            and r.get("recordType") == "EVENT"
            and r["value"].get("bpmnElementType") == "PROCESS"
            and r["value"].get("processInstanceKey") == key
            for r in records
        )

    return check
