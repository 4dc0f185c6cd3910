"""The Alembic migrations create exactly the tables the code queries (SQLite, the default)."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, text

from backoffice import schema
from backoffice.db import Database


def test_migrated_control_and_tenant_schemas_match_the_table_definitions(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'main.db'}")
    db.migrate_control()
    assert db.provision("acme") == "t0002"
    db.close()
    checks: list[tuple[Path, MetaData, str | None]] = [
        # control tables are declared in a placeholder schema: attach the file under that name
        (tmp_path / "main.db", schema.CONTROL, schema.CONTROL_SCHEMA),
        (tmp_path / "tenant_acme.db", schema.TENANT, None),
    ]
    for path, metadata, alias in checks:
        engine = create_engine("sqlite://" if alias else f"sqlite:///{path}")
        with engine.connect() as conn:
            if alias:
                conn.execute(text(f"ATTACH DATABASE '{path}' AS {alias}"))
            context = MigrationContext.configure(
                conn,
                opts={
                    "include_schemas": bool(alias),
                    "include_name": lambda name, kind, parent: name != "alembic_version",
                },
            )
            diff = compare_metadata(context, metadata)
        engine.dispose()
        assert diff == [], f"{path.name} differs from backoffice/schema.py: {diff}"
