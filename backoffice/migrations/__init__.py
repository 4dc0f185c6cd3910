"""Alembic migrations of the back office, applied from code (no alembic.ini).

Two script directories: `control` (the default schema) and `tenant` (applied once per tenant,
inside the tenant's schema, with its own version table there, so each tenant can be migrated,
checked and repaired on its own).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData

if TYPE_CHECKING:
    from backoffice.db import Database

HERE = Path(__file__).resolve().parent


def upgrade(db: Database, which: Literal["control", "tenant"], schema: str | None) -> str:
    """Migrate the control schema or one tenant schema to head; return the revision."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE / which))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        cfg.attributes["schema"] = schema
        command.upgrade(cfg, "head")
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table_schema": schema})
        revision = ctx.get_current_revision()
    if revision is None:
        raise RuntimeError(f"{which} migrations left no revision in {schema or 'the default'}")
    return revision


def run_env(metadata: MetaData) -> None:
    """The body of both `env.py` files: migrate on the caller's connection, inside the schema it
    names (tables are declared without one; the translation puts them and their indexes there)."""
    from alembic import context

    connection = context.config.attributes["connection"]
    namespace = context.config.attributes.get("schema")
    if namespace is not None:
        connection = connection.execution_options(schema_translate_map={None: namespace})
    context.configure(
        connection=connection, target_metadata=metadata, version_table_schema=namespace
    )
    with context.begin_transaction():
        context.run_migrations()
