"""Alembic environment for the tenant tables; the caller passes the connection (and schema)."""

from __future__ import annotations

from alembic import context

from backoffice import schema as tables

connection = context.config.attributes["connection"]
namespace = context.config.attributes.get("schema")
if namespace is not None:
    # tables are declared without a schema; this puts them (and their indexes) into the tenant's
    connection = connection.execution_options(schema_translate_map={None: namespace})
context.configure(
    connection=connection,
    target_metadata=tables.TENANT,
    version_table_schema=namespace,
)
with context.begin_transaction():
    context.run_migrations()
