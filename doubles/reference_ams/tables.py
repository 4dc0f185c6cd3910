"""The reference AMS's SQL schema (SQLAlchemy Core), the same on SQLite, MariaDB and PostgreSQL.

Tables carry an `ams_` prefix so the AMS can share a database with other parts of a site.
Amounts are signed BIGINT minor units (never float). `balance` and `held` on an account are
caches of its entries and open holds, kept in the same transaction; they exist so that the
row lock on the account is the one place where concurrent operations on it serialise, and
`Ledger.check` proves they still agree with the journal.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql

metadata = MetaData()

#: microsecond timestamps on MariaDB too (its DATETIME defaults to whole seconds); naive UTC
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

#: kinds of account: a customer's, the scheme settlement (nostro) and the funding (equity) one
CUSTOMER, SETTLEMENT, EQUITY = "CUSTOMER", "SETTLEMENT", "EQUITY"
#: system accounts use this party id type, which FSPIOP's PartyIdType enum cannot name
SYSTEM_PARTY_TYPE = "SYSTEM"

accounts = Table(
    "ams_accounts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("party_id_type", String(32), nullable=False),
    Column("party_identifier", String(128), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("name", String(128), nullable=False),
    Column("balance", BigInteger, nullable=False),
    Column("held", BigInteger, nullable=False),
    Column("created", Timestamp, nullable=False),
    UniqueConstraint("party_id_type", "party_identifier", "currency", name="uq_ams_account"),
)

#: one row per leg; the legs of one (transaction_id, operation) sum to zero
entries = Table(
    "ams_entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("transaction_id", String(64), nullable=False),
    Column("operation", String(16), nullable=False),
    Column("account_id", Integer, ForeignKey("ams_accounts.id"), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("created", Timestamp, nullable=False),
    Index("ix_ams_entries_account", "account_id"),
    Index("ix_ams_entries_transaction", "transaction_id"),
)

#: funds blocked for a payer-side transfer: BLOCKED, then BOOKED or RELEASED
holds = Table(
    "ams_holds",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("transaction_id", String(64), nullable=False),
    Column("account_id", Integer, ForeignKey("ams_accounts.id"), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created", Timestamp, nullable=False),
    Column("updated", Timestamp, nullable=False),
    UniqueConstraint("transaction_id", name="uq_ams_hold"),
)

#: every successful money operation once; the unique key is what makes retries idempotent
operations = Table(
    "ams_operations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("transaction_id", String(64), nullable=False),
    Column("operation", String(16), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("response", Text, nullable=False),
    Column("created", Timestamp, nullable=False),
    UniqueConstraint("transaction_id", "operation", name="uq_ams_operation"),
)
