"""Bearer JWT and API-key checks of the operations API, against keys generated here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from sqlalchemy import select

from backoffice import schema
from backoffice.auth.authenticator import Authenticator
from backoffice.auth.bearer import JwksCache, JwtVerifier
from backoffice.auth.keystore import (
    create_api_key,
    list_api_keys,
    parse_api_key,
    revoke_api_key,
    verify_api_key,
)
from backoffice.auth.principal import AuthError, KeysUnavailable, Principal
from backoffice.db import Database

ISSUER = "https://idp.phee.test/realms/ops"
AUDIENCE = "phee-operations"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        entry = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        entry = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**entry, "kid": kid, "use": "sig"}


JWKS = {"keys": [public_jwk(RSA_KEY, "rsa-1"), public_jwk(EC_KEY, "ec-1")]}


def claims(**changes: Any) -> dict[str, Any]:
    """Good claims; a change to None removes the claim."""
    base: dict[str, Any] = {
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": int(time.time()),
        "exp": int(time.time()) + 300,
        "tenant": "tenant-a",
        "roles": ["operator", "unrelated-role"],
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def signed(
    body: Mapping[str, Any],
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = RSA_KEY,
    kid: str = "rsa-1",
    alg: str = "RS256",
) -> str:
    return jwt.encode(dict(body), key, algorithm=alg, headers={"kid": kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def hand_made(header: Mapping[str, Any], body: Mapping[str, Any], secret: bytes | None) -> str:
    """A token built by hand: PyJWT itself refuses to make the attacks below."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
    signature = b""
    if secret is not None:
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


class CountingSource:
    """A JWKS that can change between fetches, and counts them."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self.jwks = jwks
        self.fetches = 0
        self.down = False

    def __call__(self) -> Mapping[str, Any]:
        self.fetches += 1
        if self.down:
            raise ValueError("identity provider unreachable")
        return self.jwks


def verifier(
    source: CountingSource | None = None, *, min_refetch_s: float = 60.0, **options: Any
) -> JwtVerifier:
    keys = JwksCache(source or CountingSource(JWKS), min_refetch_s=min_refetch_s)
    return JwtVerifier(keys, audience=AUDIENCE, issuer=ISSUER, **options)


def rejected(v: JwtVerifier, token: str) -> AuthError:
    with pytest.raises(AuthError) as caught:
        v.verify(token)
    assert caught.value.status == 401
    assert 'error="invalid_token"' in caught.value.challenge()
    return caught.value


@pytest.mark.parametrize(
    ("key", "kid", "alg"), [(RSA_KEY, "rsa-1", "RS256"), (EC_KEY, "ec-1", "ES256")]
)
def test_a_valid_token_gives_its_principal(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str, alg: str
) -> None:
    principal = verifier().verify(signed(claims(), key, kid, alg))
    assert principal == Principal("alice", "tenant-a", frozenset({"operator"}), "user")


def test_wrong_issuer_and_wrong_audience_are_rejected() -> None:
    v = verifier()
    assert "issuer" in rejected(v, signed(claims(iss="https://evil.test"))).message
    assert "audience" in rejected(v, signed(claims(aud="another-api"))).message
    assert "'iss'" in rejected(v, signed(claims(iss=None))).message


def test_expiry_is_required_and_checked_with_a_small_leeway() -> None:
    v = verifier()
    assert "expired" in rejected(v, signed(claims(exp=int(time.time()) - 120))).message
    assert "'exp'" in rejected(v, signed(claims(exp=None))).message
    # ten seconds late is within the leeway (clocks differ a little)
    assert v.verify(signed(claims(exp=int(time.time()) - 10))).subject == "alice"


def test_alg_none_is_rejected_signed_or_not() -> None:
    v = verifier()
    header = {"alg": "none", "kid": "rsa-1", "typ": "JWT"}
    assert "'none'" in rejected(v, hand_made(header, claims(), None)).message
    assert "'none'" in rejected(v, hand_made(header, claims(), b"x")).message


def test_hs256_signed_with_the_public_key_is_rejected() -> None:
    """The classic confusion attack: the RSA public key (public!) used as an HMAC secret."""
    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = hand_made({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}, claims(), pem)
    assert "'HS256'" in rejected(verifier(), token).message


def test_a_token_signed_by_another_key_under_a_known_kid_is_rejected() -> None:
    assert "signature" in rejected(verifier(), signed(claims(), OTHER_RSA_KEY)).message


def test_an_rs256_header_on_the_ec_key_is_rejected() -> None:
    token = signed(claims(), RSA_KEY, kid="ec-1")
    assert "not an RS256 key" in rejected(verifier(), token).message


def test_unknown_kid_is_rejected_and_refetches_are_bounded() -> None:
    source = CountingSource(JWKS)
    v = verifier(source, min_refetch_s=60.0)
    token = signed(claims(), RSA_KEY, kid="rotated-away")
    assert "unknown signing key" in rejected(v, token).message
    for _ in range(5):
        rejected(v, token)
    assert source.fetches == 1  # forged kids do not turn into a flood against the provider


def test_a_new_key_is_found_by_refetching_on_its_kid() -> None:
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    source = CountingSource(JWKS)
    v = verifier(source, min_refetch_s=0.0)
    assert v.verify(signed(claims())).subject == "alice"
    source.jwks = {"keys": [*JWKS["keys"], public_jwk(new_key, "rsa-2")]}
    assert v.verify(signed(claims(sub="bob"), new_key, kid="rsa-2")).subject == "bob"
    assert source.fetches == 2


def test_cached_keys_outlive_an_unreachable_provider() -> None:
    source = CountingSource(JWKS)
    keys = JwksCache(source, max_age_s=0.0, min_refetch_s=0.0)
    v = JwtVerifier(keys, audience=AUDIENCE, issuer=ISSUER)
    assert v.verify(signed(claims())).subject == "alice"
    source.down = True
    assert v.verify(signed(claims())).subject == "alice"  # stale but known: still accepted
    with pytest.raises(KeysUnavailable):
        v.verify(signed(claims(), RSA_KEY, kid="never-seen"))


def test_unusable_jwks_entries_are_skipped() -> None:
    jwks = {
        "keys": [
            {"kty": "oct", "kid": "hmac", "k": b64(b"shared secret")},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            {**public_jwk(OTHER_RSA_KEY, "enc"), "use": "enc"},
            *JWKS["keys"],
        ]
    }
    v = verifier(CountingSource(jwks))
    assert v.verify(signed(claims())).tenant == "tenant-a"
    hs = hand_made({"alg": "HS256", "kid": "hmac"}, claims(), b"shared secret")
    rejected(v, hs)
    assert "unknown signing key" in rejected(v, signed(claims(), OTHER_RSA_KEY, "enc")).message


def test_tenant_and_roles_come_from_the_configured_claims() -> None:
    v = verifier(tenant_claim="https://phee.io/tenant", roles_claim="realm_access.roles")
    token = signed(
        claims(
            tenant=None,
            roles=None,
            **{"https://phee.io/tenant": "tenant-b", "realm_access": {"roles": ["auditor"]}},
        )
    )
    principal = v.verify(token)
    assert (principal.tenant, principal.roles) == ("tenant-b", frozenset({"auditor"}))
    assert "'tenant'" in rejected(verifier(), signed(claims(tenant=None))).message
    assert "'tenant'" in rejected(verifier(), signed(claims(tenant=["tenant-a"]))).message
    assert "'roles'" in rejected(verifier(), signed(claims(roles="admin"))).message
    assert verifier().verify(signed(claims(roles=None))).roles == frozenset()


# -- API keys (a SQLite file) ----------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'backoffice.db'}")
    database.migrate_control()
    yield database
    database.close()


def test_api_key_round_trip_and_revocation(db: Database) -> None:
    issued = create_api_key(db, tenant="tenant-a", role="auditor", name="reconciler")
    assert issued.key.startswith(f"phk_{issued.key_id}.")
    principal = verify_api_key(db, issued.key)
    assert principal == Principal(
        f"apikey:{issued.key_id}", "tenant-a", frozenset({"auditor"}), "service"
    )
    with db.begin() as conn:
        stored = conn.execute(select(schema.api_keys.c.secret_hash)).scalar_one()
    secret = issued.key.split(".", 1)[1]
    assert stored == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in stored

    wrong = issued.key[:-4] + ("AAAA" if not issued.key.endswith("AAAA") else "BBBB")
    with pytest.raises(AuthError) as caught:
        verify_api_key(db, wrong)
    assert caught.value.status == 401

    assert revoke_api_key(db, issued.key_id) is True
    assert revoke_api_key(db, issued.key_id) is False
    with pytest.raises(AuthError, match="not valid"):
        verify_api_key(db, issued.key)
    assert [k.revoked_at is not None for k in list_api_keys(db, "tenant-a")] == [True]


def test_api_keys_are_checked_for_form_and_inputs(db: Database) -> None:
    for bad in ("phk_", "phk_abc", "abc.defghijklmnopqrstu", "phk_ABC.defghijklmnopqrstu"):
        with pytest.raises(AuthError, match="malformed"):
            parse_api_key(bad)
    with pytest.raises(AuthError, match="not valid"):
        verify_api_key(db, "phk_0123456789abcdef.aaaaaaaaaaaaaaaaaaaaaaaa")
    with pytest.raises(ValueError, match="role"):
        create_api_key(db, tenant="tenant-a", role="root", name="x")
    with pytest.raises(ValueError, match="tenant"):
        create_api_key(db, tenant="Tenant_A", role="operator", name="x")


def test_authenticator_takes_exactly_one_credential(db: Database) -> None:
    authn = Authenticator(db, verifier())
    issued = create_api_key(db, tenant="tenant-a", role="operator", name="svc")
    token = signed(claims())
    assert authn.authenticate(f"Bearer {token}", None).kind == "user"
    assert authn.authenticate(f"ApiKey {issued.key}", None).kind == "service"
    assert authn.authenticate(None, issued.key).kind == "service"
    for authorization, api_key, message in [
        (None, None, "required"),
        (f"Bearer {token}", issued.key, "not both"),
        ("Bearer", None, "malformed"),
        ("Basic dXNlcjpwYXNz", None, "'Basic' is not supported"),
    ]:
        with pytest.raises(AuthError, match=message) as caught:
            authn.authenticate(authorization, api_key)
        assert caught.value.status == 401
        assert caught.value.challenge().startswith('Bearer realm="phee-operations"')
    without_jwks = Authenticator(db, None)
    with pytest.raises(AuthError, match="no JWKS"):
        without_jwks.authenticate(f"Bearer {token}", None)
