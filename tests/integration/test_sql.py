"""SQLAlchemy round trips against real MariaDB and PostgreSQL (and SQLite, the default)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    func,
    select,
    text,
)

from phee.sql import insert_or_ignore

metadata = MetaData()
records = Table(
    "records",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("engine", String(64), nullable=False),
    Column("partition_id", Integer, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("payload", String(200), nullable=False),
    UniqueConstraint("engine", "partition_id", "position", name="uq_record"),
)
KEY = ("engine", "partition_id", "position")


@pytest.fixture(params=["sqlite", "mariadb", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'phee.db'}"
    else:
        url = request.getfixturevalue(request.param).endpoint("url")
    eng = create_engine(url)
    metadata.drop_all(eng)
    metadata.create_all(eng)
    try:
        yield eng
    finally:
        metadata.drop_all(eng)
        eng.dispose()


def test_round_trip_with_insert_or_ignore(engine: Engine) -> None:
    rows = [
        {"engine": "engine-a", "partition_id": 1, "position": p, "payload": f"first-{p}"}
        for p in range(1, 6)
    ]
    stmt = insert_or_ignore(records, engine.dialect.name, KEY)
    with engine.begin() as conn:
        conn.execute(stmt, rows)
    # A replay of overlapping rows (positions 4..7) with different payloads: the old rows stay.
    replay = [
        {"engine": "engine-a", "partition_id": 1, "position": p, "payload": f"replay-{p}"}
        for p in range(4, 8)
    ]
    with engine.begin() as conn:
        conn.execute(stmt, replay)
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(records)).scalar_one()
        payloads = dict(conn.execute(select(records.c.position, records.c.payload)).all())
        server = conn.execute(text("select 1")).scalar_one()
    assert count == 7
    assert payloads[4] == "first-4"
    assert payloads[5] == "first-5"
    assert payloads[7] == "replay-7"
    assert server == 1


def test_plain_insert_of_a_duplicate_is_rejected(engine: Engine) -> None:
    """The unique key is real in every dialect: without the helper a duplicate is an error."""
    row = {"engine": "engine-b", "partition_id": 2, "position": 9, "payload": "x"}
    with engine.begin() as conn:
        conn.execute(records.insert(), [row])
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(records.insert(), [row])
