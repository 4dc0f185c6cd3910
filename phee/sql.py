"""SQL helpers shared by components: insert-or-ignore across SQLite, MariaDB and PostgreSQL.

The back office keys every imported record by (engine, partition, position) and must be able to
replay a batch after a crash without changing anything: an insert that ignores rows whose unique
key already exists, expressed in each dialect's own syntax.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.sql.dml import Insert


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
