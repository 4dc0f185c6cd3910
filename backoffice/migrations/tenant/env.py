"""Alembic environment for the tenant tables; the caller passes the connection (and schema)."""

from __future__ import annotations

from backoffice import schema as tables
from backoffice.migrations import run_env

run_env(tables.TENANT)
