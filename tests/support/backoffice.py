"""Helpers for back-office tests: fresh databases, an in-process importer, reading topics."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from backoffice import schema
from backoffice.db import Database
from backoffice.importer import Importer
from backoffice.outcome import StepObserver
from backoffice.settings import BackofficeSettings
from phee.kafka import Idle, Record, ToEnd, read_from_start
from phee.sql import SqlOptions, make_engine
from tests.support import apoll


def fresh_database_url(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> str:
    """A new, empty database of `kind` (sqlite, mariadb, postgresql) for one test."""
    if kind == "sqlite":
        folder = tmp_path / f"bo-{uuid.uuid4().hex[:6]}"
        folder.mkdir()
        return f"sqlite:///{folder / 'backoffice.db'}"
    server = request.getfixturevalue(kind).endpoint("url")
    name = f"bo_{uuid.uuid4().hex[:10]}"
    admin = make_engine(server, SqlOptions(isolation_level="AUTOCOMMIT"))
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return make_url(server).set(database=name).render_as_string(hide_password=False)


def count(db: Database, tenant: str, table: Any) -> int:
    with db.begin() as conn:
        return int(
            db.tenant(conn, tenant).execute(select(func.count()).select_from(table)).scalar_one()
        )


def transfers(db: Database, tenant: str) -> list[dict[str, Any]]:
    with db.begin() as conn:
        rows = db.tenant(conn, tenant).execute(select(schema.transfers)).mappings().all()
        return [dict(r) for r in rows]


async def run_importer_until(
    settings: BackofficeSettings,
    done: Callable[[Importer], bool],
    deadline_s: float = 180.0,
    client_id: str = "test-importer",
    interval_s: float = 0.5,
    importer_class: type[Importer] = Importer,
    observer: StepObserver | None = None,
) -> Importer:
    """Start an importer in this process, run it until `done(importer)` (checked in a thread,
    it may query the database), then stop it cleanly."""
    importer = importer_class(settings, client_id=client_id, observer=observer)
    await importer.start()
    task = asyncio.create_task(importer.run())

    async def caught_up() -> bool | None:
        if task.done():  # the loop died: report its error, do not wait for the deadline
            task.result()
            raise AssertionError("the import loop stopped by itself")
        return True if await asyncio.to_thread(done, importer) else None

    try:
        await apoll(
            caught_up, deadline_s=deadline_s, what="the importer to catch up", interval_s=0.5
        )
    finally:
        importer.stop()
        await asyncio.wait({task}, timeout=60)
        await importer.close()
    if task.done() and not task.cancelled() and task.exception() is not None:
        task.result()
    return importer


async def read_topic(bootstrap: str, topic: str, idle_s: float = 2.0) -> list[Record]:
    """Every committed message of a topic, from the start, until nothing arrives for idle_s."""
    return await read_from_start(bootstrap, topic, Idle(idle_s), max_records=10_000)


async def history_topics(bootstrap: str, engine: str) -> list[str]:
    """The engine's history topics (`<engine>.public.act_hi_*`) that exist now: Debezium makes
    a table's topic with its first change, so a table that never changed has none."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        names = await consumer.topics()
    finally:
        await consumer.stop()
    prefix = f"{engine}.public.act_hi_"
    return sorted(t for t in names if t.startswith(prefix))


async def read_topics(bootstrap: str, topics: Sequence[str]) -> list[Record]:
    """Every committed message of the topics, from the start to their end when reading began
    (no cap: a busy engine's history runs to tens of thousands of records)."""
    return await read_from_start(bootstrap, topics, ToEnd(timeout_s=300))
