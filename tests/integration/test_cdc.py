"""Change data capture of two engines' history: real PostgreSQL (wal_level=logical), real Kafka,
a real Kafka Connect worker with Debezium's PostgreSQL connector (decision 0013).

Each engine is its own database with Operaton's history tables; one connector per engine
(`phee.cdc.connector_config`) registered over Connect's REST API (`phee.connect`). What the
importer leans on: every committed row arrives, in its own engine's topics, naming the engine
and its LSN; rolled-back work never does; registering twice changes nothing; a crashed worker's
successor loses nothing (it may repeat, and `phee.cdc.position` tells repeats apart).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer

from harness.components import Running, get
from harness.components.connect import engine_status, register_engine, remove_engine
from phee import cdc
from phee.connect import ConnectClient, ConnectError
from phee.kafka import Consumer, Record, ToEnd, Until, consuming, read_from_start
from tests.conftest import start_component
from tests.support import poll

pytestmark = pytest.mark.timeout(300)

SCHEMA = Path(__file__).resolve().parents[1] / "resources" / "cdc" / "operaton_history.sql"
ENGINES = ("engine-a", "engine-b")
LOGICAL = {"wal_level": "logical", "max_replication_slots": "10", "max_wal_senders": "10"}
#: per-engine rows committed before the connector exists (they come from the snapshot)
EARLY_ROWS = 3


@dataclass(frozen=True)
class Change:
    """One change event as the importer will read it."""

    topic: str
    offset: int
    key: dict[str, Any]
    value: dict[str, Any]

    @property
    def row(self) -> dict[str, Any]:
        after = self.value["after"] or self.value["before"]
        assert isinstance(after, dict)
        return after

    @property
    def source(self) -> dict[str, Any]:
        source = self.value["source"]
        assert isinstance(source, dict)
        return source

    @property
    def position(self) -> cdc.Position:
        return cdc.position(self.value, self.key)


def _change(record: Record) -> Change:
    assert record.key is not None
    assert record.value is not None
    return Change(record.topic, record.offset, json.loads(record.key), json.loads(record.value))


class Connect:
    """The Connect worker of this module; `restart` replaces it (same group, same topics)."""

    def __init__(self, workdir: Path, bootstrap: str) -> None:
        self.workdir, self.bootstrap = workdir, bootstrap
        self.group = f"cdc-{uuid.uuid4().hex[:8]}"
        self.starts = 0
        self.run = self._start()

    def _start(self) -> Running:
        self.starts += 1
        return start_component(
            "kafka-connect",
            self.workdir / f"start-{self.starts}",
            bootstrap=self.bootstrap,
            group_id=self.group,
        )

    def crash(self) -> None:
        """SIGKILL: no offset flush, no clean shutdown of the task."""
        os.kill(self.run.pid, signal.SIGKILL)
        get("kafka-connect").stop(self.run)  # reaps it

    def restart(self) -> None:
        self.run = self._start()

    def stop(self) -> None:
        get("kafka-connect").stop(self.run)


@dataclass(frozen=True)
class EngineDb:
    engine: str
    db: cdc.EngineDatabase

    def dsn(self) -> str:
        return (
            f"host={self.db.host} port={self.db.port} user={self.db.user} dbname={self.db.dbname}"
        )

    def execute(self, *statements: tuple[str, tuple[Any, ...]]) -> None:
        """Run the statements in one transaction and commit it."""
        with psycopg.connect(self.dsn()) as conn, conn.transaction():
            for sql, params in statements:
                conn.execute(sql, params)

    def topic(self, table: str) -> str:
        return cdc.topic_for(self.engine, table)


def _procinst(row_id: str, state: str = "ACTIVE") -> tuple[str, tuple[Any, ...]]:
    return (
        "insert into act_hi_procinst (id_, proc_inst_id_, business_key_, proc_def_key_,"
        " proc_def_id_, start_time_, state_) values (%s, %s, %s, 'payer', 'payer:1:x', now(), %s)",
        (row_id, row_id, f"bk-{row_id}", state),
    )


def _varinst(row_id: str, proc_inst: str, name: str, text: str) -> tuple[str, tuple[Any, ...]]:
    return (
        "insert into act_hi_varinst (id_, proc_inst_id_, name_, var_type_, create_time_, rev_,"
        " text_, state_) values (%s, %s, %s, 'string', now(), 0, %s, 'CREATED')",
        (row_id, proc_inst, name, text),
    )


def _complete(row_id: str) -> tuple[str, tuple[Any, ...]]:
    return (
        "update act_hi_procinst set state_ = 'COMPLETED', end_time_ = now(), duration_ = 42"
        " where id_ = %s",
        (row_id,),
    )


async def _topics(bootstrap: str) -> set[str]:
    """The cluster's topics, asked without naming any (which would auto-create them)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return set(await consumer.topics())
    finally:
        await consumer.stop()


def _wait_topic(bootstrap: str, topic: str) -> None:
    """A reader that subscribes first makes the broker auto-create the topic with its default
    partitions (this Kafka allows it); Connect creates it with one when it writes first."""
    poll(
        lambda: topic in asyncio.run(_topics(bootstrap)),
        what=f"topic {topic} created by Connect",
        deadline_s=60,
    )


def _read(bootstrap: str, topic: str, done: Any, timeout_s: float = 90) -> list[Change]:
    """Every record of `topic` from its start until `done(changes)` holds."""
    _wait_topic(bootstrap, topic)
    return asyncio.run(
        read_from_start(bootstrap, topic, Until(done, timeout_s=timeout_s), decode=_change)
    )


def _all(bootstrap: str, topic: str) -> list[Change]:
    """Every record `topic` holds now (up to its committed end when reading began)."""
    _wait_topic(bootstrap, topic)
    return asyncio.run(read_from_start(bootstrap, topic, ToEnd(timeout_s=60), decode=_change))


def _ids(changes: list[Change]) -> set[str]:
    return {str(c.key["id_"]) for c in changes}


def _has(*ids: str) -> Any:
    return lambda changes: set(ids) <= _ids(changes)


@pytest.fixture(scope="module")
def cdc_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    comp = get("postgresql")
    run = start_component("postgresql", tmp_path_factory.mktemp("cdc-pg"), settings=LOGICAL)
    try:
        yield run
    finally:
        comp.stop(run)


@pytest.fixture(scope="module")
def engines(cdc_postgres: Running) -> dict[str, EngineDb]:
    """Two engine databases with the history schema and a few rows from before CDC."""
    port = cdc_postgres.ports["sql"]
    made = {}
    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres", autocommit=True) as admin:
        for engine in ENGINES:
            dbname = engine.replace("-", "_")
            admin.execute(f"create database {dbname}")
            db = EngineDb(engine, cdc.EngineDatabase("127.0.0.1", port, dbname, "postgres"))
            with psycopg.connect(db.dsn(), autocommit=True) as conn:
                conn.execute(SCHEMA.read_text())
            db.execute(*(_procinst(f"{engine}-early-{i}") for i in range(EARLY_ROWS)))
            made[engine] = db
    return made


@pytest.fixture(scope="module")
def connect(
    tmp_path_factory: pytest.TempPathFactory, kafka: Running, engines: dict[str, EngineDb]
) -> Iterator[Connect]:
    """One worker with both engines' connectors registered and running."""
    worker = Connect(tmp_path_factory.mktemp("cdc-connect"), kafka.endpoint("bootstrap"))
    try:
        for engine, db in engines.items():
            assert register_engine(worker.run, engine, db.db).created
        for engine in engines:
            _wait_running(worker.run, engine)
        yield worker
    finally:
        worker.stop()


def _wait_running(run: Running, engine: str) -> None:
    def running() -> bool:
        status = engine_status(run, engine)
        assert status is not None, f"{engine} has no connector"
        assert not status.failures, status.failures
        return status.running

    poll(running, what=f"{engine}'s connector running", deadline_s=60)


def test_every_committed_row_arrives_in_its_own_engines_topics_with_name_and_lsn(
    connect: Connect, engines: dict[str, EngineDb]
) -> None:
    bootstrap = connect.bootstrap
    tag = uuid.uuid4().hex[:6]
    for engine, db in engines.items():
        pi = f"{engine}-{tag}"
        db.execute(
            _procinst(pi),
            _varinst(f"{pi}-v1", pi, "transferAmount", "100"),
            _varinst(f"{pi}-v2", pi, "currency", "USD"),
        )
        db.execute(_complete(pi))
        db.execute(("insert into act_ru_execution values (%s, 1, %s)", (pi, pi)))

    for engine, db in engines.items():
        pi = f"{engine}-{tag}"
        early = [f"{engine}-early-{i}" for i in range(EARLY_ROWS)]
        procs = _read(
            bootstrap,
            db.topic("act_hi_procinst"),
            lambda cs, pi=pi: any(c.key["id_"] == pi and c.value["op"] == "u" for c in cs),
        )
        vars_ = _read(bootstrap, db.topic("act_hi_varinst"), _has(f"{pi}-v1", f"{pi}-v2"))
        changes = procs + vars_
        # only this engine's rows, each naming the engine, its database and an LSN
        assert all(str(c.key["id_"]).startswith(engine) for c in changes)
        assert {c.source["name"] for c in changes} == {engine}
        assert {c.source["db"] for c in changes} == {db.db.dbname}
        assert all(isinstance(c.source["lsn"], int) and c.source["lsn"] > 0 for c in changes)
        # rows from before the connector came from the snapshot (op "r"), the rest streamed
        snapshot = {str(c.key["id_"]) for c in procs if c.value["op"] == "r"}
        assert snapshot == set(early)
        mine = [c for c in procs if c.key["id_"] == pi]
        assert [c.value["op"] for c in mine] == ["c", "u"]
        assert mine[0].row["state_"] == "ACTIVE"
        assert mine[1].row["state_"] == "COMPLETED"
        assert mine[1].row["duration_"] == 42
        assert mine[1].row["business_key_"] == f"bk-{pi}"
        assert {c.row["name_"]: c.row["text_"] for c in vars_ if pi in c.key["id_"]} == {
            "transferAmount": "100",
            "currency": "USD",
        }
        # the transaction's three rows share its txId and each has its own LSN
        first_tx = [c for c in changes if c.key["id_"] in (pi, f"{pi}-v1", f"{pi}-v2")]
        first_tx = [c for c in first_tx if c.value["op"] == "c"]
        assert len({c.source["txId"] for c in first_tx}) == 1
        assert len({c.source["lsn"] for c in first_tx}) == 3
        assert len({c.position for c in changes}) == len(changes)

    # the runtime table is not captured: no topic ever carried it
    async def partitions(topic: str) -> int:
        async with consuming(Consumer(bootstrap, topics=[topic])) as consumer:
            return len(await consumer.partitions())

    names = asyncio.run(_topics(bootstrap))
    assert not [t for t in names if "act_ru_" in t]
    for engine in engines:
        for table in ("act_hi_procinst", "act_hi_varinst"):
            # one partition per table: the importer reads each table in commit order
            assert asyncio.run(partitions(cdc.topic_for(engine, table))) == 1


def test_a_rolled_back_transaction_never_appears(
    connect: Connect, engines: dict[str, EngineDb]
) -> None:
    db = engines["engine-a"]
    tag = uuid.uuid4().hex[:6]
    rolled_back, marker = f"engine-a-rb-{tag}", f"engine-a-after-rb-{tag}"
    with psycopg.connect(db.dsn()) as conn:
        conn.execute(*_procinst(rolled_back))
        conn.execute(*_varinst(f"{rolled_back}-v", rolled_back, "x", "y"))
        conn.rollback()
    db.execute(_procinst(marker))  # committed after the rollback: once it is there, so is all
    procs = _read(connect.bootstrap, db.topic("act_hi_procinst"), _has(marker))
    vars_ = _all(connect.bootstrap, db.topic("act_hi_varinst"))
    assert vars_  # earlier tests' variables: the topic is read
    assert rolled_back not in _ids(procs)
    assert not [i for i in _ids(vars_) if rolled_back in i]


def test_the_stream_is_in_commit_order_and_lsns_are_not(
    connect: Connect, engines: dict[str, EngineDb]
) -> None:
    """Two overlapping transactions: the one that began writing first commits last. Its rows
    come after the other's, with lower LSNs: LSNs identify changes, they do not order them."""
    db = engines["engine-b"]
    tag = uuid.uuid4().hex[:6]
    early, late = f"engine-b-early-writer-{tag}", f"engine-b-late-writer-{tag}"
    with psycopg.connect(db.dsn()) as first, psycopg.connect(db.dsn()) as second:
        first.execute(*_procinst(early))  # first writes, but does not commit yet
        second.execute(*_procinst(late))
        second.commit()
        first.execute(*_varinst(f"{early}-v", early, "n", "v"))
        first.commit()
    procs = _read(connect.bootstrap, db.topic("act_hi_procinst"), _has(early, late))
    order = [c for c in procs if c.key["id_"] in (early, late)]
    assert [c.key["id_"] for c in order] == [late, early]  # commit order (one partition)
    assert order[1].source["lsn"] < order[0].source["lsn"]
    assert order[0].source["txId"] != order[1].source["txId"]


def test_registering_again_is_idempotent(connect: Connect, engines: dict[str, EngineDb]) -> None:
    db = engines["engine-a"]
    before = _all(connect.bootstrap, db.topic("act_hi_procinst"))
    assert before
    for _ in range(2):
        again = register_engine(connect.run, "engine-a", db.db)
        assert not again.created
    _wait_running(connect.run, "engine-a")

    async def state() -> tuple[list[str], dict[str, str] | None]:
        async with ConnectClient(connect.run.endpoint("rest")) as client:
            return await client.connectors(), await client.config(cdc.connector_name("engine-a"))

    connectors, config = asyncio.run(state())
    assert sorted(connectors) == sorted(cdc.connector_name(e) for e in ENGINES)
    assert config is not None
    assert {k: v for k, v in config.items() if k != "name"} == cdc.connector_config(
        "engine-a", db.db
    )
    marker = f"engine-a-after-reregister-{uuid.uuid4().hex[:6]}"
    db.execute(_procinst(marker))
    after = _read(connect.bootstrap, db.topic("act_hi_procinst"), _has(marker))
    # nothing was sent again (no second snapshot, no replay): just the new row
    assert [c.key["id_"] for c in after[len(before) :]] == [marker]
    assert [c.position for c in after[: len(before)]] == [c.position for c in before]


def test_connector_calls_fail_as_our_error_and_removal_is_idempotent(
    connect: Connect, engines: dict[str, EngineDb]
) -> None:
    url = connect.run.endpoint("rest")
    wrong = cdc.EngineDatabase("127.0.0.1", 1, "nowhere", "postgres")

    async def calls() -> None:
        async with ConnectClient(url) as client:
            assert cdc.POSTGRES_CONNECTOR_CLASS in await client.plugins()
            with pytest.raises(ConnectError) as refused:  # Debezium validates the connection
                await client.put("phee-cdc-broken", cdc.connector_config("broken", wrong))
            assert refused.value.status == 400
            assert "database.hostname" in str(refused.value) or "database" in str(refused.value)
            assert not refused.value.retryable
            assert await client.status("phee-cdc-broken") is None
            assert await client.status("no-such-connector") is None
        async with ConnectClient("http://127.0.0.1:1") as down:
            with pytest.raises(ConnectError) as unreachable:
                await down.connectors()
            assert unreachable.value.retryable
            assert unreachable.value.status is None

    asyncio.run(calls())
    # a third engine comes and goes; the other two are untouched
    db = engines["engine-a"]
    assert register_engine(connect.run, "engine-c", db.db).created
    _wait_running(connect.run, "engine-c")
    assert remove_engine(connect.run, "engine-c")
    poll(
        lambda: engine_status(connect.run, "engine-c") is None,
        what="engine-c's connector gone",
        deadline_s=30,
    )
    assert not remove_engine(connect.run, "engine-c")

    def slots() -> set[str]:
        with psycopg.connect(db.dsn(), autocommit=True) as conn:
            rows = conn.execute(
                "select slot_name from pg_replication_slots where database = current_database()"
            )
            return {str(r[0]) for r in rows}

    assert cdc.slot_name("engine-c") in slots()  # removal leaves the slot: the operator drops it

    def dropped() -> bool:
        with psycopg.connect(db.dsn(), autocommit=True) as conn:
            for sql in cdc.teardown_sql("engine-c"):
                conn.execute(sql)
        return True

    poll(dropped, what="engine-c's slot dropped once released", deadline_s=30)
    assert slots() == {cdc.slot_name("engine-a")}
    for engine in ENGINES:
        _wait_running(connect.run, engine)


def test_after_a_connect_crash_nothing_is_lost(
    connect: Connect, engines: dict[str, EngineDb]
) -> None:
    tag = uuid.uuid4().hex[:6]
    expected: dict[str, set[str]] = {}
    for engine, db in engines.items():  # committed while the worker runs...
        ids = [f"{engine}-crash-{tag}-{i}" for i in range(20)]
        db.execute(*(_procinst(i) for i in ids[:10]))
        expected[engine] = set(ids)
    connect.crash()
    for engine, db in engines.items():  # ... and while it is down
        ids = sorted(expected[engine])
        db.execute(*(_procinst(i) for i in ids if int(i.rsplit("-", 1)[1]) >= 10))
        db.execute(_complete(f"{engine}-crash-{tag}-0"))
    connect.restart()  # same group: it finds its connectors and offsets, nobody registers
    for engine in engines:
        _wait_running(connect.run, engine)
    for engine, db in engines.items():
        want = expected[engine]
        changes = _read(
            connect.bootstrap,
            db.topic("act_hi_procinst"),
            lambda cs, want=want, e=engine: (
                want <= _ids(cs)
                and any(c.key["id_"] == f"{e}-crash-{tag}-0" and c.value["op"] == "u" for c in cs)
            ),
        )
        mine = [c for c in changes if c.key["id_"] in want]
        # every committed change is there; repeats (if any) share their position
        unique = {c.position: c for c in mine}
        assert len(unique) == len(want) + 1  # 20 inserts and one update
        assert {c.source["name"] for c in mine} == {engine}
