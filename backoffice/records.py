"""Decoding the Zeebe Kafka exporter's records (Zeebe's own `Record.toJson()` form).

Only the envelope is checked here: the fields every record has, with their types. What a record
means for a payment is `mapping.py`'s business. A record that cannot be decoded raises
`BadRecord`, which the importer counts, logs and sends to the dead-letter topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import orjson

#: Zeebe 8.5 value types; anything else is a record this importer does not understand
KNOWN_VALUE_TYPES = frozenset(
    {
        "JOB", "DEPLOYMENT", "PROCESS_INSTANCE", "INCIDENT", "MESSAGE", "MESSAGE_BATCH",
        "MESSAGE_SUBSCRIPTION", "PROCESS_MESSAGE_SUBSCRIPTION", "JOB_BATCH", "TIMER",
        "MESSAGE_START_EVENT_SUBSCRIPTION", "VARIABLE", "VARIABLE_DOCUMENT",
        "PROCESS_INSTANCE_CREATION", "ERROR", "PROCESS_INSTANCE_RESULT", "PROCESS",
        "DEPLOYMENT_DISTRIBUTION", "PROCESS_EVENT", "DECISION", "DECISION_REQUIREMENTS",
        "DECISION_EVALUATION", "PROCESS_INSTANCE_MODIFICATION", "ESCALATION",
        "SIGNAL_SUBSCRIPTION", "SIGNAL", "RESOURCE_DELETION", "COMMAND_DISTRIBUTION",
        "PROCESS_INSTANCE_BATCH", "FORM", "USER_TASK", "PROCESS_INSTANCE_MIGRATION",
        "COMPENSATION_SUBSCRIPTION", "CHECKPOINT", "MESSAGE_CORRELATION",
    }
)  # fmt: skip
RECORD_TYPES = frozenset({"EVENT", "COMMAND", "COMMAND_REJECTION"})


class BadRecord(Exception):
    """A record the importer cannot use; `reason` is a short label for metrics and headers."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ZeebeRecord:
    """One exported record of one engine; (engine, partition, position) identifies it."""

    engine: str
    partition: int
    position: int
    key: int
    record_type: str
    value_type: str
    intent: str
    timestamp: int  # epoch milliseconds, as Zeebe writes it
    value: dict[str, Any]
    raw: bytes
    #: the process instance the record belongs to (None: deployments, messages, ...)
    process_instance_key: int | None

    @cached_property
    def at(self) -> datetime:
        """The record's timestamp as an aware UTC datetime (computed once: rows, transfers and
        audit entries all need it)."""
        return datetime.fromtimestamp(self.timestamp / 1000, tz=UTC)

    @property
    def source(self) -> str:
        """A printable id of the record, unique across engines."""
        return f"{self.engine}/{self.partition}/{self.position}"


_INT_FIELDS = ("partitionId", "position", "key", "timestamp")
_STR_FIELDS = ("recordType", "valueType", "intent")


def decode(engine: str, raw: bytes | None) -> ZeebeRecord:
    """The record in `raw` (a Kafka message value), or BadRecord saying what is wrong."""
    if not raw:
        raise BadRecord("empty", "the message has no value")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise BadRecord("malformed", f"not JSON: {err}") from None
    if not isinstance(doc, dict):
        raise BadRecord("malformed", "the record is not a JSON object")
    for name in _INT_FIELDS:
        if not isinstance(doc.get(name), int) or isinstance(doc.get(name), bool):
            raise BadRecord("malformed", f"field {name} is missing or not an integer")
    for name in _STR_FIELDS:
        if not isinstance(doc.get(name), str):
            raise BadRecord("malformed", f"field {name} is missing or not a string")
    value = doc.get("value")
    if not isinstance(value, dict):
        raise BadRecord("malformed", "field value is missing or not an object")
    if doc["recordType"] not in RECORD_TYPES:
        raise BadRecord("unknown-record-type", f"record type {doc['recordType']!r}")
    if doc["valueType"] not in KNOWN_VALUE_TYPES:
        raise BadRecord("unknown-value-type", f"value type {doc['valueType']!r}")
    if doc["partitionId"] < 1 or doc["position"] < 0:
        raise BadRecord("malformed", "partitionId or position out of range")
    return ZeebeRecord(
        engine=engine,
        partition=doc["partitionId"],
        position=doc["position"],
        key=doc["key"],
        record_type=doc["recordType"],
        value_type=doc["valueType"],
        intent=doc["intent"],
        timestamp=doc["timestamp"],
        value=value,
        raw=raw,
        process_instance_key=pik
        if isinstance(pik := value.get("processInstanceKey"), int) and pik > 0
        else None,
    )
