"""The SQL plumbing (phee.sql): engine options per dialect, one error mapping, transactions on
and off the event loop. SQLite runs for real; server dialects are checked without connecting."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    Table,
    create_engine,
    select,
    text,
)
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import QueuePool, StaticPool

from phee.sql import (
    SqlError,
    SqlIntegrityError,
    SqlOptions,
    SqlRunner,
    engine_arguments,
    insert_or_ignore,
    is_memory,
    is_retryable,
    make_engine,
    sql_error,
    transaction,
)

table = Table("t", MetaData(), Column("k", Integer, unique=True), Column("v", Integer))

# -- insert_or_ignore -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+psycopg://", "ON CONFLICT (k) DO NOTHING"),
        ("sqlite://", "ON CONFLICT (k) DO NOTHING"),
        ("mysql+pymysql://", "ON DUPLICATE KEY UPDATE k = VALUES(k)"),
    ],
)
def test_insert_or_ignore_compiles_per_dialect(url: str, expected: str) -> None:
    dialect = create_engine(url).dialect  # no connection is made
    sql = str(insert_or_ignore(table, dialect.name, ["k"]).compile(dialect=dialect))
    assert expected in sql


def test_unknown_dialect_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unsupported SQL dialect 'oracle'"):
        insert_or_ignore(table, "oracle", ["k"])


# -- engine options -------------------------------------------------------------------------------

EVERYTHING = SqlOptions(
    journal_mode="WAL",
    synchronous="FULL",
    busy_timeout_s=12.5,
    foreign_keys=True,
    immediate_writes=True,
    isolation_level="READ COMMITTED",
    pool_size=7,
    max_overflow=3,
    execution_options={"schema_translate_map": {"control": None}},
)


@pytest.mark.parametrize("url", ["postgresql+psycopg://u:p@db/x", "mysql+pymysql://u:p@db/x"])
def test_servers_get_isolation_pool_and_pre_ping_but_no_sqlite_settings(url: str) -> None:
    assert engine_arguments(url, EVERYTHING) == {
        "execution_options": {"schema_translate_map": {"control": None}},
        "pool_pre_ping": True,
        "isolation_level": "READ COMMITTED",
        "pool_size": 7,
        "max_overflow": 3,
    }
    engine = make_engine(url, EVERYTHING)  # nothing connects
    assert isinstance(engine.pool, QueuePool)
    assert engine.pool.size() == 7
    assert engine.get_execution_options()["schema_translate_map"] == {"control": None}


def test_server_defaults_are_sqlalchemys_with_pre_ping() -> None:
    assert engine_arguments("postgresql+psycopg://db/x", SqlOptions()) == {"pool_pre_ping": True}
    assert engine_arguments("mysql+pymysql://db/x", SqlOptions(pre_ping=False)) == {
        "pool_pre_ping": False
    }


def test_sqlite_files_get_the_busy_timeout_and_no_server_settings(tmp_path: Path) -> None:
    args = engine_arguments(f"sqlite:///{tmp_path / 'a.db'}", EVERYTHING)
    assert args == {
        "execution_options": {"schema_translate_map": {"control": None}},
        "connect_args": {"timeout": 12.5, "check_same_thread": False},
    }


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_one_shared_connection(url: str) -> None:
    assert is_memory(url)
    assert engine_arguments(url, SqlOptions())["poolclass"] is StaticPool
    engine = make_engine(url, SqlOptions(journal_mode="WAL"))
    with transaction(engine) as conn:
        conn.execute(text("CREATE TABLE t (k INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    with transaction(engine, read_only=True) as conn:  # the same database, not a new empty one
        assert conn.execute(text("SELECT k FROM t")).scalar_one() == 1
        # an in-memory database has no journal file to choose a mode for
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "memory"
    engine.dispose()


def test_not_in_memory() -> None:
    assert not is_memory("sqlite:///x.db")
    assert not is_memory("postgresql+psycopg://db/x")


def _pragmas(url: str, options: SqlOptions) -> dict[str, Any]:
    engine = make_engine(url, options)
    with engine.connect() as conn:
        found = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar_one()
            for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        }
    engine.dispose()
    return found


def test_sqlite_pragmas_are_set_on_every_connection(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    wal = SqlOptions(journal_mode="WAL", synchronous="NORMAL", busy_timeout_s=2, foreign_keys=True)
    assert _pragmas(url, wal) == {
        "journal_mode": "wal",
        "synchronous": 1,  # NORMAL
        "busy_timeout": 2000,
        "foreign_keys": 1,
    }
    url = f"sqlite:///{tmp_path / 'b.db'}"
    rollback = SqlOptions(journal_mode="DELETE", synchronous="FULL", busy_timeout_s=30)
    assert _pragmas(url, rollback) == {
        "journal_mode": "delete",
        "synchronous": 2,  # FULL
        "busy_timeout": 30000,
        "foreign_keys": 0,
    }


def test_on_connect_runs_after_the_pragmas_on_each_new_connection(tmp_path: Path) -> None:
    seen: list[str] = []

    def hook(dbapi_connection: DBAPIConnection) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode")
        seen.append(cursor.fetchone()[0])  # type: ignore[index]
        cursor.close()

    engine = make_engine(
        f"sqlite:///{tmp_path / 'a.db'}", SqlOptions(journal_mode="WAL", on_connect=hook)
    )
    with engine.connect(), engine.connect():  # two connections at once: two new ones
        pass
    engine.dispose()
    assert seen == ["wal", "wal"]


def _run(engine: Engine, *statements: str) -> None:
    """The statements in one transaction."""
    with transaction(engine) as conn:
        for statement in statements:
            result = conn.execute(text(statement))
            if result.returns_rows:
                result.all()


# -- BEGIN IMMEDIATE ------------------------------------------------------------------------------


def test_immediate_writes_take_the_lock_at_begin_and_readers_do_not(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    options = SqlOptions(journal_mode="WAL", immediate_writes=True, busy_timeout_s=0.2)
    engine = make_engine(url, options)
    with transaction(engine) as conn:
        conn.execute(text("CREATE TABLE t (k INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    other = make_engine(url, options)
    with transaction(engine) as writer:
        # the writer has not written yet, but it holds the write lock already
        writer.execute(text("SELECT k FROM t")).all()
        with transaction(other, read_only=True) as reader:
            assert reader.execute(text("SELECT k FROM t")).scalar_one() == 1
        with pytest.raises(SqlError, match="database is locked") as caught:
            _run(other, "SELECT k FROM t")
        assert caught.value.retryable
        assert isinstance(caught.value.__cause__, OperationalError)
    engine.dispose()
    other.dispose()


# -- errors ---------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_table(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    table.metadata.create_all(engine)
    yield engine
    engine.dispose()


def test_a_unique_clash_is_an_integrity_error_never_retryable(sqlite_table: Engine) -> None:
    with transaction(sqlite_table) as conn:
        conn.execute(table.insert().values(k=1, v=1))
    with pytest.raises(SqlIntegrityError, match="UNIQUE constraint failed") as caught:
        _run(sqlite_table, "INSERT INTO t VALUES (2, 2)", "INSERT INTO t VALUES (1, 3)")
    assert not caught.value.retryable
    assert isinstance(caught.value.__cause__, IntegrityError)
    with transaction(sqlite_table, read_only=True) as conn:  # the whole transaction rolled back
        assert conn.execute(select(table.c.k)).scalars().all() == [1]


def test_a_bad_statement_is_not_retryable(sqlite_table: Engine) -> None:
    with pytest.raises(SqlError, match="no such table") as caught:
        _run(sqlite_table, "SELECT * FROM missing")
    assert not caught.value.retryable
    assert not isinstance(caught.value, SqlIntegrityError)


def test_other_exceptions_pass_through_and_roll_back(sqlite_table: Engine) -> None:
    def fails(conn: Connection) -> None:
        conn.execute(table.insert().values(k=5, v=5))
        raise KeyError("not the database's fault")

    with pytest.raises(KeyError):
        SqlRunner(sqlite_table).run_sync(fails)
    with transaction(sqlite_table, read_only=True) as conn:
        assert conn.execute(select(table.c.k)).scalars().all() == []


def _wrapped(orig: Exception, kind: type[DBAPIError] = OperationalError) -> DBAPIError:
    return kind("SELECT 1", None, orig)


@pytest.mark.parametrize(
    ("orig", "retryable"),
    [
        (psycopg.errors.SerializationFailure("could not serialize access"), True),
        (psycopg.errors.DeadlockDetected("deadlock detected"), True),
        (psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"), True),
        (psycopg.errors.AdminShutdown("terminating connection"), True),
        (psycopg.errors.ConnectionFailure("connection failure"), True),  # class 08
        (psycopg.OperationalError("connection refused"), True),  # no SQLSTATE: never connected
        (psycopg.errors.UndefinedTable("relation does not exist"), False),
        (psycopg.errors.DiskFull("could not extend file"), False),
        (pymysql.err.OperationalError(1213, "Deadlock found"), True),
        (pymysql.err.OperationalError(1205, "Lock wait timeout exceeded"), True),
        (pymysql.err.OperationalError(2013, "Lost connection to server"), True),
        (pymysql.err.OperationalError(2003, "Can't connect to server"), True),
        (pymysql.err.OperationalError(1020, "Record has changed since last read"), True),
        (pymysql.err.OperationalError(1045, "Access denied"), False),
        (pymysql.err.ProgrammingError(1146, "Table doesn't exist"), False),
    ],
    ids=lambda v: v if isinstance(v, bool) else f"{type(v).__name__}:{v}",
)
def test_retryable_by_sqlstate_or_errno(orig: Exception, retryable: bool) -> None:
    assert is_retryable(_wrapped(orig)) is retryable
    error = sql_error(_wrapped(orig))
    assert error.retryable is retryable
    assert str(orig) in str(error)


def test_without_a_code_the_message_decides() -> None:
    assert is_retryable(_wrapped(Exception("Deadlock detected"), ProgrammingError))
    assert not is_retryable(_wrapped(Exception("syntax error"), ProgrammingError))


def test_an_invalidated_connection_is_retryable() -> None:
    lost = DBAPIError("SELECT 1", None, Exception("gone"), connection_invalidated=True)
    assert is_retryable(lost)


def test_a_pool_timeout_is_retryable() -> None:
    error = sql_error(PoolTimeout("QueuePool limit of size 5 overflow 10 reached"))
    assert error.retryable
    assert type(error) is SqlError


# -- off the event loop ---------------------------------------------------------------------------


async def test_the_runner_runs_transactions_off_the_loop_one_thread_for_sqlite(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}", SqlOptions(journal_mode="WAL"))
    table.metadata.create_all(engine)
    runner = SqlRunner(engine, threads=8, name="test-sql")
    assert runner.threads == 1
    loop_thread = threading.get_ident()
    threads: set[str] = set()
    with transaction(engine) as conn:
        conn.execute(table.insert().values(k=1, v=0))

    def bump(conn: Any) -> int:
        threads.add(threading.current_thread().name)
        assert threading.get_ident() != loop_thread
        value = conn.execute(select(table.c.v).where(table.c.k == 1)).scalar_one()
        time.sleep(0.001)  # a read-modify-write that would lose updates if runs interleaved
        conn.execute(table.update().where(table.c.k == 1).values(v=value + 1))
        return int(value) + 1

    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    results = await asyncio.gather(*(runner.run(bump) for _ in range(20)))
    ticker.cancel()
    assert sorted(results) == list(range(1, 21))
    assert len(threads) == 1  # SQLite: one thread, so the runs never interleave
    assert ticks > 0  # the loop kept running while the database worked
    assert await runner.run(lambda c: c.execute(select(table.c.v)).scalar_one(), read_only=True)
    with pytest.raises(SqlIntegrityError):
        await runner.run(lambda c: c.execute(table.insert().values(k=1, v=9)))
    assert runner.run_sync(lambda c: c.execute(select(table.c.v)).scalar_one()) == 20
    runner.close()
    engine.dispose()


def test_servers_get_several_runner_threads() -> None:
    engine = make_engine("postgresql+psycopg://u:p@db/x")  # nothing connects
    runner = SqlRunner(engine, threads=3, name="test-sql")
    assert runner.threads == 3
    runner.close()
    engine.dispose()
