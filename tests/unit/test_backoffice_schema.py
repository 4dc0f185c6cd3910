"""The Alembic migrations create exactly the tables the code queries (SQLite, the default)."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine

from backoffice import schema
from backoffice.db import Database


def unqualified(source: MetaData) -> MetaData:
    target = MetaData()
    for table in source.tables.values():
        table.to_metadata(target, schema=None)
    return target


def test_migrated_control_and_tenant_schemas_match_the_table_definitions(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'main.db'}")
    db.migrate_control()
    assert db.provision("acme") == "t0001"
    db.close()
    for path, metadata in (
        (tmp_path / "main.db", unqualified(schema.CONTROL)),
        (tmp_path / "tenant_acme.db", schema.TENANT),
    ):
        engine = create_engine(f"sqlite:///{path}")
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        engine.dispose()
        assert diff == [], f"{path.name} differs from backoffice/schema.py: {diff}"
