"""Database plumbing for the ledger: one engine per URL, set up so row locks mean something.

- MariaDB/PostgreSQL run READ COMMITTED, so a statement that follows `SELECT ... FOR UPDATE`
  sees what the transaction that held the lock committed (MariaDB's default REPEATABLE READ
  would keep showing the older snapshot).
- SQLite has no row locks: write transactions start with `BEGIN IMMEDIATE`, taking the
  database write lock before the first read, so check-then-update cannot interleave. pysqlite's
  own implicit transactions would begin only at the first write, after the balance was read.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

#: execution option marking a connection whose transactions only read
READ_ONLY = "ams_read_only"

_RETRY_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock (PostgreSQL)
_RETRY_MYSQL_ERRNOS = {1205, 1213}  # lock wait timeout, deadlock (MariaDB)


def make_engine(url: str, *, pool_size: int = 10, sqlite_timeout_s: float = 30.0) -> Engine:
    """An engine for `url` with the locking behaviour the ledger relies on."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": sqlite_timeout_s, "check_same_thread": False}
        )
        _sqlite_locking(engine, in_memory=url in ("sqlite://", "sqlite:///:memory:"))
        return engine
    return create_engine(
        url,
        isolation_level="READ COMMITTED",
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=pool_size,
    )


def _sqlite_locking(engine: Engine, *, in_memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")  # readers do not wait for the writer
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def is_retryable(err: DBAPIError) -> bool:
    """True for lock conflicts that succeed when the whole transaction is run again."""
    orig = err.orig
    if getattr(orig, "sqlstate", None) in _RETRY_SQLSTATES:
        return True
    args = getattr(orig, "args", ())
    if args and args[0] in _RETRY_MYSQL_ERRNOS:
        return True
    return "database is locked" in str(orig)
