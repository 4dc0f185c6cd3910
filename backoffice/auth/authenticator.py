"""The operations API's one entry point to authentication: request headers in, a Principal out.

It picks the check by what the request carries (a bearer JWT for people, an API key for
service accounts, exactly one of them) and is built from the back office's settings: without a
JWKS URL only API keys are accepted.
"""

from __future__ import annotations

from backoffice.auth.bearer import JwksCache, JwtVerifier, fetch_jwks
from backoffice.auth.keystore import verify_api_key
from backoffice.auth.principal import Principal, unauthenticated
from backoffice.db import Database
from backoffice.settings import BackofficeSettings


class Authenticator:
    """Turns the request's credentials (exactly one kind) into a Principal."""

    def __init__(self, db: Database, verifier: JwtVerifier | None) -> None:
        self.db = db
        self.verifier = verifier

    @classmethod
    def from_settings(
        cls, settings: BackofficeSettings, db: Database, *, min_refetch_s: float = 10.0
    ) -> Authenticator:
        verifier = None
        if settings.jwks_url:
            verifier = JwtVerifier(
                JwksCache(fetch_jwks(settings.jwks_url), min_refetch_s=min_refetch_s),
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
                tenant_claim=settings.tenant_claim,
                roles_claim=settings.roles_claim,
            )
        return cls(db, verifier)

    def authenticate(self, authorization: str | None, api_key: str | None) -> Principal:
        """From `Authorization: Bearer <jwt>`, `Authorization: ApiKey <key>` or `X-API-Key`."""
        if authorization is not None and api_key is not None:
            raise unauthenticated("send one credential: Authorization or X-API-Key, not both")
        if api_key is not None:
            return verify_api_key(self.db, api_key)
        if authorization is None:
            raise unauthenticated("credentials are required (bearer token or API key)")
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if not value:
            raise unauthenticated("the Authorization header is malformed")
        if scheme.lower() == "apikey":
            return verify_api_key(self.db, value)
        if scheme.lower() != "bearer":
            raise unauthenticated(f"authorization scheme {scheme!r} is not supported")
        if self.verifier is None:
            raise unauthenticated("bearer tokens are not accepted here (no JWKS configured)")
        return self.verifier.verify(value)
