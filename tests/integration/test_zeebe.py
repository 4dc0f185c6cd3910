"""Zeebe with pyzeebe, and its Kafka exporter: an instance runs, its records reach Kafka."""

from __future__ import annotations

from harness.components import Running
from harness.engine_smoke import exported_records, instance_completed, run_instances
from phee.zeebe_export import topic_for


async def test_instance_completes_through_a_pyzeebe_worker(zeebe: Running) -> None:
    done = await run_instances(zeebe.endpoint("gateway"), count=3)
    assert [c.variables["doubled"] for c in done] == [0, 2, 4]
    assert len({c.process_instance_key for c in done}) == 3


async def test_exported_records_carry_partition_position_and_instance_key(
    zeebe: Running, kafka: Running
) -> None:
    (instance,) = await run_instances(zeebe.endpoint("gateway"), count=1)
    key = instance.process_instance_key
    records = await exported_records(
        kafka.endpoint("bootstrap"), topic_for("engine-a"), instance_completed(key)
    )
    mine = [r for r in records if r.get("value", {}).get("processInstanceKey") == key]
    # Created, activated, job created and completed, completed: a whole lifecycle, not a sample.
    intents = {(r["valueType"], r["intent"]) for r in mine}
    assert ("PROCESS_INSTANCE", "ELEMENT_ACTIVATED") in intents
    assert ("JOB", "CREATED") in intents
    assert ("JOB", "COMPLETED") in intents
    assert ("PROCESS_INSTANCE", "ELEMENT_COMPLETED") in intents
    for record in mine:
        assert record["partitionId"] == 1
        assert isinstance(record["position"], int)
        assert record["position"] > 0
        assert record["_kafka"]["key"] == {
            "partitionId": record["partitionId"],
            "position": record["position"],
        }
    # One Zeebe partition stays in order in one Kafka partition.
    assert len({r["_kafka"]["partition"] for r in mine}) == 1
    positions = [r["position"] for r in mine]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
