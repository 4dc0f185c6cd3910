"""A tenant's tables for Debezium change events of Operaton's history (decision 0018).

Steps, variables and incidents are keyed by (engine, CDC position) and name UUID process
instances; transfers keep the facts their status is derived from. The Zeebe-shaped tables are
replaced, not converted (their keys and records have no CDC counterpart): a site with Zeebe
history exports it before upgrading. The audit log is kept.

Revision ID: t0002
Revises: t0001
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "t0002"
down_revision = "t0001"
branch_labels = None
depends_on = None

TABLE_OPTIONS: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_OLD_INDEXES = {
    "variables": ["ix_variables_instance"],
    "steps": ["ix_steps_instance"],
    "incidents": ["ix_incidents_instance"],
    "transfers": [
        "ix_transfers_transaction_id", "ix_transfers_status_started", "ix_transfers_started",
        "ix_transfers_payer", "ix_transfers_payee", "ix_transfers_correlation_id",
    ],
}  # fmt: skip


def _record_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("engine", sa.String(length=64), nullable=False),
        sa.Column("position", sa.String(length=200), nullable=False),
        sa.Column("lsn", sa.BigInteger(), nullable=False),
        sa.Column("process_instance_key", sa.String(length=64), nullable=False),
        sa.Column("op", sa.String(length=1), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
    ]


def upgrade() -> None:
    for table, indexes in _OLD_INDEXES.items():
        for index in indexes:
            op.drop_index(index, table_name=table)
        op.drop_table(table)
    op.create_table(
        "transfers",
        sa.Column("engine", sa.String(length=64), nullable=False),
        sa.Column("process_instance_key", sa.String(length=64), nullable=False),
        sa.Column("bpmn_process_id", sa.String(length=128), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("transaction_id", sa.String(length=64), nullable=True),
        sa.Column("quote_id", sa.String(length=64), nullable=True),
        sa.Column("transfer_id", sa.String(length=64), nullable=True),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("recorded_reason", sa.Text(), nullable=True),
        sa.Column("end_state", sa.String(length=32), nullable=True),
        sa.Column("open_incidents", sa.Text(), nullable=False),
        sa.Column("error_code", sa.String(length=32), nullable=True),
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
        sa.PrimaryKeyConstraint("engine", "process_instance_key", name="pk_transfers"),
        **TABLE_OPTIONS,
    )
    for name, cols in (
        ("ix_transfers_transaction_id", ["transaction_id"]),
        ("ix_transfers_correlation_id", ["correlation_id"]),
        ("ix_transfers_status_started", ["status", "started_at"]),
        ("ix_transfers_started", ["started_at"]),
        ("ix_transfers_payer", ["payer_id"]),
        ("ix_transfers_payee", ["payee_id"]),
    ):
        op.create_index(name, "transfers", cols, unique=False)
    op.create_table(
        "steps",
        *_record_columns(),
        sa.Column("record_key", sa.String(length=255), nullable=False),
        sa.Column("source_table", sa.String(length=32), nullable=False),
        sa.Column("element_id", sa.String(length=255), nullable=True),
        sa.Column("element_type", sa.String(length=64), nullable=True),
        sa.Column("element_name", sa.String(length=255), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=True),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("ended_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("engine", "position", name="pk_steps"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_steps_instance", "steps", ["engine", "process_instance_key", "at"], unique=False
    )
    op.create_table(
        "variables",
        *_record_columns(),
        sa.Column("record_key", sa.String(length=64), nullable=False),
        sa.Column("scope_key", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("value_type", sa.String(length=32), nullable=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("engine", "position", name="pk_variables"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_variables_instance", "variables", ["engine", "process_instance_key", "at"], unique=False
    )
    op.create_table(
        "incidents",
        *_record_columns(),
        sa.Column("incident_key", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("error_type", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("element_id", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("engine", "position", name="pk_incidents"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_incidents_instance", "incidents", ["engine", "process_instance_key"], unique=False
    )


def downgrade() -> None:
    raise NotImplementedError("the Zeebe-shaped tenant tables are not restored")
