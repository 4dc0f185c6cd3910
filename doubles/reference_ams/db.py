"""Database plumbing for the ledger: one engine per URL, set up so row locks mean something.

- MariaDB/PostgreSQL run READ COMMITTED, so a statement that follows `SELECT ... FOR UPDATE`
  sees what the transaction that held the lock committed (MariaDB's default REPEATABLE READ
  would keep showing the older snapshot).
- SQLite has no row locks: write transactions start with `BEGIN IMMEDIATE`, taking the
  database write lock before the first read, so check-then-update cannot interleave. pysqlite's
  own implicit transactions would begin only at the first write, after the balance was read.
  Transactions on a connection marked `READ_ONLY` begin with a plain BEGIN; WAL lets them read
  while a writer works.
The engine, the error mapping and the transactions are `phee.sql`'s.
"""

from __future__ import annotations

from sqlalchemy import Engine

from phee import sql
from phee.sql import READ_ONLY, SqlOptions, is_retryable

__all__ = ["READ_ONLY", "is_retryable", "make_engine"]


def make_engine(url: str, *, pool_size: int = 10, sqlite_timeout_s: float = 30.0) -> Engine:
    """An engine for `url` with the locking behaviour the ledger relies on."""
    options = SqlOptions(
        journal_mode="WAL",
        foreign_keys=True,
        immediate_writes=True,
        busy_timeout_s=sqlite_timeout_s,
        isolation_level="READ COMMITTED",
        pool_size=pool_size,
        max_overflow=pool_size,
    )
    return sql.make_engine(url, options)
