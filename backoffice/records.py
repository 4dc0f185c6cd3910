"""Decoding Debezium's change events of an engine's history tables (decision 0013).

A Kafka message of topic `<engine>.public.act_hi_<table>` carries the row's primary key as its
key (`{"id_": ...}`) and the change as its value (`before`, `after`, `source`, `op`), JSON
without schemas, timestamps in epoch microseconds. Only the envelope is checked here; what a
change means for a payment is `mapping.py`'s business. A record that cannot be decoded raises
`BadRecord`, which the importer counts, logs and sends to the dead-letter topic.

A record's identity is `phee.cdc.position` (engine, snapshot?, LSN, table, primary key): LSNs
alone repeat (a snapshot's rows share one) and are not in delivery order, so the importer keeps
the positions it has seen, never a high-water mark.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import orjson

from phee import cdc

#: Debezium operations: snapshot read, create, update, delete
OPS = frozenset({"r", "c", "u", "d"})
#: the longest position text stored (a key column on MariaDB too)
POSITION_MAX = 200


class BadRecord(Exception):
    """A record the importer cannot use; `reason` is a short label for metrics and headers."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def position_text(pos: cdc.Position) -> str:
    """`pos` as one string, unique per engine (the engine is a column of its own):
    `<s|w><lsn>/<table>/<key>`, with long keys (activity instance ids) hashed."""
    text = f"{'s' if pos.snapshot else 'w'}{pos.lsn}/{pos.table}/{pos.key}"
    if len(text) > POSITION_MAX:
        digest = hashlib.sha256(pos.key.encode()).hexdigest()[:32]
        text = f"{text[: POSITION_MAX - 34]}~{digest}"
    return text


@dataclass(frozen=True)
class CdcRecord:
    """One change event of one engine's history table; (engine, position) identifies it."""

    engine: str
    table: str  #: the history table, e.g. act_hi_procinst
    op: str  #: r (snapshot), c, u or d
    position: str  #: `position_text(phee.cdc.position(value, key))`
    lsn: int
    tx_id: int | None
    row: dict[str, Any]  #: `after`, or `before` for a delete
    committed_us: int  #: source.ts_us (or ts_ms * 1000): when the engine committed it
    key: bytes
    raw: bytes
    #: the process instance the row belongs to (None: rows of no instance)
    process_instance_id: str | None

    @cached_property
    def at(self) -> datetime:
        """When the change was committed, as an aware UTC datetime."""
        return datetime.fromtimestamp(self.committed_us / 1_000_000, tz=UTC)

    @property
    def source(self) -> str:
        """A printable id of the record, unique across engines."""
        return f"{self.engine}/{self.position}"

    def timestamp(self, column: str) -> datetime | None:
        """A timestamp column of the row (epoch microseconds) as an aware UTC datetime."""
        value = self.row.get(column)
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        return datetime.fromtimestamp(value / 1_000_000, tz=UTC)


def _object(raw: bytes | None, what: str) -> dict[str, Any]:
    if not raw:
        raise BadRecord("empty", f"the message has no {what}")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise BadRecord("malformed", f"{what} is not JSON: {err}") from None
    if not isinstance(doc, dict):
        raise BadRecord("malformed", f"{what} is not a JSON object")
    return doc


def decode(engine: str, table: str, key: bytes | None, raw: bytes | None) -> CdcRecord:
    """The change event in a Kafka message of `engine`'s topic for `table`, or BadRecord."""
    value = _object(raw, "value")
    row_key = _object(key, "key")
    op = value.get("op")
    if op not in OPS:
        raise BadRecord("unknown-op", f"op {op!r}")
    source = value.get("source")
    if not isinstance(source, dict):
        raise BadRecord("malformed", "field source is missing or not an object")
    if source.get("name") != engine or source.get("table") != table:
        raise BadRecord(
            "wrong-topic",
            f"a change of {source.get('name')!r}/{source.get('table')!r} in the topic of"
            f" {engine!r}/{table!r}",
        )
    row = value.get("before" if op == "d" else "after")
    if not isinstance(row, dict):
        raise BadRecord("malformed", "the changed row is missing or not an object")
    try:
        pos = cdc.position(value, row_key)
    except (KeyError, TypeError, ValueError) as err:
        raise BadRecord("malformed", f"no log position: {err!r}") from None
    stamp = source.get("ts_us")
    if not isinstance(stamp, int):
        ms = source.get("ts_ms")
        if not isinstance(ms, int):
            raise BadRecord("malformed", "source.ts_ms is missing or not an integer")
        stamp = ms * 1000
    tx = source.get("txId")
    pid = row.get("proc_inst_id_", row.get("process_instance_id_"))
    return CdcRecord(
        engine=engine,
        table=table,
        op=op,
        position=position_text(pos),
        lsn=pos.lsn,
        tx_id=tx if isinstance(tx, int) else None,
        row=row,
        committed_us=stamp,
        key=key or b"",
        raw=raw or b"",
        process_instance_id=pid if isinstance(pid, str) and pid else None,
    )


def split_topic(topic: str) -> tuple[str, str] | None:
    """(engine, table) of a history topic `<engine>.public.act_hi_<table>`, else None."""
    engine, dot, rest = topic.partition(".public.")
    if not dot or not engine or not rest.startswith("act_hi_"):
        return None
    return engine, rest
