from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, create_engine

from phee.sql import insert_or_ignore

table = Table("t", MetaData(), Column("k", Integer, unique=True), Column("v", Integer))


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
