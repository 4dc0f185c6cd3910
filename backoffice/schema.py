"""The back office's tables (SQLAlchemy Core), in two groups.

* Tenant tables live once per tenant, in the tenant's own schema (PostgreSQL), database
  (MariaDB) or attached database file (SQLite). They are declared without a schema; every
  statement runs with `schema_translate_map={None: <tenant schema>}`.
* Control tables live in the default schema: a lock row per (engine, history table), the
  positions seen, the tenant each process instance belongs to, records waiting for their
  instance's tenant, the tenants provisioned so far, and service-account API keys.

Alembic migrations (`backoffice/migrations`) create both groups; these objects are what the
code queries with, and a test checks the two agree.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql

#: Control tables are declared in this placeholder schema, which every connection maps to the
#: default one. A connection mapped to a tenant (unqualified tables -> the tenant's schema) thus
#: still reaches the control tables: SQLAlchemy 2 sets execution options on a connection in place.
CONTROL_SCHEMA = "phee_control"
#: timestamps keep microseconds everywhere (MariaDB's plain DATETIME drops them)
Timestamp = DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
TENANT = MetaData()
CONTROL = MetaData(schema=CONTROL_SCHEMA)

#: the unique key of every imported record: its change-data-capture position within one engine
#: (records.position_text of phee.cdc.position: snapshot?, LSN, table, primary key)
RECORD_KEY = ("engine", "position")
PROCESS_INSTANCE = String(64)  # Operaton ids are UUIDs


def _record_columns() -> list[Column[Any]]:
    return [
        Column("engine", String(64), nullable=False),
        Column("position", String(200), nullable=False),
        Column("lsn", BigInteger, nullable=False),
        Column("process_instance_key", PROCESS_INSTANCE, nullable=False),
        Column("op", String(1), nullable=False),
        Column("at", Timestamp, nullable=False),
    ]


transfers = Table(
    "transfers",
    TENANT,
    Column("engine", String(64), nullable=False),
    Column("process_instance_key", PROCESS_INSTANCE, nullable=False),
    Column("bpmn_process_id", String(128), nullable=False),
    Column("direction", String(8), nullable=False),
    Column("transaction_id", String(64)),
    Column("quote_id", String(64)),
    Column("transfer_id", String(64)),
    Column("correlation_id", String(128)),
    Column("status", String(16), nullable=False),
    Column("outcome", String(16)),
    Column("reason", Text),
    # the facts the status is derived from (mapping.derive)
    Column("recorded_reason", Text),
    Column("end_state", String(32)),
    Column("open_incidents", Text, nullable=False),
    Column("error_code", String(32)),
    Column("error_message", Text),
    Column("payer_id_type", String(32)),
    Column("payer_id", String(128)),
    Column("payer_dfsp", String(32)),
    Column("payee_id_type", String(32)),
    Column("payee_id", String(128)),
    Column("payee_dfsp", String(32)),
    Column("amount", Numeric(24, 4)),
    Column("currency", String(3)),
    Column("started_at", Timestamp),
    Column("completed_at", Timestamp),
    Column("updated_at", Timestamp, nullable=False),
    PrimaryKeyConstraint("engine", "process_instance_key", name="pk_transfers"),
    Index("ix_transfers_transaction_id", "transaction_id"),
    Index("ix_transfers_correlation_id", "correlation_id"),
    Index("ix_transfers_status_started", "status", "started_at"),
    Index("ix_transfers_started", "started_at"),
    Index("ix_transfers_payer", "payer_id"),
    Index("ix_transfers_payee", "payee_id"),
)

#: changes of process and activity instances (act_hi_procinst, act_hi_actinst)
steps = Table(
    "steps",
    TENANT,
    *_record_columns(),
    Column("record_key", String(255), nullable=False),
    Column("source_table", String(32), nullable=False),
    Column("element_id", String(255)),
    Column("element_type", String(64)),
    Column("element_name", String(255)),
    Column("state", String(32)),
    Column("started_at", Timestamp),
    Column("ended_at", Timestamp),
    PrimaryKeyConstraint(*RECORD_KEY, name="pk_steps"),
    Index("ix_steps_instance", "engine", "process_instance_key", "at"),
)

#: changes of variable instances (act_hi_varinst)
variables = Table(
    "variables",
    TENANT,
    *_record_columns(),
    Column("record_key", String(64), nullable=False),
    Column("scope_key", String(64)),
    Column("name", String(255), nullable=False),
    Column("value_type", String(32)),
    Column("value", Text, nullable=False),
    Column("state", String(16)),
    PrimaryKeyConstraint(*RECORD_KEY, name="pk_variables"),
    Index("ix_variables_instance", "engine", "process_instance_key", "at"),
)

#: changes of incidents (act_hi_incident)
incidents = Table(
    "incidents",
    TENANT,
    *_record_columns(),
    Column("incident_key", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("error_type", String(64)),
    Column("error_message", Text),
    Column("element_id", String(255)),
    PrimaryKeyConstraint(*RECORD_KEY, name="pk_incidents"),
    Index("ix_incidents_instance", "engine", "process_instance_key"),
)

#: Append-only, hash-chained: entry `seq` hashes (key, prev_hash, its fields); see audit.py.
audit_log = Table(
    "audit_log",
    TENANT,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", Timestamp, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("detail", Text, nullable=False),
    # `<engine>/<position>` of the record an importer entry stands for: a replay
    # can never chain the same step twice
    Column("source", String(128)),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("source", name="uq_audit_log_source"),
)

#: One row: the newest entry's seq and hash, locked by every append (serialises writers) and
#: checked by `verify` (finds a deleted tail).
audit_head = Table(
    "audit_head",
    TENANT,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("mac", String(64), nullable=False),
)

# -- control tables ---------------------------------------------------------------------------

#: One row per (engine, history table): locked by every batch that holds records of that table,
#: so two importers (a rebalance) never decide about the same records at once.
import_progress = Table(
    "import_progress",
    CONTROL,
    Column("engine", String(64), nullable=False),
    Column("source_table", String(64), nullable=False),
    Column("records", BigInteger, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    PrimaryKeyConstraint("engine", "source_table", name="pk_import_progress"),
)

#: Every position imported, parked or dead-lettered: the set that makes a replay change nothing
#: (LSNs are neither unique nor in delivery order, so no high-water mark can do it).
seen_records = Table(
    "seen_records",
    CONTROL,
    Column("engine", String(64), nullable=False),
    Column("position", String(200), nullable=False),
    Column("seen_at", Timestamp, nullable=False),
    PrimaryKeyConstraint("engine", "position", name="pk_seen_records"),
)

instances = Table(
    "instances",
    CONTROL,
    Column("engine", String(64), nullable=False),
    Column("process_instance_key", PROCESS_INSTANCE, nullable=False),
    Column("tenant", String(32), nullable=False),
    PrimaryKeyConstraint("engine", "process_instance_key", name="pk_instances"),
)

#: records of instances whose tenant is not known yet (the Kafka key and value, as received)
pending_records = Table(
    "pending_records",
    CONTROL,
    Column("engine", String(64), nullable=False),
    Column("position", String(200), nullable=False),
    Column("source_table", String(64), nullable=False),
    Column("process_instance_key", PROCESS_INSTANCE, nullable=False),
    Column("record_key", Text, nullable=False),
    Column("record", Text, nullable=False),
    #: the record shows the instance ended: without a tenant it is dead-lettered after a grace
    Column("ends", Boolean, nullable=False),
    Column("received_at", Timestamp, nullable=False),
    PrimaryKeyConstraint("engine", "position", name="pk_pending_records"),
    Index("ix_pending_instance", "engine", "process_instance_key"),
)

tenants = Table(
    "tenants",
    CONTROL,
    Column("name", String(32), primary_key=True),
    Column("schema_name", String(64), nullable=False, unique=True),
    Column("revision", String(32), nullable=False),
    Column("created_at", Timestamp, nullable=False),
)

api_keys = Table(
    "api_keys",
    CONTROL,
    Column("key_id", String(32), primary_key=True),
    Column("secret_hash", String(64), nullable=False),
    Column("tenant", String(32), nullable=False),
    Column("role", String(16), nullable=False),
    Column("name", String(128), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("revoked_at", Timestamp),
)
