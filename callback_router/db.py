"""The router's SQL database (SQLite by default): one engine, one metadata, calls off the loop.

SQLAlchemy Core is synchronous; every transaction runs in a small thread pool so the event loop
never blocks on a disk write. For SQLite the pool has one thread, which serialises writers and
makes "database is locked" impossible; WAL keeps readers cheap and `synchronous=FULL` makes a
committed row survive a power cut, which is what "the message is safe" promises the switch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

T = TypeVar("T")

#: every router table (state.py, outbox.py) hangs off this metadata
METADATA = MetaData()


class Database:
    """An engine plus the executor its transactions run on."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        options: dict[str, Any] = {}
        if self.is_sqlite:
            options["connect_args"] = {"check_same_thread": False}
            if url in ("sqlite://", "sqlite:///:memory:"):
                options["poolclass"] = StaticPool  # one shared in-memory database
        self.engine: Engine = create_engine(url, **options)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._executor = ThreadPoolExecutor(
            max_workers=1 if self.is_sqlite else 4, thread_name_prefix="router-db"
        )
        self.dialect = self.engine.dialect.name

    def open(self) -> None:
        """Create the tables that do not exist yet (schema migrations: see README gaps)."""
        METADATA.create_all(self.engine)

    async def run(self, work: Callable[[Connection], T]) -> T:
        """Run `work(connection)` in one transaction, off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.run_sync, work)

    def run_sync(self, work: Callable[[Connection], T]) -> T:
        with self.engine.begin() as conn:
            return work(conn)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
