"""Reading what an engine's change-data-capture stream put on Kafka (the site's report, tests).

Each engine's history reaches Kafka through Debezium (`phee.cdc`): one topic per history table,
`<engine>.public.<table>`, JSON values without schemas.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from phee.kafka import Record, Until, read_from_start

#: an `exported_records` condition over the records read so far
Condition = Callable[[Sequence[dict[str, Any]]], bool]


async def exported_records(
    bootstrap: str, topic: str, until: Condition, timeout_s: float = 60.0
) -> list[dict[str, Any]]:
    """Read a topic from the start until `until(records)` holds.

    Each returned item is the record's JSON with the Kafka partition, offset and key added
    under `_kafka`.
    """
    return await read_from_start(bootstrap, topic, Until(until, timeout_s), decode=_exported)


def _exported(msg: Record) -> dict[str, Any] | None:
    if msg.value is None:  # a tombstone: the connector is configured to send none
        return None
    record: dict[str, Any] = json.loads(msg.value)
    key = json.loads(msg.key) if msg.key else None
    record["_kafka"] = {"partition": msg.partition, "offset": msg.offset, "key": key}
    return record
