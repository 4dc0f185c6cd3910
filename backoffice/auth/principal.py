"""Who a caller is once authenticated (`Principal`, roles) and how authentication fails.

Kept apart from the checks themselves (`bearer`, `keystore`, `authenticator`) so that each of
them depends on this module only, and the operations API can name principals, roles and
failures without pulling in a JWT library or the key table.

Failures are `AuthError`s: 401 with a `WWW-Authenticate` challenge when the credentials are
missing or not valid, 403 when they are valid but not enough.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

#: what each role may do: operators search and view transfers, auditors also read the audit log
ROLES = ("operator", "auditor", "admin")
Role = Literal["operator", "auditor", "admin"]
#: roles allowed to search and view transfers
READ_TRANSFERS: frozenset[str] = frozenset(ROLES)
#: roles allowed to read the audit log
READ_AUDIT: frozenset[str] = frozenset({"auditor", "admin"})

REALM = "phee-operations"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: who, for which tenant, with which roles."""

    subject: str
    tenant: str
    roles: frozenset[str]
    kind: Literal["user", "service"]

    def has_any(self, roles: Collection[str]) -> bool:
        return not self.roles.isdisjoint(roles)


class AuthError(Exception):
    """401 (credentials missing or not valid) or 403 (valid, but not allowed)."""

    def __init__(
        self, status: Literal[401, 403], message: str, *, invalid_token: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.invalid_token = invalid_token

    def challenge(self) -> str:
        """The `WWW-Authenticate` value: both schemes, with RFC 6750's error when a token failed."""
        bearer = f'Bearer realm="{REALM}"'
        if self.invalid_token:
            described = self.message.replace('"', "'")
            bearer += f', error="invalid_token", error_description="{described}"'
        return f'{bearer}, ApiKey realm="{REALM}"'


class KeysUnavailable(Exception):
    """The JWKS could not be fetched and the token's key is not cached (a 503, not a 401)."""


def unauthenticated(message: str, *, invalid_token: bool = False) -> AuthError:
    return AuthError(401, message, invalid_token=invalid_token)


def forbidden(message: str) -> AuthError:
    return AuthError(403, message)
