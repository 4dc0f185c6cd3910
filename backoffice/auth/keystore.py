"""Service-account API keys: issue, revoke, list and check them in the control table `api_keys`.

An API key is `phk_<key_id>.<secret>`; the table keeps only the SHA-256 of the secret (compared
in constant time), with the key's tenant and single role. Revoking sets `revoked_at`; a revoked
key fails exactly like a wrong one. A live key becomes a service `Principal`.

(The command line over these is `backoffice/apikeys.py`; this is the store it uses.)
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from backoffice import schema
from backoffice.auth.principal import ROLES, Principal, unauthenticated
from backoffice.db import Database, check_tenant, now

API_KEY_PREFIX = "phk_"
_API_KEY_RE = re.compile(r"^phk_([a-z0-9]{1,32})\.([A-Za-z0-9_-]{16,128})$")


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
