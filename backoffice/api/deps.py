"""What the operations API's endpoints depend on: an authenticated caller of a served tenant
with a role that may read, and the hook that records operator actions.

Every request names its tenant in `Platform-TenantId`; it must be the credentials' own tenant
and one this process serves, so that every query can then run on
`Database.tenant(conn, principal.tenant)` and no request can read another tenant's schema.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from backoffice.auth.authenticator import Authenticator
from backoffice.auth.principal import READ_AUDIT, READ_TRANSFERS, Principal, forbidden
from backoffice.db import Database, check_tenant
from backoffice.settings import BackofficeSettings
from phee.fspiop.errors import FspiopError

TENANT_HEADER = "Platform-TenantId"

#: (tenant, actor, action, subject, detail): called once per successful detail view
OperatorAction = Callable[[str, str, str, str, dict[str, Any]], None]


def no_operator_action(
    tenant: str, actor: str, action: str, subject: str, detail: dict[str, Any]
) -> None:
    """A hook that records nothing (tests; `main` wires in `audit.operator_recorder`)."""


class Tenants:
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


@dataclass(frozen=True)
class Guards:
    """FastAPI dependencies that give the endpoint the caller, or answer 401/403/400 first."""

    #: a caller who may search and view transfers (operator, auditor or admin)
    reader: Callable[..., Principal]
    #: a caller who may read the audit log (auditor or admin)
    auditor: Callable[..., Principal]


def guards(authn: Authenticator, tenants: Tenants) -> Guards:
    """The dependencies checking callers with `authn` against the tenants `tenants` serves."""
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

    return Guards(reader=reader, auditor=auditor)
