"""The operations API's endpoints, and the app that serves them over one database.

Endpoints are plain `def`s: FastAPI runs them, and their blocking SQL, in its thread pool. Each
reads only the caller's tenant (`deps`). Each successful detail view is an operator action
reported to `on_operator_action` (the audit trail), after the data is read and before it is
returned: if recording fails, nothing is shown.
"""

import logging
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query
from sqlalchemy import text

from backoffice import audit, queries
from backoffice.api import errors
from backoffice.api.deps import OperatorAction, Tenants, guards, no_operator_action
from backoffice.api.errors import ERROR_RESPONSES, NOT_FOUND_RESPONSES
from backoffice.api.models import (
    ENGINE_PATTERN,
    AuditEntry,
    AuditPage,
    AuditQuery,
    TransactionDetail,
    Transfer,
    TransferDetail,
    TransferPage,
    TransferQuery,
)
from backoffice.auth.authenticator import Authenticator
from backoffice.auth.principal import Principal
from backoffice.db import Database, DatabaseError
from backoffice.settings import BackofficeSettings
from phee.fspiop.errors import FspiopError
from phee.service import instrument, load_settings, serve

log = logging.getLogger("backoffice.api")


_DESCRIPTION = """\
Search the payments of one tenant, read one payment's whole trail (steps, variables, incidents)
and read the tenant's audit log.

**Authentication**: a bearer JWT from the identity provider (RS256/ES256, audience and issuer
checked; the tenant and roles come from its claims), or a service-account API key
`phk_<id>.<secret>` sent as `X-API-Key: <key>` or `Authorization: ApiKey <key>`.
**Tenant**: header `Platform-TenantId`, which must be the credentials' tenant.
**Roles**: `operator` searches and views transfers, `auditor` also reads the audit log, `admin`
may do everything. Every detail view is recorded in the audit log.
**Errors** carry FSPIOP's `errorInformation` (3100 validation, 3101 syntax, 3102 missing,
3200/3207 not found).
**Paging**: keyset, newest first; pass `nextCursor` back as `cursor` until it is null.
"""


def create_app(
    settings: BackofficeSettings,
    db: Database,
    *,
    on_operator_action: OperatorAction = no_operator_action,
    authenticator: Authenticator | None = None,
) -> FastAPI:
    """The operations API over `db`; `on_operator_action` records each detail view."""
    authn = authenticator or Authenticator.from_settings(settings, db)
    guard = guards(authn, Tenants(settings, db))
    app = FastAPI(
        title="phee back office operations API",
        version="1.0.0",
        description=_DESCRIPTION,
        openapi_tags=[
            {"name": "transfers", "description": "Payments and their trails"},
            {"name": "audit", "description": "The tenant's hash-chained audit log"},
        ],
    )
    instrument(app, ready=lambda: _database_ready(db))
    errors.install(app)

    def record(principal: Principal, action: str, subject: str, detail: dict[str, Any]) -> None:
        on_operator_action(
            principal.tenant,
            principal.subject,
            action,
            subject,
            {"kind": principal.kind, "roles": sorted(principal.roles), **detail},
        )

    @app.get(
        "/api/v1/transfers",
        tags=["transfers"],
        summary="Search transfers",
        response_model=TransferPage,
        responses=ERROR_RESPONSES,
    )
    def search_transfers(
        principal: Annotated[Principal, Depends(guard.reader)],
        params: Annotated[TransferQuery, Query()],
    ) -> TransferPage:
        """A page of the tenant's transfers matching every filter given, newest first."""
        with db.begin() as conn:
            page = queries.search_transfers(
                db.tenant(conn, principal.tenant),
                params.filter(),
                limit=params.limit,
                cursor=params.cursor,
            )
        return TransferPage(
            items=[Transfer.of(r) for r in page.items],
            total=page.total,
            limit=params.limit,
            next_cursor=page.next_cursor,
        )

    @app.get(
        "/api/v1/transfers/{engine}/{process_instance_key}",
        tags=["transfers"],
        summary="One transfer with its trail",
        response_model=TransferDetail,
        responses=NOT_FOUND_RESPONSES,
    )
    def transfer_detail(
        principal: Annotated[Principal, Depends(guard.reader)],
        engine: Annotated[str, Path(pattern=ENGINE_PATTERN, description="The engine's name")],
        process_instance_key: Annotated[
            str,
            Path(pattern=r"^[A-Za-z0-9:._-]{1,64}$", description="The process instance id"),
        ],
    ) -> TransferDetail:
        """The transfer run by `engine` as `process_instance_key`, with steps, variables and
        incidents in log order. Recorded in the audit log as `view_transfer`."""
        with db.begin() as conn:
            found = queries.transfer_detail(
                db.tenant(conn, principal.tenant), engine, process_instance_key
            )
        if found is None:
            raise FspiopError("3200", f"no transfer {engine}/{process_instance_key}")
        detail = TransferDetail.of(found)
        record(principal, "view_transfer", f"{engine}/{process_instance_key}", {})
        return detail

    @app.get(
        "/api/v1/transactions/{transaction_id}",
        tags=["transfers"],
        summary="The transfers of one transaction",
        response_model=TransactionDetail,
        responses=NOT_FOUND_RESPONSES,
    )
    def transaction_detail(
        principal: Annotated[Principal, Depends(guard.reader)],
        transaction_id: Annotated[
            str, Path(min_length=1, max_length=64, description="FSPIOP transactionId")
        ],
    ) -> TransactionDetail:
        """Every transfer with this FSPIOP transactionId (oldest first), each with its trail.
        Recorded in the audit log as `view_transaction`."""
        with db.begin() as conn:
            found = queries.transaction_details(db.tenant(conn, principal.tenant), transaction_id)
        if not found:
            raise FspiopError("3207", f"no transaction {transaction_id}")
        detail = TransactionDetail(
            transaction_id=transaction_id, transfers=[TransferDetail.of(f) for f in found]
        )
        instances = [
            f"{t.transfer.engine}/{t.transfer.process_instance_key}" for t in detail.transfers
        ]
        record(principal, "view_transaction", transaction_id, {"transfers": instances})
        return detail

    @app.get(
        "/api/v1/audit",
        tags=["audit"],
        summary="Read the audit log",
        response_model=AuditPage,
        responses=ERROR_RESPONSES,
    )
    def audit(
        principal: Annotated[Principal, Depends(guard.auditor)],
        params: Annotated[AuditQuery, Query()],
    ) -> AuditPage:
        """A page of the tenant's audit log, newest entry first (auditor or admin role)."""
        with db.begin() as conn:
            page = queries.audit_page(
                db.tenant(conn, principal.tenant),
                params.filter(),
                limit=params.limit,
                cursor=params.cursor,
            )
        return AuditPage(
            items=[AuditEntry.model_validate(r) for r in page.items],
            total=page.total,
            limit=params.limit,
            next_cursor=page.next_cursor,
        )

    return app


def _database_ready(db: Database) -> bool:
    try:
        with db.begin() as conn:
            conn.execute(text("SELECT 1"))
    except DatabaseError:
        return False
    return True


def main() -> None:
    """Migrate the control schema, provision every configured tenant, serve the API."""
    settings = load_settings(BackofficeSettings, "back-office operations API")
    db = Database(settings.database_url)
    db.migrate_control()
    for tenant in settings.tenants:
        db.provision(tenant)
    if not settings.jwks_url:
        log.warning("PHEE_BACKOFFICE_JWKS_URL is not set: only API keys are accepted")
    recorder = audit.operator_recorder(db, settings.secret("audit_key").encode())
    serve(create_app(settings, db, on_operator_action=recorder), settings.service)
