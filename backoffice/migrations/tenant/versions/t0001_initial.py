"""A tenant's tables: transfers, steps, variables, incidents, audit log.

Revision ID: t0001
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "t0001"
down_revision = None
branch_labels = None
depends_on = None

#: MariaDB tables in utf8mb4 whatever the server default (names in any script)
TABLE_OPTIONS: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
#: microseconds on MariaDB too (its plain DATETIME drops them)
TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("mac", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=256), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("source", name="uq_audit_log_source"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "incidents",
        sa.Column("engine", sa.String(length=64), nullable=False),
        sa.Column("partition_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("process_instance_key", sa.BigInteger(), nullable=False),
        sa.Column("incident_key", sa.BigInteger(), nullable=False),
        sa.Column("intent", sa.String(length=16), nullable=False),
        sa.Column("error_type", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("element_id", sa.String(length=128), nullable=True),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("engine", "partition_id", "position", name="pk_incidents"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_incidents_instance", "incidents", ["engine", "process_instance_key"], unique=False
    )
    op.create_table(
        "steps",
        sa.Column("engine", sa.String(length=64), nullable=False),
        sa.Column("partition_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("process_instance_key", sa.BigInteger(), nullable=False),
        sa.Column("record_key", sa.BigInteger(), nullable=False),
        sa.Column("value_type", sa.String(length=32), nullable=False),
        sa.Column("intent", sa.String(length=32), nullable=False),
        sa.Column("element_id", sa.String(length=128), nullable=True),
        sa.Column("element_type", sa.String(length=32), nullable=True),
        sa.Column("job_type", sa.String(length=128), nullable=True),
        sa.Column("retries", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("engine", "partition_id", "position", name="pk_steps"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_steps_instance", "steps", ["engine", "process_instance_key", "position"], unique=False
    )
    op.create_table(
        "transfers",
        sa.Column("engine", sa.String(length=64), nullable=False),
        sa.Column("process_instance_key", sa.BigInteger(), nullable=False),
        sa.Column("partition_id", sa.Integer(), nullable=False),
        sa.Column("bpmn_process_id", sa.String(length=128), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("transaction_id", sa.String(length=64), nullable=True),
        sa.Column("quote_id", sa.String(length=64), nullable=True),
        sa.Column("transfer_id", sa.String(length=64), nullable=True),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(length=16), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("payer_id_type", sa.String(length=32), nullable=True),
        sa.Column("payer_id", sa.String(length=128), nullable=True),
        sa.Column("payer_dfsp", sa.String(length=32), nullable=True),
        sa.Column("payee_id_type", sa.String(length=32), nullable=True),
        sa.Column("payee_id", sa.String(length=128), nullable=True),
        sa.Column("payee_dfsp", sa.String(length=32), nullable=True),
        sa.Column("amount", sa.Numeric(precision=24, scale=4), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("completed_at", TIMESTAMP, nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("last_position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("engine", "process_instance_key", name="pk_transfers"),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_transfers_correlation_id", "transfers", ["correlation_id"], unique=False)
    op.create_index("ix_transfers_payee", "transfers", ["payee_id"], unique=False)
    op.create_index("ix_transfers_payer", "transfers", ["payer_id"], unique=False)
    op.create_index("ix_transfers_started", "transfers", ["started_at"], unique=False)
    op.create_index(
        "ix_transfers_status_started", "transfers", ["status", "started_at"], unique=False
    )
    op.create_index("ix_transfers_transaction_id", "transfers", ["transaction_id"], unique=False)
    op.create_table(
        "variables",
        sa.Column("engine", sa.String(length=64), nullable=False),
        sa.Column("partition_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("process_instance_key", sa.BigInteger(), nullable=False),
        sa.Column("scope_key", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("intent", sa.String(length=16), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("engine", "partition_id", "position", name="pk_variables"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_variables_instance",
        "variables",
        ["engine", "process_instance_key", "position"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_variables_instance", table_name="variables")
    op.drop_table("variables")
    op.drop_index("ix_transfers_transaction_id", table_name="transfers")
    op.drop_index("ix_transfers_status_started", table_name="transfers")
    op.drop_index("ix_transfers_started", table_name="transfers")
    op.drop_index("ix_transfers_payer", table_name="transfers")
    op.drop_index("ix_transfers_payee", table_name="transfers")
    op.drop_index("ix_transfers_correlation_id", table_name="transfers")
    op.drop_table("transfers")
    op.drop_index("ix_steps_instance", table_name="steps")
    op.drop_table("steps")
    op.drop_index("ix_incidents_instance", table_name="incidents")
    op.drop_table("incidents")
    op.drop_table("audit_log")
    op.drop_table("audit_head")
