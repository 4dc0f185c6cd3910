"""Control tables: import progress, instances, pending records, tenants, API keys.

Revision ID: c0001
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "c0001"
down_revision = None
branch_labels = None
depends_on = None

#: MariaDB tables in utf8mb4 whatever the server default (names in any script)
TABLE_OPTIONS: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
#: microseconds on MariaDB too (its plain DATETIME drops them)
TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("key_id"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "import_progress",
        sa.Column("engine", sa.String(length=64), nullable=False),
        sa.Column("partition_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("engine", "partition_id", name="pk_import_progress"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "instances",
        sa.Column("engine", sa.String(length=64), nullable=False),
        sa.Column("process_instance_key", sa.BigInteger(), nullable=False),
        sa.Column("tenant", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("engine", "process_instance_key", name="pk_instances"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "pending_records",
        sa.Column("engine", sa.String(length=64), nullable=False),
        sa.Column("partition_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("process_instance_key", sa.BigInteger(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("received_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("engine", "partition_id", "position", name="pk_pending_records"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_pending_instance", "pending_records", ["engine", "process_instance_key"], unique=False
    )
    op.create_table(
        "tenants",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("schema_name", sa.String(length=64), nullable=False),
        sa.Column("revision", sa.String(length=32), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("name"),
        sa.UniqueConstraint("schema_name"),
        **TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("tenants")
    op.drop_index("ix_pending_instance", table_name="pending_records")
    op.drop_table("pending_records")
    op.drop_table("instances")
    op.drop_table("import_progress")
    op.drop_table("api_keys")
