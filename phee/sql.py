"""The SQL plumbing every store uses: engines, one error mapping, transactions on and off the loop.

SQLite, MariaDB and PostgreSQL differ in how they are set up (pragmas, pools, isolation) and in
how they report a conflict (an sqlite result code, a MariaDB errno, a PostgreSQL SQLSTATE).
Stores describe what they need in `SqlOptions` and get an engine from `make_engine`; whatever
goes wrong comes out of `transaction` (and `SqlRunner`) as one `SqlError` that says whether
running the transaction again may help. Only this module creates engines (import rule
"sql-engines" in pyproject.toml).

The back office keys every imported record by (engine, partition, position) and must be able to
replay a batch after a crash without changing anything: `insert_or_ignore` is an insert that
ignores rows whose unique key already exists, in each dialect's own syntax.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import sqlalchemy
from sqlalchemy import Connection, Engine, Table, event
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool
from sqlalchemy.sql.dml import Insert

T = TypeVar("T")

#: execution option marking a connection whose transactions only read (see `immediate_writes`)
READ_ONLY = "phee_read_only"

# PostgreSQL: serialization failure, deadlock, lock_timeout/NOWAIT, server shutting down or
# starting, too many connections; class 08 is "connection exception".
_RETRY_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300"})
# MariaDB: record changed since read (snapshot isolation), too many connections, server
# shutdown, lock wait timeout, deadlock, connection killed, cannot connect, server gone, lost
# connection, disconnected for inactivity.
_RETRY_MYSQL_ERRNOS = frozenset({1020, 1040, 1053, 1205, 1213, 1927, 2002, 2003, 2006, 2013, 4031})
# SQLite primary result codes (extended codes carry them in the low byte): BUSY, LOCKED.
_RETRY_SQLITE_CODES = frozenset({5, 6})
# For drivers that give no code.
_RETRY_WORDS = (
    "deadlock",
    "could not serialize",
    "lock wait timeout",
    "database is locked",
    "database table is locked",
)


@dataclass(frozen=True)
class SqlOptions:
    """How a store wants its engine; each store keeps its own durability and locking choices.

    SQLite only: `journal_mode` and `synchronous` (None keeps SQLite's default; an in-memory
    database has no journal to choose), `busy_timeout_s` (how long a connection waits for
    another's lock before "database is locked"), `foreign_keys`, and `immediate_writes`: SQLite
    has no row locks, so a write transaction that reads first must take the write lock at BEGIN
    (`BEGIN IMMEDIATE`) or check-then-update can interleave; transactions on a connection with
    the `READ_ONLY` execution option begin with a plain BEGIN instead.
    Servers only: `isolation_level`, `pool_size`, `max_overflow` (None: SQLAlchemy's defaults)
    and `pre_ping` (test a pooled connection before use, so a restarted server costs no error).
    Every dialect: `on_connect(dbapi_connection)` runs on each new connection (after the SQLite
    pragmas; the back office ATTACHes tenant files there) and `execution_options` apply to every
    connection.
    """

    journal_mode: str | None = None
    synchronous: str | None = None
    busy_timeout_s: float = 5.0
    foreign_keys: bool = False
    immediate_writes: bool = False
    isolation_level: str | None = None
    pool_size: int | None = None
    max_overflow: int | None = None
    pre_ping: bool = True
    on_connect: Callable[[DBAPIConnection], None] | None = None
    execution_options: Mapping[str, Any] = field(default_factory=dict)


def is_memory(url: str | URL) -> bool:
    """Whether `url` names an in-memory SQLite database (gone when its connection closes)."""
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def engine_arguments(url: str | URL, options: SqlOptions) -> dict[str, Any]:
    """The keyword arguments for SQLAlchemy's engine that `options` mean for `url`'s dialect
    (the connect-time pragmas and hooks are events, added by `make_engine`)."""
    kwargs: dict[str, Any] = {}
    if options.execution_options:
        kwargs["execution_options"] = dict(options.execution_options)
    if make_url(url).get_backend_name() == "sqlite":
        # Connections move between threads (pools, executors); a pool lends each to one at a time.
        kwargs["connect_args"] = {"timeout": options.busy_timeout_s, "check_same_thread": False}
        if is_memory(url):
            # One connection, so one database for every user; it is not for two threads at
            # once (SqlRunner's single SQLite thread keeps to that).
            kwargs["poolclass"] = StaticPool
        return kwargs
    kwargs["pool_pre_ping"] = options.pre_ping
    if options.isolation_level is not None:
        kwargs["isolation_level"] = options.isolation_level
    if options.pool_size is not None:
        kwargs["pool_size"] = options.pool_size
    if options.max_overflow is not None:
        kwargs["max_overflow"] = options.max_overflow
    return kwargs


def make_engine(url: str | URL, options: SqlOptions | None = None) -> Engine:
    """An engine for `url` set up as `options` say (nothing connects until it is used)."""
    options = options or SqlOptions()
    engine = sqlalchemy.create_engine(url, **engine_arguments(url, options))
    if engine.dialect.name == "sqlite":
        _sqlite_setup(engine, options, memory=is_memory(url))
    elif options.on_connect is not None:
        hook = options.on_connect
        event.listen(engine, "connect", lambda dbapi, _record: hook(dbapi))
    return engine


def _sqlite_setup(engine: Engine, options: SqlOptions, *, memory: bool) -> None:
    def on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        if options.immediate_writes:
            dbapi_connection.isolation_level = None  # pysqlite begins nothing: on_begin does
        cursor = dbapi_connection.cursor()
        if options.foreign_keys:
            cursor.execute("PRAGMA foreign_keys=ON")
        if options.journal_mode is not None and not memory:
            cursor.execute(f"PRAGMA journal_mode={options.journal_mode}")
        if options.synchronous is not None:
            cursor.execute(f"PRAGMA synchronous={options.synchronous}")
        cursor.close()
        if options.on_connect is not None:
            options.on_connect(dbapi_connection)

    event.listen(engine, "connect", on_connect)
    if options.immediate_writes:

        @event.listens_for(engine, "begin")
        def on_begin(conn: Connection) -> None:
            read_only = conn.get_execution_options().get(READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


# -- errors ---------------------------------------------------------------------------------------


class SqlError(Exception):
    """The database refused or failed; `retryable` says whether running the whole transaction
    again may succeed (a lost connection, a deadlock, a lock wait, a serialisation failure)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class SqlIntegrityError(SqlError):
    """A constraint refused the change (a unique key clash, a missing parent row): the same
    transaction would be refused again, though a fresh read may now find the clashing row."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


def is_retryable(err: DBAPIError) -> bool:
    """Whether running the transaction that raised `err` again may succeed.

    A code decides when the driver gives one (SQLSTATE for PostgreSQL, errno for MariaDB, the
    result code for SQLite); without one, an OperationalError is a connection that failed
    (psycopg reports a refused or broken connection without SQLSTATE), anything else is judged
    by its message.
    """
    if err.connection_invalidated:
        return True
    orig = err.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate in _RETRY_SQLSTATES or sqlstate.startswith("08")
    sqlite_code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int):
        return sqlite_code & 0xFF in _RETRY_SQLITE_CODES
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0] in _RETRY_MYSQL_ERRNOS
    if isinstance(err, OperationalError):
        return True
    message = str(orig).lower()
    return any(word in message for word in _RETRY_WORDS)


def sql_error(err: DBAPIError | PoolTimeout) -> SqlError:
    """`err` as ours: SqlIntegrityError for constraint violations, else SqlError(retryable)."""
    if isinstance(err, PoolTimeout):  # every pooled connection busy: later there may be one
        return SqlError(str(err), retryable=True)
    if isinstance(err, IntegrityError):
        return SqlIntegrityError(str(err.orig))
    return SqlError(str(err.orig), retryable=is_retryable(err))


# -- transactions ---------------------------------------------------------------------------------


@contextmanager
def transaction(engine: Engine, *, read_only: bool = False) -> Iterator[Connection]:
    """One transaction, committed when the block ends; database errors come out as SqlError.

    `read_only` marks the connection READ_ONLY (on SQLite with `immediate_writes`, a reader
    then does not take the write lock)."""
    try:
        with engine.connect() as conn:
            if read_only:
                conn = conn.execution_options(**{READ_ONLY: True})
            with conn.begin():
                yield conn
    except (DBAPIError, PoolTimeout) as err:
        raise sql_error(err) from err


class SqlRunner:
    """Runs transactions on threads of its own, so the event loop never waits on the database.

    SQLAlchemy Core is synchronous. For SQLite there is one thread: SQLite has one writer at a
    time anyway, and one thread means this process never meets "database is locked" and an
    in-memory database's single connection is never used by two threads at once. Servers get
    `threads` threads (keep it within the engine's pool)."""

    def __init__(self, engine: Engine, *, threads: int = 4, name: str = "sql") -> None:
        self.engine = engine
        #: how many transactions may run at once
        self.threads = 1 if engine.dialect.name == "sqlite" else threads
        self._executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix=name)

    async def run(self, work: Callable[[Connection], T], *, read_only: bool = False) -> T:
        """`work(connection)` in one transaction on the runner's threads (see `transaction`)."""
        loop = asyncio.get_running_loop()
        call = partial(self.run_sync, work, read_only=read_only)
        return await loop.run_in_executor(self._executor, call)

    def run_sync(self, work: Callable[[Connection], T], *, read_only: bool = False) -> T:
        """`work(connection)` in one transaction on the calling thread."""
        with transaction(self.engine, read_only=read_only) as conn:
            return work(conn)

    def close(self) -> None:
        """Wait for the running transactions and stop the threads (the engine stays open)."""
        self._executor.shutdown(wait=True)


# -- statements -----------------------------------------------------------------------------------


def insert_or_ignore(table: Table, dialect: str, conflict_columns: Sequence[str]) -> Insert:
    """An INSERT that silently skips rows clashing on the unique `conflict_columns`."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(
            index_elements=list(conflict_columns)
        )
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))
    if dialect in ("mysql", "mariadb"):
        # INSERT IGNORE also downgrades other errors to warnings; ON DUPLICATE KEY UPDATE with a
        # no-op assignment skips only key clashes.
        first = conflict_columns[0]
        stmt = mysql.insert(table)
        return stmt.on_duplicate_key_update({first: stmt.inserted[first]})
    raise ValueError(f"unsupported SQL dialect {dialect!r}")
