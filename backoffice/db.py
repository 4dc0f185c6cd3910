"""The back office's SQL adapter: one engine, tenants as schemas, migrations per tenant.

A tenant's tables live in its own namespace, named `tenant_<name>` (dashes become underscores;
tenant names cannot contain underscores, so two tenants never share one):
* PostgreSQL: a schema in the configured database;
* MariaDB: a database `<configured database>_tenant_<name>` beside the configured one (MariaDB
  databases are server-wide; the prefix keeps two back offices on one server apart);
* SQLite: a database file beside the main file, attached under that name to every connection.
SQLite runs in rollback-journal mode, not WAL: only then is a transaction that writes the main
file and a tenant file atomic across both (the import progress and the rows it covers commit
together or not at all).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection

from backoffice import schema
from phee.sql import SqlError, SqlOptions, make_engine, transaction

#: what a tenant may be called (it becomes part of a schema name)
TENANT_PATTERN = r"^[a-z][a-z0-9-]{0,30}$"
_TENANT_RE = re.compile(TENANT_PATTERN)


#: the database refused or failed; `retryable` says whether trying again may help
DatabaseError = SqlError


def check_tenant(name: str) -> str:
    """The tenant name, or ValueError saying what a tenant name may look like."""
    if not _TENANT_RE.fullmatch(name):
        raise ValueError(
            f"tenant {name!r} is not valid: 1-31 characters, lowercase letters, digits and "
            "dashes, starting with a letter"
        )
    return name


def schema_name(tenant: str) -> str:
    return "tenant_" + check_tenant(tenant).replace("-", "_")


def now() -> datetime:
    return datetime.now(UTC)


class Database:
    """The back office database: control tables in the default schema, one schema per tenant."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        control = {"schema_translate_map": {schema.CONTROL_SCHEMA: None}}
        options = SqlOptions(execution_options=control)
        if self.dialect == "sqlite":
            main = make_url(url).database
            if not main or main == ":memory:":
                raise ValueError("the back office needs a SQLite file, not an in-memory database")
            self._sqlite_dir = Path(main).resolve().parent
            options = SqlOptions(
                journal_mode="DELETE",
                synchronous="FULL",
                busy_timeout_s=30.0,
                on_connect=self._attach_tenants,
                execution_options=control,
            )
        self.engine: Engine = make_engine(url, options)

    # -- connections -------------------------------------------------------------------------

    def _attach_tenants(self, dbapi_conn: DBAPIConnection) -> None:
        """Every connection sees every tenant file, each in rollback-journal mode (see above)."""
        cursor = dbapi_conn.cursor()
        for path in sorted(self._sqlite_dir.glob("tenant_*.db")):
            cursor.execute(f"ATTACH DATABASE '{path}' AS {path.stem}")
            cursor.execute(f"PRAGMA {path.stem}.journal_mode=DELETE")
        cursor.close()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction; database errors come out as DatabaseError (retryable or not)."""
        with transaction(self.engine) as conn:
            yield conn

    def lock_rows(self) -> bool:
        """Whether SELECT ... FOR UPDATE means something (SQLite locks the whole file)."""
        return self.dialect != "sqlite"

    def namespace(self, tenant: str) -> str:
        """The schema (PostgreSQL, SQLite) or database (MariaDB) holding a tenant's tables."""
        name = schema_name(tenant)
        if self.dialect in ("mysql", "mariadb"):
            return f"{make_url(self.url).database}_{name}"[:64]
        return name

    def tenant(self, conn: Connection, tenant: str) -> Connection:
        """`conn` with the tenant tables mapped into the tenant's schema."""
        return conn.execution_options(
            schema_translate_map={None: self.namespace(tenant), schema.CONTROL_SCHEMA: None}
        )

    # -- provisioning ------------------------------------------------------------------------

    def migrate_control(self) -> None:
        from backoffice.migrations import upgrade

        upgrade(self, "control", None)

    def provisioned(self) -> dict[str, str]:
        """Tenant name -> Alembic revision of every provisioned tenant."""
        with self.begin() as conn:
            rows = conn.execute(select(schema.tenants.c.name, schema.tenants.c.revision))
            return {r.name: r.revision for r in rows}

    def provision(self, tenant: str) -> str:
        """Create the tenant's schema if needed and migrate it to the newest revision."""
        from backoffice.migrations import upgrade

        name = self.namespace(tenant)
        self._create_namespace(name)
        revision = upgrade(self, "tenant", name)
        with self.begin() as conn:
            found = conn.execute(
                select(schema.tenants.c.name).where(schema.tenants.c.name == tenant)
            ).first()
            values = {"schema_name": name, "revision": revision}
            if found is None:
                conn.execute(
                    schema.tenants.insert().values(name=tenant, created_at=now(), **values)
                )
            else:
                conn.execute(
                    schema.tenants.update().where(schema.tenants.c.name == tenant).values(values)
                )
        return revision

    def _create_namespace(self, name: str) -> None:
        if self.dialect == "sqlite":
            path = self._sqlite_dir / f"{name}.db"
            if not path.exists():
                path.touch()
                # pooled connections were opened before the file existed: attach it everywhere
                self.engine.dispose()
            return
        with self.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{name}"'))
            else:
                # the server default may be latin1: payments carry names in any script
                conn.execute(
                    text(
                        f"CREATE DATABASE IF NOT EXISTS `{name}` "
                        "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                    )
                )

    def drop_tenant_namespaces(self) -> None:
        """Tests only: remove every tenant schema (the control tables stay)."""
        for tenant in self.provisioned():
            name = self.namespace(tenant)
            if self.dialect == "sqlite":
                self.engine.dispose()
                (self._sqlite_dir / f"{name}.db").unlink(missing_ok=True)
                continue
            with self.begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
                else:
                    conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))

    def close(self) -> None:
        self.engine.dispose()
