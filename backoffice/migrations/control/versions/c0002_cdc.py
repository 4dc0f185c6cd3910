"""Control tables for Debezium change events (decision 0018): per-table locks, seen positions.

The Zeebe-shaped progress (one position per partition), instances (numeric keys) and parked
records cannot describe CDC records, whose identity is a position string and whose process
instances are UUIDs; they are replaced, not converted.

Revision ID: c0002
Revises: c0001
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "c0002"
down_revision = "c0001"
branch_labels = None
depends_on = None

TABLE_OPTIONS: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.drop_index("ix_pending_instance", table_name="pending_records")
    op.drop_table("pending_records")
    op.drop_table("instances")
    op.drop_table("import_progress")
    op.create_table(
        "import_progress",
        sa.Column("engine", sa.String(length=64), nullable=False),
        sa.Column("source_table", sa.String(length=64), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("engine", "source_table", name="pk_import_progress"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "seen_records",
        sa.Column("engine", sa.String(length=64), nullable=False),
        sa.Column("position", sa.String(length=200), nullable=False),
        sa.Column("seen_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("engine", "position", name="pk_seen_records"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "instances",
        sa.Column("engine", sa.String(length=64), nullable=False),
        sa.Column("process_instance_key", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("engine", "process_instance_key", name="pk_instances"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "pending_records",
        sa.Column("engine", sa.String(length=64), nullable=False),
        sa.Column("position", sa.String(length=200), nullable=False),
        sa.Column("source_table", sa.String(length=64), nullable=False),
        sa.Column("process_instance_key", sa.String(length=64), nullable=False),
        sa.Column("record_key", sa.Text(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("ends", sa.Boolean(), nullable=False),
        sa.Column("received_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("engine", "position", name="pk_pending_records"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_pending_instance", "pending_records", ["engine", "process_instance_key"], unique=False
    )


def downgrade() -> None:
    raise NotImplementedError("the Zeebe-shaped control tables are not restored")
