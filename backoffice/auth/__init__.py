"""Who is calling the operations API: bearer JWTs for people, API keys for service accounts.

* `principal`: the authenticated caller, roles, and the 401/403 failures;
* `bearer`: JWTs checked against the identity provider's JWKS (RS256/ES256 only);
* `keystore`: service-account API keys, only their hashes stored;
* `authenticator`: request headers in, a Principal out (the one entry point of the API).

The names below are those callers used when this was one module; new code imports from the
module that defines a name.
"""

from backoffice.auth.authenticator import Authenticator
from backoffice.auth.bearer import JwksCache, JwtVerifier
from backoffice.auth.keystore import (
    create_api_key,
    list_api_keys,
    parse_api_key,
    revoke_api_key,
    verify_api_key,
)
from backoffice.auth.principal import (
    READ_AUDIT,
    READ_TRANSFERS,
    ROLES,
    AuthError,
    KeysUnavailable,
    Principal,
    forbidden,
)

__all__ = [
    "READ_AUDIT",
    "READ_TRANSFERS",
    "ROLES",
    "AuthError",
    "Authenticator",
    "JwksCache",
    "JwtVerifier",
    "KeysUnavailable",
    "Principal",
    "create_api_key",
    "forbidden",
    "list_api_keys",
    "parse_api_key",
    "revoke_api_key",
    "verify_api_key",
]
