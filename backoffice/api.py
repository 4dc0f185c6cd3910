"""The back office operations API: search payments, read one payment's trail, read the audit log.

Every request is authenticated (`auth.Authenticator`), names its tenant in `Platform-TenantId`,
and that tenant must be the credentials' own; every query then runs on
`Database.tenant(conn, principal.tenant)`, so no request can read another tenant's schema.
Errors, 4xx and 5xx alike, carry FSPIOP's `errorInformation` body, as the rest of the hub does.
Each successful detail view is an operator action reported to `on_operator_action` (the audit
trail), after the data is read and before it is returned: if recording fails, nothing is shown.
Endpoints are plain `def`s: FastAPI runs them, and their blocking SQL, in its thread pool.
"""

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Self

from fastapi import Depends, FastAPI, Header, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

from backoffice import audit, queries
from backoffice.auth.authenticator import Authenticator
from backoffice.auth.principal import (
    READ_AUDIT,
    READ_TRANSFERS,
    AuthError,
    KeysUnavailable,
    Principal,
    forbidden,
)
from backoffice.db import Database, DatabaseError, check_tenant
from backoffice.settings import BackofficeSettings
from phee.fspiop.errors import FspiopError
from phee.service import configure_logging, instrument, load_settings, serve

log = logging.getLogger("backoffice.api")

TENANT_HEADER = "Platform-TenantId"
ENGINE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_INT64_MAX = 2**63 - 1

#: (tenant, actor, action, subject, detail): called once per successful detail view
OperatorAction = Callable[[str, str, str, str, dict[str, Any]], None]


def no_operator_action(
    tenant: str, actor: str, action: str, subject: str, detail: dict[str, Any]
) -> None:
    """A hook that records nothing (tests; `main` wires in `audit.operator_recorder`)."""


# -- response models ----------------------------------------------------------------------------


class ApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


class ErrorInformation(BaseModel):
    errorCode: str = Field(description="FSPIOP error code, e.g. 3100 (validation), 3101 (syntax)")
    errorDescription: str = Field(description="The code's meaning and what was wrong")


class ErrorBody(BaseModel):
    """FSPIOP's ErrorInformationObject, the body of every error answer."""

    errorInformation: ErrorInformation


_KEY = "Zeebe key as a decimal string (int64 exceeds JavaScript's safe integers)"


class Transfer(ApiModel):
    """One payment as one engine ran it (a process instance of a payment process)."""

    engine: str = Field(description="The engine (Zeebe cluster) that ran the payment")
    process_instance_key: str = Field(description=_KEY)
    partition_id: int
    bpmn_process_id: str
    direction: str = Field(description="PAYER (we send) or PAYEE (we receive)")
    transaction_id: str | None
    quote_id: str | None
    transfer_id: str | None
    correlation_id: str | None = Field(description="The channel's X-CorrelationID")
    status: str = Field(description="IN_PROGRESS, COMMITTED, ABORTED, EXPIRED, FAILED, ...")
    outcome: str | None
    reason: str | None
    error_code: str | None
    error_message: str | None
    payer_id_type: str | None
    payer_id: str | None
    payer_dfsp: str | None
    payee_id_type: str | None
    payee_id: str | None
    payee_dfsp: str | None
    amount: str | None = Field(description="Decimal string, as FSPIOP writes amounts")
    currency: str | None
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Self:
        values = {k: v for k, v in row.items() if k in cls.model_fields}
        values["process_instance_key"] = str(row["process_instance_key"])
        values["amount"] = _amount(row["amount"])
        return cls.model_validate(values)


def _amount(value: Decimal | None) -> str | None:
    if value is None:
        return None
    return format(value.normalize(), "f")


class Step(ApiModel):
    """A lifecycle event of the payment's process or one of its jobs, in log order."""

    partition_id: int
    position: int = Field(description="Zeebe log position (orders the trail)")
    record_key: str = Field(description=_KEY)
    value_type: str = Field(description="PROCESS_INSTANCE or JOB")
    intent: str
    element_id: str | None
    element_type: str | None
    job_type: str | None
    retries: int | None
    error_message: str | None
    at: datetime

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Self:
        return cls.model_validate({**_fields(cls, row), "record_key": str(row["record_key"])})


class Variable(ApiModel):
    """A variable the payment's process set, with its value as JSON."""

    partition_id: int
    position: int
    scope_key: str = Field(description=_KEY)
    name: str
    value: JsonValue = Field(description="The value, parsed from Zeebe's JSON")
    intent: str
    at: datetime

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Self:
        return cls.model_validate({**_fields(cls, row), "scope_key": str(row["scope_key"])})


class Incident(ApiModel):
    """An incident raised (or resolved) on the payment's process."""

    partition_id: int
    position: int
    incident_key: str = Field(description=_KEY)
    intent: str = Field(description="CREATED or RESOLVED")
    error_type: str | None
    error_message: str | None
    element_id: str | None
    at: datetime

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Self:
        return cls.model_validate({**_fields(cls, row), "incident_key": str(row["incident_key"])})


def _fields(model: type[BaseModel], row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k in model.model_fields}


class TransferDetail(ApiModel):
    """A payment and its whole trail: steps, variables and incidents."""

    transfer: Transfer
    steps: list[Step]
    variables: list[Variable]
    incidents: list[Incident]

    @classmethod
    def of(cls, found: Mapping[str, Any]) -> Self:
        return cls(
            transfer=Transfer.of(found["transfer"]),
            steps=[Step.of(r) for r in found["steps"]],
            variables=[Variable.of(r) for r in found["variables"]],
            incidents=[Incident.of(r) for r in found["incidents"]],
        )


class TransactionDetail(ApiModel):
    """Every transfer carrying one FSPIOP transactionId (e.g. both sides of an on-us payment)."""

    transaction_id: str
    transfers: list[TransferDetail]


class TransferPage(ApiModel):
    items: list[Transfer]
    total: int = Field(description="How many transfers match the filters, over all pages")
    limit: int
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last")


class AuditEntry(ApiModel):
    """One entry of the tenant's hash-chained audit log."""

    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: JsonValue = Field(description="Parsed JSON when the entry holds JSON, else text")
    source: str | None = Field(description="The engine record the entry stands for, if any")
    prev_hash: str
    hash: str


class AuditPage(ApiModel):
    items: list[AuditEntry]
    total: int
    limit: int
    next_cursor: str | None


# -- query parameters ---------------------------------------------------------------------------

_TIME = "ISO 8601 date-time with an offset, e.g. 2026-01-31T10:00:00Z (encode '+' as %2B)"
_CURSOR = "The `nextCursor` of the previous page (opaque)"


class _Paged(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_by_alias=True, validate_by_name=False)

    time_from: AwareDatetime | None = Field(
        None, alias="from", description="From (inclusive); " + _TIME
    )
    time_to: AwareDatetime | None = Field(None, alias="to", description="To (exclusive); " + _TIME)
    limit: int = Field(
        queries.DEFAULT_LIMIT, ge=1, le=queries.MAX_LIMIT, description="Page size (1..500)"
    )
    cursor: str | None = Field(None, min_length=1, max_length=512, description=_CURSOR)

    @model_validator(mode="after")
    def _time_range(self) -> Self:
        if self.time_from and self.time_to and self.time_from >= self.time_to:
            raise ValueError("`from` must be before `to`")
        return self


class TransferQuery(_Paged):
    """Transfer search filters; all given must hold. Newest first."""

    party: str | None = Field(
        None, min_length=1, max_length=128, description="Payer or payee identifier (exact)"
    )
    dfsp: str | None = Field(
        None, min_length=1, max_length=32, description="Payer or payee DFSP (exact)"
    )
    status: str | None = Field(
        None, pattern=r"^[A-Z_]{1,16}$", description="e.g. IN_PROGRESS, COMMITTED, FAILED"
    )
    min_amount: Decimal | None = Field(
        None, alias="minAmount", ge=0, max_digits=24, decimal_places=4, description="Inclusive"
    )
    max_amount: Decimal | None = Field(
        None, alias="maxAmount", ge=0, max_digits=24, decimal_places=4, description="Inclusive"
    )
    correlation_id: str | None = Field(None, alias="correlationId", min_length=1, max_length=128)
    transaction_id: str | None = Field(None, alias="transactionId", min_length=1, max_length=64)
    engine: str | None = Field(None, pattern=ENGINE_PATTERN)
    direction: str | None = Field(None, pattern=r"^[A-Z]{1,8}$", description="PAYER or PAYEE")

    @field_validator("cursor")
    @classmethod
    def _cursor(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                queries.TransferCursor.decode(value)
            except ValueError as err:
                raise PydanticCustomError("malformed", str(err)) from None
        return value

    @model_validator(mode="after")
    def _amount_range(self) -> Self:
        low, high = self.min_amount, self.max_amount
        if low is not None and high is not None and low > high:
            raise ValueError("`minAmount` must not exceed `maxAmount`")
        return self

    def filter(self) -> queries.TransferFilter:
        return queries.TransferFilter(
            party=self.party,
            dfsp=self.dfsp,
            status=self.status,
            min_amount=self.min_amount,
            max_amount=self.max_amount,
            started_from=self.time_from,
            started_to=self.time_to,
            correlation_id=self.correlation_id,
            transaction_id=self.transaction_id,
            engine=self.engine,
            direction=self.direction,
        )


class AuditQuery(_Paged):
    """Audit log filters; all given must hold. Newest first."""

    actor: str | None = Field(None, min_length=1, max_length=128)
    action: str | None = Field(None, min_length=1, max_length=64)
    subject: str | None = Field(None, min_length=1, max_length=256)

    @field_validator("cursor")
    @classmethod
    def _cursor(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                queries.AuditCursor.decode(value)
            except ValueError as err:
                raise PydanticCustomError("malformed", str(err)) from None
        return value

    def filter(self) -> queries.AuditFilter:
        return queries.AuditFilter(
            actor=self.actor,
            action=self.action,
            subject=self.subject,
            at_from=self.time_from,
            at_to=self.time_to,
        )


# -- errors -------------------------------------------------------------------------------------

_MALFORMED = {"malformed", "json_invalid", "string_pattern_mismatch", "timezone_aware"}


def _validation_code(kind: str) -> str:
    """3102 for a missing element, 3101 for text that does not parse, else 3100."""
    if kind == "missing":
        return "3102"
    if kind in _MALFORMED or kind.endswith(("_parsing", "_type")):
        return "3101"
    return "3100"


def _fspiop(
    code: str, detail: str, status: int, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(FspiopError(code, detail).body(), status_code=status, headers=headers)


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad parameter or header (3100, 3101, 3102)"},
    401: {"model": ErrorBody, "description": "Credentials missing, malformed, expired or forged"},
    403: {"model": ErrorBody, "description": "Another tenant's credentials, or a missing role"},
}


class _Tenants:
    """Tenants this process serves: configured and provisioned (re-read when one is missing)."""

    def __init__(self, settings: BackofficeSettings, db: Database) -> None:
        self._configured = frozenset(settings.tenants)
        self._provisioned: frozenset[str] = frozenset()
        self._db = db
        self._lock = threading.Lock()

    def served(self, tenant: str) -> bool:
        if tenant not in self._configured:
            return False
        with self._lock:
            if tenant not in self._provisioned:
                self._provisioned = frozenset(self._db.provisioned())
            return tenant in self._provisioned


# -- the app ------------------------------------------------------------------------------------

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
    tenants = _Tenants(settings, db)
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
    _errors_are_400(app)

    bearer = HTTPBearer(
        auto_error=False,
        scheme_name="bearerAuth",
        bearerFormat="JWT",
        description="A JWT from the identity provider, with the tenant and roles claims",
    )
    api_key = APIKeyHeader(
        name="X-API-Key",
        auto_error=False,
        scheme_name="apiKeyAuth",
        description="A service-account key phk_<id>.<secret> (or `Authorization: ApiKey <key>`)",
    )

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": exc.challenge()} if exc.status == 401 else None
        return _fspiop("3000", exc.message, exc.status, headers)

    @app.exception_handler(KeysUnavailable)
    async def keys_unavailable(request: Request, exc: KeysUnavailable) -> JSONResponse:
        log.warning("identity provider unreachable: %s", exc)
        return _fspiop("2003", "the identity provider's keys cannot be fetched", 503)

    @app.exception_handler(FspiopError)
    async def fspiop_error(request: Request, exc: FspiopError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        problems = []
        for err in errors[:5]:
            where = "/".join(str(p) for p in err["loc"][1:])
            message = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "is not a parameter of this endpoint"
            problems.append(f"{where}: {message}" if where else message)
        err = FspiopError(_validation_code(str(errors[0]["type"])), "; ".join(problems))
        return JSONResponse(err.body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "3002" if exc.status_code == 404 else "3000"
        return _fspiop(code, str(exc.detail), exc.status_code, dict(exc.headers or {}) or None)

    @app.exception_handler(DatabaseError)
    async def database_error(request: Request, exc: DatabaseError) -> JSONResponse:
        log.error("database error: %s", exc)
        if exc.retryable:
            return _fspiop("2003", "the database is unavailable, try again", 503)
        return _fspiop("2001", "the database failed", 500)

    def authenticated(
        request: Request,
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
        _key: Annotated[str | None, Security(api_key)],
    ) -> Principal:
        """The caller (the security parameters are there for the OpenAPI document)."""
        return authn.authenticate(
            request.headers.get("authorization"), request.headers.get("x-api-key")
        )

    def in_tenant(
        principal: Annotated[Principal, Depends(authenticated)],
        tenant: Annotated[
            str,
            Header(
                alias=TENANT_HEADER,
                description="The tenant whose data is read; must be the credentials' tenant",
            ),
        ],
    ) -> Principal:
        try:
            check_tenant(tenant)
        except ValueError as err:
            raise FspiopError("3101", f"{TENANT_HEADER}: {err}") from None
        if tenant != principal.tenant:
            raise forbidden(f"these credentials are not for tenant {tenant!r}")
        if not tenants.served(tenant):
            raise FspiopError(
                "3100", f"{TENANT_HEADER}: tenant {tenant!r} is not served by this back office"
            )
        return principal

    def reader(principal: Annotated[Principal, Depends(in_tenant)]) -> Principal:
        if not principal.has_any(READ_TRANSFERS):
            raise forbidden("reading transfers needs the operator, auditor or admin role")
        return principal

    def auditor(principal: Annotated[Principal, Depends(in_tenant)]) -> Principal:
        if not principal.has_any(READ_AUDIT):
            raise forbidden("reading the audit log needs the auditor or admin role")
        return principal

    def record(principal: Principal, action: str, subject: str, detail: dict[str, Any]) -> None:
        on_operator_action(
            principal.tenant,
            principal.subject,
            action,
            subject,
            {"kind": principal.kind, "roles": sorted(principal.roles), **detail},
        )

    not_found: dict[int | str, dict[str, Any]] = {
        **_ERROR_RESPONSES,
        404: {"model": ErrorBody, "description": "Not in this tenant (3200/3207)"},
    }

    @app.get(
        "/api/v1/transfers",
        tags=["transfers"],
        summary="Search transfers",
        response_model=TransferPage,
        responses=_ERROR_RESPONSES,
    )
    def search_transfers(
        principal: Annotated[Principal, Depends(reader)],
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
        responses=not_found,
    )
    def transfer_detail(
        principal: Annotated[Principal, Depends(reader)],
        engine: Annotated[str, Path(pattern=ENGINE_PATTERN, description="The engine's name")],
        process_instance_key: Annotated[
            int, Path(ge=0, le=_INT64_MAX, description="The process instance key")
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
        responses=not_found,
    )
    def transaction_detail(
        principal: Annotated[Principal, Depends(reader)],
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
        responses=_ERROR_RESPONSES,
    )
    def audit(
        principal: Annotated[Principal, Depends(auditor)],
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


def _errors_are_400(app: FastAPI) -> None:
    """Drop FastAPI's generated 422 answers from the document: bad input is a 400 here."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        schemas = document.get("components", {}).get("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


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
    configure_logging(settings.service)
    db = Database(settings.database_url)
    db.migrate_control()
    for tenant in settings.tenants:
        db.provision(tenant)
    if not settings.jwks_url:
        log.warning("PHEE_BACKOFFICE_JWKS_URL is not set: only API keys are accepted")
    recorder = audit.operator_recorder(db, settings.secret("audit_key").encode())
    serve(create_app(settings, db, on_operator_action=recorder), settings.service)


if __name__ == "__main__":
    main()
