"""Who is calling the operations API: bearer JWTs for people, API keys for service accounts.

* A bearer token is a JWT signed by the identity provider with RS256 or ES256 (never `none` or
  HMAC: with HMAC, anyone holding the public key could mint tokens). Its keys come from the
  provider's JWKS, cached and refetched on an unknown `kid` at most once per `min_refetch_s`,
  so random `kid`s cannot turn the API into a flood against the provider.
* An API key is `phk_<key_id>.<secret>`; the control table `api_keys` keeps only the SHA-256 of
  the secret (compared in constant time), with the key's tenant and single role. Revoking sets
  `revoked_at`; a revoked key fails exactly like a wrong one.

Both become a `Principal`. Failures are `AuthError`s: 401 with a `WWW-Authenticate` challenge
when the credentials are missing or not valid, 403 when they are valid but not enough.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import jwt
from sqlalchemy import select

from backoffice import schema
from backoffice.db import Database, check_tenant, now
from backoffice.settings import BackofficeSettings

#: what each role may do: operators search and view transfers, auditors also read the audit log
ROLES = ("operator", "auditor", "admin")
Role = Literal["operator", "auditor", "admin"]
#: roles allowed to search and view transfers
READ_TRANSFERS: frozenset[str] = frozenset(ROLES)
#: roles allowed to read the audit log
READ_AUDIT: frozenset[str] = frozenset({"auditor", "admin"})

#: the only signature algorithms accepted on bearer tokens
ALGORITHMS = ("RS256", "ES256")
API_KEY_PREFIX = "phk_"
_API_KEY_RE = re.compile(r"^phk_([a-z0-9]{1,32})\.([A-Za-z0-9_-]{16,128})$")
_MAX_TOKEN = 16_384
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


# -- JWKS ---------------------------------------------------------------------------------------


def fetch_jwks(url: str, timeout_s: float = 5.0) -> Callable[[], Mapping[str, Any]]:
    """A fetcher of the JWKS at `url` (plain HTTP GET, JSON body)."""

    def fetch() -> Mapping[str, Any]:
        response = httpx.get(url, timeout=timeout_s, follow_redirects=False)
        response.raise_for_status()
        body = response.json()
        if not isinstance(body, dict):
            raise ValueError("the JWKS is not a JSON object")
        return body

    return fetch


class JwksCache:
    """Signing keys by `kid`, refreshed after `max_age_s`, refetched on an unknown `kid`.

    Fetches are serialised and rate limited (one per `min_refetch_s`), and at most `max_keys`
    keys are kept, so neither forged `kid`s nor a huge JWKS can exhaust anything. When the
    provider is down, keys already cached keep working.
    """

    def __init__(
        self,
        fetch: Callable[[], Mapping[str, Any]],
        *,
        max_age_s: float = 300.0,
        min_refetch_s: float = 10.0,
        max_keys: int = 32,
    ) -> None:
        self._fetch = fetch
        self._max_age_s = max_age_s
        self._min_refetch_s = min_refetch_s
        self._max_keys = max_keys
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._lock = threading.Lock()
        self.fetches = 0

    def key(self, kid: str) -> jwt.PyJWK | None:
        """The key named `kid`, fetching the JWKS when needed and allowed; None if unknown."""
        with self._lock:
            clock = time.monotonic()
            stale = clock - self._fetched_at >= self._max_age_s
            if (kid not in self._keys or stale) and (
                clock - self._attempted_at >= self._min_refetch_s
            ):
                self._attempted_at = clock
                try:
                    self._keys = self._load(self._fetch())
                    self._fetched_at = clock
                except (httpx.HTTPError, ValueError, jwt.PyJWTError) as err:
                    if kid not in self._keys:
                        raise KeysUnavailable(f"cannot fetch the signing keys: {err}") from err
            return self._keys.get(kid)

    def _load(self, jwks: Mapping[str, Any]) -> dict[str, jwt.PyJWK]:
        self.fetches += 1
        entries = jwks.get("keys")
        if not isinstance(entries, list):
            raise ValueError("the JWKS has no 'keys' list")
        keys: dict[str, jwt.PyJWK] = {}
        for entry in entries:
            if len(keys) >= self._max_keys:
                break
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
                continue
            if entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(entry)
            except (jwt.PyJWTError, ValueError, KeyError, TypeError):
                continue  # malformed, or a key type we do not accept: not ours to use
            if key.algorithm_name in ALGORITHMS:
                keys[entry["kid"]] = key
        return keys


# -- bearer tokens ------------------------------------------------------------------------------


class JwtVerifier:
    """Checks a bearer JWT and turns its claims into a Principal."""

    def __init__(
        self,
        keys: JwksCache,
        *,
        audience: str,
        issuer: str | None,
        tenant_claim: str = "tenant",
        roles_claim: str = "roles",
        leeway_s: float = 30.0,
    ) -> None:
        self.keys = keys
        self.audience = audience
        self.issuer = issuer
        self.tenant_claim = tenant_claim
        self.roles_claim = roles_claim
        self.leeway_s = leeway_s

    def verify(self, token: str) -> Principal:
        if len(token) > _MAX_TOKEN:
            raise unauthenticated("the bearer token is too long", invalid_token=True)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise unauthenticated("the bearer token is not a JWT", invalid_token=True) from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise unauthenticated(
                f"token algorithm {alg!r} is not accepted (only {', '.join(ALGORITHMS)})",
                invalid_token=True,
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise unauthenticated("the token names no signing key (kid)", invalid_token=True)
        key = self.keys.key(kid)
        if key is None:
            raise unauthenticated(f"unknown signing key {kid!r}", invalid_token=True)
        if key.algorithm_name != alg:
            raise unauthenticated(f"signing key {kid!r} is not an {alg} key", invalid_token=True)
        required = ["exp", "aud", "sub"] + (["iss"] if self.issuer else [])
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": required},
            )
        except jwt.ExpiredSignatureError:
            raise unauthenticated("the token has expired", invalid_token=True) from None
        except jwt.InvalidAudienceError:
            raise unauthenticated("the token is for another audience", invalid_token=True) from None
        except jwt.InvalidIssuerError:
            raise unauthenticated("the token has another issuer", invalid_token=True) from None
        except jwt.MissingRequiredClaimError as err:
            raise unauthenticated(
                f"the token lacks the {err.claim!r} claim", invalid_token=True
            ) from None
        except jwt.InvalidSignatureError:
            raise unauthenticated("the token signature is not valid", invalid_token=True) from None
        except jwt.PyJWTError as err:
            raise unauthenticated(f"the token is not valid: {err}", invalid_token=True) from None
        return self._principal(claims)

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise unauthenticated("the token's subject is not a string", invalid_token=True)
        tenant = claim(claims, self.tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise unauthenticated(
                f"the token's {self.tenant_claim!r} claim is not a tenant name", invalid_token=True
            )
        roles = claim(claims, self.roles_claim)
        if roles is None:
            roles = []
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise unauthenticated(
                f"the token's {self.roles_claim!r} claim is not a list of roles",
                invalid_token=True,
            )
        return Principal(
            subject=subject,
            tenant=tenant,
            roles=frozenset(r for r in roles if r in ROLES),
            kind="user",
        )


def claim(claims: Mapping[str, Any], name: str) -> Any:
    """A claim by name; a dotted name that is not a claim itself walks nested objects
    (Keycloak's `realm_access.roles`)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


# -- API keys -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedKey:
    """A new API key; `key` is the only time the plaintext exists anywhere."""

    key_id: str
    key: str
    tenant: str
    role: str
    name: str


@dataclass(frozen=True)
class ApiKeyInfo:
    key_id: str
    tenant: str
    role: str
    name: str
    created_at: str
    revoked_at: str | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_api_key(presented: str) -> tuple[str, str]:
    """(key_id, secret) of a key in the `phk_<key_id>.<secret>` form, else a 401."""
    match = _API_KEY_RE.fullmatch(presented.strip())
    if match is None:
        raise unauthenticated("the API key is malformed (expected phk_<key_id>.<secret>)")
    return match.group(1), match.group(2)


def create_api_key(db: Database, *, tenant: str, role: str, name: str) -> IssuedKey:
    """Store a new service-account key (its hash only) and return the plaintext, once."""
    check_tenant(tenant)
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not name or len(name) > 128:
        raise ValueError("a key needs a name of 1-128 characters")
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    with db.begin() as conn:
        conn.execute(
            schema.api_keys.insert().values(
                key_id=key_id,
                secret_hash=_digest(secret),
                tenant=tenant,
                role=role,
                name=name,
                created_at=now(),
            )
        )
    return IssuedKey(key_id, f"{API_KEY_PREFIX}{key_id}.{secret}", tenant, role, name)


def revoke_api_key(db: Database, key_id: str) -> bool:
    """Revoke a key; False when no live key has that id (unknown or already revoked)."""
    t = schema.api_keys
    with db.begin() as conn:
        result = conn.execute(
            t.update()
            .where(t.c.key_id == key_id, t.c.revoked_at.is_(None))
            .values(revoked_at=now())
        )
        return result.rowcount == 1


def list_api_keys(db: Database, tenant: str | None = None) -> list[ApiKeyInfo]:
    """Every key (never a secret), newest first."""
    t = schema.api_keys
    query = select(t).order_by(t.c.created_at.desc(), t.c.key_id)
    if tenant is not None:
        query = query.where(t.c.tenant == tenant)
    with db.begin() as conn:
        return [
            ApiKeyInfo(
                key_id=r.key_id,
                tenant=r.tenant,
                role=r.role,
                name=r.name,
                created_at=r.created_at.isoformat(),
                revoked_at=r.revoked_at.isoformat() if r.revoked_at else None,
            )
            for r in conn.execute(query)
        ]


#: compared against when the key id is unknown, so a miss costs what a hit costs
_DUMMY_HASH = _digest("no such key")


def verify_api_key(db: Database, presented: str) -> Principal:
    """The service principal of a live key, or a 401 that does not say which part was wrong."""
    key_id, secret = parse_api_key(presented)
    t = schema.api_keys
    with db.begin() as conn:
        row = conn.execute(
            select(t.c.secret_hash, t.c.tenant, t.c.role, t.c.revoked_at).where(
                t.c.key_id == key_id
            )
        ).first()
    stored = row.secret_hash if row is not None else _DUMMY_HASH
    matches = hmac.compare_digest(_digest(secret), stored)
    if row is None or not matches or row.revoked_at is not None:
        raise unauthenticated("the API key is not valid")
    return Principal(
        subject=f"apikey:{key_id}", tenant=row.tenant, roles=frozenset({row.role}), kind="service"
    )


# -- both ---------------------------------------------------------------------------------------


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
