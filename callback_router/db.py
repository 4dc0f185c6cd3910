"""The router's SQL database (SQLite by default): one engine, one metadata, calls off the loop.

The engine and the off-loop runner come from `phee.sql`; every transaction runs on the runner's
threads so the event loop never blocks on a disk write (one thread for SQLite, which serialises
writers). WAL keeps readers cheap and `synchronous=FULL` makes a committed row survive a power
cut, which is what "the message is safe" promises the switch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, MetaData
from sqlalchemy.engine import Engine

from phee.sql import SqlOptions, SqlRunner, make_engine

T = TypeVar("T")

#: every router table (state.py, outbox.py) hangs off this metadata
METADATA = MetaData()

_OPTIONS = SqlOptions(journal_mode="WAL", synchronous="FULL", busy_timeout_s=5.0)


class Database:
    """An engine plus the runner its transactions run on; errors come out as `phee.sql.SqlError`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = make_engine(url, _OPTIONS)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self.dialect = self.engine.dialect.name
        self._runner = SqlRunner(self.engine, threads=4, name="router-db")

    def open(self) -> None:
        """Create the tables that do not exist yet (schema migrations: see README gaps)."""
        METADATA.create_all(self.engine)

    async def run(self, work: Callable[[Connection], T]) -> T:
        """Run `work(connection)` in one transaction, off the event loop."""
        return await self._runner.run(work)

    def run_sync(self, work: Callable[[Connection], T]) -> T:
        return self._runner.run_sync(work)

    def close(self) -> None:
        self._runner.close()
        self.engine.dispose()
