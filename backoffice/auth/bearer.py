"""Bearer tokens: JWTs signed by the identity provider, checked against its JWKS.

A bearer token is a JWT signed with RS256 or ES256 (never `none` or HMAC: with HMAC, anyone
holding the public key could mint tokens). Its keys come from the provider's JWKS, cached and
refetched on an unknown `kid` at most once per `min_refetch_s`, so random `kid`s cannot turn the
API into a flood against the provider. A valid token becomes a user `Principal`; its tenant and
roles come from claims.

(Named `bearer`, not `jwt`, so that it is never mistaken for the PyJWT library it imports.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import jwt

from backoffice.auth.principal import ROLES, KeysUnavailable, Principal, unauthenticated

#: the only signature algorithms accepted on bearer tokens
ALGORITHMS = ("RS256", "ES256")
_MAX_TOKEN = 16_384


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
