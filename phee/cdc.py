"""Change data capture of an engine's history: the Debezium connector configuration and the
record shape, shared by the operator (one connector per engine), the local site and the importer.

One Debezium PostgreSQL connector per engine database (decision 0013): `pgoutput`, one
replication slot and one publication named after the engine, the history tables
(`public.act_hi_*`) only, topics `<engine>.public.<table>`, JSON keys and values without
schemas. Everything here is pure: building a configuration talks to nobody (`phee.connect`
does the REST calls).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

POSTGRES_CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
#: Operaton's history tables, as PostgreSQL names them (unquoted, so lower case).
HISTORY_TABLES = r"public\.act_hi_.*"
#: the connector's name in Connect, its slot and its publication all start with this
PREFIX = "phee"
#: PostgreSQL identifiers (slot and publication names) are at most 63 bytes
_PG_NAME_MAX = 63
_ENGINE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


class EngineNameError(ValueError):
    """An engine name that cannot name a topic, a slot and a publication."""


def _checked(engine: str) -> str:
    if not _ENGINE.match(engine):
        raise EngineNameError(
            f"engine name {engine!r}: lower-case letters, digits and '-', starting with a letter,"
            " at most 40 characters (it names Kafka topics and PostgreSQL replication slots)"
        )
    return engine


def connector_name(engine: str) -> str:
    """The connector's name in Kafka Connect."""
    return f"{PREFIX}-cdc-{_checked(engine)}"


def slot_name(engine: str) -> str:
    """The engine database's logical replication slot (letters, digits and '_' only)."""
    return f"{PREFIX}_cdc_{_checked(engine).replace('-', '_')}"[:_PG_NAME_MAX]


def publication_name(engine: str) -> str:
    """The engine database's publication (the history tables only)."""
    return f"{PREFIX}_cdc_{_checked(engine).replace('-', '_')}"[:_PG_NAME_MAX]


def topic_for(engine: str, table: str, schema: str = "public") -> str:
    """The topic that carries one history table of one engine (Debezium's own naming)."""
    return f"{_checked(engine)}.{schema}.{table.lower()}"


def heartbeat_topic(engine: str) -> str:
    """Where the connector's heartbeats go (they let the slot advance while history is idle)."""
    return f"__debezium-heartbeat.{_checked(engine)}"


def teardown_sql(engine: str) -> list[str]:
    """What to run in the engine's database once its connector is removed for good: a slot
    nobody reads keeps all the WAL from its position on. (Fails while the slot is still in
    use: the connector's task lets go of it a moment after the removal.)"""
    slot = slot_name(engine)  # letters, digits and '_' only (checked engine name)
    return [
        "select pg_drop_replication_slot(slot_name) from pg_replication_slots"  # noqa: S608
        f" where slot_name = '{slot}'",
        f"drop publication if exists {publication_name(engine)}",
    ]


@dataclass(frozen=True)
class EngineDatabase:
    """Where one engine's PostgreSQL is, and who reads its log.

    The user needs the REPLICATION attribute and, for the publication Debezium creates, to own
    the history tables (or be superuser).
    """

    host: str
    port: int
    dbname: str
    user: str
    password: str = ""


def connector_config(
    engine: str,
    db: EngineDatabase,
    *,
    tables: str = HISTORY_TABLES,
    heartbeat_ms: int = 10_000,
    snapshot_mode: str = "initial",
    replication_factor: int = -1,
    poll_interval_ms: int = 100,
) -> dict[str, str]:
    """The Debezium PostgreSQL connector configuration for one engine (Connect's
    `PUT /connectors/{connector_name(engine)}/config` body).

    - `topic.prefix` is the engine name: topics are `<engine>.public.<table>` and every record's
      `source.name` is the engine.
    - `snapshot.mode=initial`: rows committed before the first registration come first (with
      `op` "r"), then the stream; once offsets exist a restart resumes from them instead.
    - `publication.autocreate.mode=filtered`: the publication lists the history tables that exist
      when the connector starts (the engine creates its schema before CDC is registered).
    - Topics are created by Connect with one partition: a table's changes stay in commit order
      (`replication_factor` -1 takes the broker's default).
    - No schemas in keys or values: smaller records; timestamps are epoch microseconds.
    - No tombstones: history cleanup's deletes arrive as `op` "d" records only.
    - `poll.interval.ms` 100 (Debezium's default 500): an idle connector waits that long for
      more changes before it hands a batch to Connect, which is most of the latency.
    - Heartbeats: without them a slot whose tables are idle holds back the WAL of every other
      table in the database (the runtime tables change all the time).
    """
    config = {
        "connector.class": POSTGRES_CONNECTOR_CLASS,
        "tasks.max": "1",
        "database.hostname": db.host,
        "database.port": str(db.port),
        "database.dbname": db.dbname,
        "database.user": db.user,
        "database.password": db.password,
        "topic.prefix": _checked(engine),
        "plugin.name": "pgoutput",
        "slot.name": slot_name(engine),
        "publication.name": publication_name(engine),
        "publication.autocreate.mode": "filtered",
        "table.include.list": tables,
        "snapshot.mode": snapshot_mode,
        "tombstones.on.delete": "false",
        "heartbeat.interval.ms": str(heartbeat_ms),
        "poll.interval.ms": str(poll_interval_ms),
        "topic.creation.default.partitions": "1",
        "topic.creation.default.replication.factor": str(replication_factor),
        "key.converter": JSON_CONVERTER,
        "key.converter.schemas.enable": "false",
        "value.converter": JSON_CONVERTER,
        "value.converter.schemas.enable": "false",
    }
    return config


@dataclass(frozen=True, order=True)
class Position:
    """The identity of one change event in its engine's log, for de-duplication.

    `lsn` is the row change's own WAL position: distinct for every change streamed from one
    engine, except that an update of a primary key gives a delete and a create at one LSN.
    Snapshot rows (`snapshot`) all carry the snapshot's LSN, which is also the LSN of the
    first change streamed after it. So the identity is (engine, snapshot, lsn, table, key).
    LSNs are not in delivery order across concurrent transactions (the stream is in commit
    order): keep a set of seen positions, not a high-water mark of LSNs.
    """

    engine: str
    snapshot: bool
    lsn: int
    table: str
    key: str


def position(value: Mapping[str, Any], key: Mapping[str, Any] | None) -> Position:
    """The position of one change event (its JSON value and key, as the connector writes them)."""
    source = value["source"]
    row_key = ",".join(f"{k}={v}" for k, v in sorted((key or {}).items()))
    return Position(
        engine=str(source["name"]),
        snapshot=str(source.get("snapshot", "false")) != "false",
        lsn=int(source["lsn"]),
        table=str(source["table"]),
        key=row_key,
    )
