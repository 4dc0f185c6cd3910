"""The importer against the real chain: Operaton (PostgreSQL, logical WAL) -> Debezium on Kafka
Connect -> Kafka -> importer -> SQLite, MariaDB or PostgreSQL.

One engine runs three real payments once (tests/support/cdc_payments.py: a payer payment
committed, one aborted after a resolved incident, a payee instance still running); every test
imports that engine's history topics into a fresh database with a fresh consumer group and
checks it landed exactly once: after a clean run, after `kill -9` of the importer mid-import and
a restart, and with a second importer joining the group (a rebalance) mid-import.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import func, select, text

from backoffice import audit, schema
from backoffice.db import Database
from backoffice.importer import Importer
from backoffice.settings import BackofficeSettings
from harness.components import Running
from harness.components.base import free_port
from phee.kafka import Message, Producer
from tests.support import poll
from tests.support.backoffice import (
    count,
    fresh_database_url,
    read_topic,
    run_importer_until,
    transfers,
)
from tests.support.cdc_payments import CdcSite, cdc_site, connect_engine, run_payments

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

#: rows the three payments leave in the tenant tables with the engine's history level `phee`
#: (decision 0019: procinst 5 + actinst 24 steps; the unit tests' capture is level `full`)
STEPS, VARIABLES, INCIDENTS = 29, 44, 2
EXPECTED = {"COMMITTED", "ABORTED", "IN_PROGRESS"}
AUDIT_KEY = "audit-key-for-tests"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, kafka: Running) -> Iterator[tuple[CdcSite, str]]:
    """One engine with CDC registered, its three payments done; (site, engine name)."""
    name = f"bo-{uuid.uuid4().hex[:6]}"
    with cdc_site(tmp_path_factory.mktemp("bo-cdc"), kafka) as s:
        connect_engine(s.connect, name, s.engine)
        expected = asyncio.run(run_payments(s.engine.rest_urls[0]))
        assert sorted(expected.values()) == sorted(EXPECTED)
        yield s, name


def settings_for(bootstrap: str, url: str, engine: str, **extra: Any) -> BackofficeSettings:
    tag = uuid.uuid4().hex[:6]
    return BackofficeSettings(
        database_url=url,
        kafka_bootstrap=bootstrap,
        engines=[engine],
        group_id=f"g-{tag}",
        dead_letter_topic=f"dlq-{tag}",
        tenants=["default"],
        metadata_max_age_ms=1000,
        audit_key=SecretStr(AUDIT_KEY),
        **extra,
    )


def complete(db: Database) -> bool:
    """Every row of the three payments is in, and each payment has its final word."""
    return (
        count(db, "default", schema.steps) >= STEPS
        and count(db, "default", schema.variables) >= VARIABLES
        and count(db, "default", schema.incidents) >= INCIDENTS
        and {r["status"] for r in transfers(db, "default")} == EXPECTED
    )


def assert_exactly_once(db: Database) -> None:
    assert count(db, "default", schema.steps) == STEPS
    assert count(db, "default", schema.variables) == VARIABLES
    assert count(db, "default", schema.incidents) == INCIDENTS
    rows = transfers(db, "default")
    assert sorted(r["status"] for r in rows) == sorted(EXPECTED)
    assert audit.verify(db, "default", AUDIT_KEY.encode()) == []
    with db.begin() as conn:
        t = db.tenant(conn, "default")
        entries = t.execute(select(func.count()).select_from(schema.audit_log)).scalar_one()
        sources = t.execute(
            select(func.count(func.distinct(schema.audit_log.c.source)))
        ).scalar_one()
        pending = conn.execute(select(func.count()).select_from(schema.pending_records)).scalar()
    assert entries == sources > 0
    assert pending == 0


@pytest.mark.parametrize("kind", ["sqlite", "mariadb", "postgresql"])
def test_real_payments_are_imported_exactly_once(
    site: tuple[CdcSite, str], kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    s, engine = site
    settings = settings_for(
        s.kafka.endpoint("bootstrap"), fresh_database_url(request, kind, tmp_path), engine
    )
    db = Database(settings.database_url)
    importer = asyncio.run(run_importer_until(settings, lambda _: complete(db), deadline_s=120))
    assert_exactly_once(db)
    # offsets were committed (after the writes): a second run of the group reads nothing new
    assert importer.committed
    again = asyncio.run(
        run_importer_until(settings, lambda i: bool(i.batches) or _idle(i), deadline_s=30)
    )
    assert again.batches == 0
    assert_exactly_once(db)


def _idle(importer: Importer) -> bool:
    lag = [
        REGISTRY.get_sample_value(
            "phee_backoffice_lag_records", {"topic": tp.topic, "partition": str(tp.partition)}
        )
        for tp in (importer._consumer.assignment() if importer._consumer else set())
    ]
    return bool(lag) and all(v == 0 for v in lag)


def test_kill_9_mid_import_then_restart_imports_nothing_twice(
    site: tuple[CdcSite, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    s, engine = site
    settings = settings_for(
        s.kafka.endpoint("bootstrap"),
        fresh_database_url(request, "postgresql", tmp_path),
        engine,
        batch_max=3,
    )
    db = Database(settings.database_url)
    db.migrate_control()
    db.provision("default")
    _slow_inserts(db, schema.variables.name, seconds=0.1)
    env = {
        **os.environ,
        **{f"PHEE_BACKOFFICE_{k.upper()}": v for k, v in _env(settings).items()},
        "PHEE_PORT": str(free_port()),
    }
    log = (tmp_path / "importer.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "backoffice", "importer"], env=env, stdout=log, stderr=log
    )
    try:
        poll(
            # the first batches are in; with 0.1 s per variable row the other 40-odd take
            # seconds, so the kill lands mid-import (a fast importer used to finish before it)
            lambda: count(db, "default", schema.variables) > 0,
            what="the importer to be under way",
            deadline_s=120,
        )
        os.kill(proc.pid, signal.SIGKILL)  # mid-import: no clean shutdown, offsets behind
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    partial = count(db, "default", schema.variables)
    print(f"importer killed after {partial} of {VARIABLES} variable rows")
    assert partial < VARIABLES, "the kill came too late to test anything"
    asyncio.run(run_importer_until(settings, lambda _: complete(db), deadline_s=180))
    assert_exactly_once(db)


def _slow_inserts(db: Database, table: str, *, seconds: float) -> None:
    """Make each insert into the tenant `table` take `seconds` (injected latency, PostgreSQL).

    Not synchronisation: the test still polls for what it waits on. It widens the window in
    which the importer is mid-import, which a fast machine otherwise closes before a poll sees it.
    """
    ns = db.namespace("default")
    with db.begin() as conn:
        conn.execute(
            text(
                f"CREATE FUNCTION {ns}.phee_test_slow() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN PERFORM pg_sleep({seconds}); RETURN NEW; END $$"
            )
        )
        conn.execute(
            text(
                f"CREATE TRIGGER phee_test_slow BEFORE INSERT ON {ns}.{table} "
                f"FOR EACH ROW EXECUTE FUNCTION {ns}.phee_test_slow()"
            )
        )


def _env(settings: BackofficeSettings) -> dict[str, str]:
    return {
        "database_url": settings.database_url,
        "kafka_bootstrap": settings.kafka_bootstrap,
        "engines": f'["{settings.engines[0]}"]',
        "group_id": settings.group_id,
        "dead_letter_topic": settings.dead_letter_topic,
        "tenants": '["default"]',
        "batch_max": str(settings.batch_max),
        "audit_key": AUDIT_KEY,
        "poll_ms": "100",
    }


def test_a_second_importer_joining_the_group_keeps_the_import_exact(
    site: tuple[CdcSite, str], tmp_path: Path
) -> None:
    s, engine = site
    settings = settings_for(
        s.kafka.endpoint("bootstrap"), f"sqlite:///{tmp_path / 'bo.db'}", engine, batch_max=2
    )
    db = Database(settings.database_url)
    db.migrate_control()
    db.provision("default")

    async def both() -> list[Importer]:
        first = asyncio.create_task(
            run_importer_until(settings, lambda _: complete(db), deadline_s=240, client_id="one")
        )

        # the second joins once the first has begun writing
        await asyncio.to_thread(
            poll,
            lambda: count(db, "default", schema.variables) > 0,
            what="the first importer to begin",
            deadline_s=120,
        )
        second = await run_importer_until(
            settings, lambda _: complete(db), deadline_s=240, client_id="two"
        )
        return [await first, second]

    importers = asyncio.run(both())
    assert all(i.batches >= 1 for i in importers[1:]) or importers[0].batches >= 1
    assert_exactly_once(db)


def test_bad_records_go_to_the_dead_letter_topic_with_headers(
    kafka: Running, tmp_path: Path
) -> None:
    engine = f"bad-{uuid.uuid4().hex[:6]}"
    topic = f"{engine}.public.act_hi_varinst"
    bootstrap = kafka.endpoint("bootstrap")
    bad = [b"this is not json", b'{"op":"x"}', b'{"op":"c","source":{}}']

    async def produce() -> None:
        producer = Producer(bootstrap)
        await producer.start()
        try:
            await producer.send(topic, [Message(v, key=b'{"id_":"1"}', partition=0) for v in bad])
        finally:
            await producer.stop()

    asyncio.run(produce())
    settings = settings_for(bootstrap, f"sqlite:///{tmp_path / 'bo.db'}", engine)
    before = REGISTRY.get_sample_value(
        "phee_backoffice_records_total", {"engine": engine, "outcome": "dead_letter"}
    )
    importer = asyncio.run(run_importer_until(settings, lambda i: bool(i.committed), deadline_s=60))
    assert sum(importer.committed.values()) == len(bad)
    # the broker made the dead-letter topic with its default partitions: order by source
    dead = sorted(
        asyncio.run(read_topic(bootstrap, settings.dead_letter_topic)),
        key=lambda m: dict(m.headers)["source"],
    )
    assert [m.value for m in dead] == bad
    headers = [dict(m.headers) for m in dead]
    assert [h["reason"].decode() for h in headers] == ["malformed", "unknown-op", "wrong-topic"]
    assert {h["engine"].decode() for h in headers} == {engine}
    assert [h["source"].decode() for h in headers] == [f"{topic}/0/{i}" for i in range(3)]
    assert all(h["detail"] for h in headers)
    after = REGISTRY.get_sample_value(
        "phee_backoffice_records_total", {"engine": engine, "outcome": "dead_letter"}
    )
    assert (after or 0) - (before or 0) == 3
