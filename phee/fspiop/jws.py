"""FSPIOP-Signature (detached JWS) compatible with Mojaloop sdk-standard-components 19.19.1.

Header value ``{"protectedHeader":<b64url JSON>,"signature":<b64url>}`` (sorted keys, compact,
as the SDK emits it); signed input ``protectedHeader + "." + b64url(body)``.

What the SDK's validator checks (its source, confirmed by the shared vectors): an RS256/ES256
signature over the body; a protected header with ``alg``, ``FSPIOP-URI``, ``FSPIOP-HTTP-Method``
and ``FSPIOP-Source`` each equal to its HTTP header; ``FSPIOP-Destination`` and ``Date`` equal
when present (a protected header without ``Date`` passes). Vectors 0/3/6/9/12/15 are valid,
1/4/7/10/13/16 (body changed) fail the signature, 2/5/8/11/14/17 (FSPIOP-URI header changed,
path unchanged) fail the comparison with the *header*: the SDK never looks at the real path.

Where we can differ from the SDK:

* Body. The SDK verifies ``safe-stable-stringify(JSON.parse(body))`` (sorted, compact), not the
  bytes received. ``body_mode="raw"`` (default) verifies the exact bytes: it accepts every peer
  that sends what it signed, including SDK <= 19.18 peers whose bodies keep insertion order
  (which 19.19.1 rejects), and rejects bodies re-formatted after signing (which 19.19.1
  accepts). ``body_mode="sdk"`` re-serialises as the SDK does. Every vector body is already
  canonical, so both modes reproduce all 18 verdicts.
* We also require FSPIOP-URI to equal the request path and FSPIOP-HTTP-Method the request method.
* Not mirrored: jsonwebtoken's ``exp``/``nbf`` checks on top-level body fields (FSPIOP schemas
  forbid them) and JavaScript's printing of exponent-form floats (rejected instead).

The SDK skips GETs and by default ``PUT /parties/...``: :func:`signature_required` says so for
callers; :func:`verify` itself never skips.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import threading
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, TypeAlias
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature as der_to_rs
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature as rs_to_der

PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
BodyMode: TypeAlias = Literal["raw", "sdk"]

ALLOWED_ALGS = ("RS256", "ES256")
#: `/<resource>` as the SDK's signer finds it when it cuts FSPIOP-URI out of a URL
_RESOURCE = re.compile(
    r"/(participants|parties|quotes|bulkQuotes|transfers|bulkTransfers|transactionRequests"
    r"|thirdpartyRequests|authorizations|consents|consentRequests|fxQuotes|fxTransfers)(?=/|$)"
)
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_FSP_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_JS_SAFE_INT = 2**53


class JwsError(ValueError):
    """A signature that must be rejected (FSPIOP error 3105); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownPeer(KeyError):
    """No public key for this FSP (a KeyError, so mapping-style callers can catch it)."""

    def __str__(self) -> str:  # KeyError's own str() would quote the message
        return str(self.args[0])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    # jws (node) rejects anything outside the base64url alphabet, padding included
    if not _B64URL.fullmatch(text):
        raise JwsError(f"{what} is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:  # binascii.Error, e.g. a length of 4n+1
        raise JwsError(f"{what} is not valid base64url: {exc}") from exc


def _js_compatible(value: Any) -> Any:
    """Make numbers print as JavaScript would, so a JSON.parse + re-stringify gives our bytes."""
    if isinstance(value, dict):
        return {k: _js_compatible(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_js_compatible(v) for v in value]
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e21:
            return _js_compatible(int(value))  # JS prints 1.0 as 1
        if "e" in repr(value) or not math.isfinite(value):
            raise ValueError(f"number {value!r} has no JSON form shared with JavaScript")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > _JS_SAFE_INT:
        raise ValueError(f"integer {value} is beyond 2**53 and would change in JavaScript")
    return value


def canonical_body(body: Any) -> bytes:
    """Serialise a body the way we send and sign it: compact JSON, sorted keys, UTF-8.

    That is what the SDK re-creates before checking, so SDK peers accept it byte for byte.
    """
    return json.dumps(
        _js_compatible(body),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode("utf-8")


def fspiop_uri(uri: str) -> str:
    """The FSPIOP-URI for a URL or path: from the last ``/<resource>`` on, as the SDK cuts it.

    Drops scheme, host and any mount prefix (``/fspiop/transfers/x`` -> ``/transfers/x``);
    keeps the query string. A path with no known resource is returned unchanged.
    """
    if "://" in uri:
        parts = urlsplit(uri)
        uri = parts.path + (f"?{parts.query}" if parts.query else "")
    found = list(_RESOURCE.finditer(uri))
    return uri[found[-1].start() :] if found else uri


def signature_required(method: str, path: str, *, put_parties: bool = False) -> bool:
    """Whether the SDK signs/checks this request: never GETs, ``PUT /parties/...`` only if asked."""
    method = method.upper()
    if method == "GET":
        return False
    return put_parties or not (method == "PUT" and fspiop_uri(path).startswith("/parties/"))


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in out and out[key] != value:
            raise JwsError(f"header {name} given twice with different values")
        out[key] = value
    return out


@lru_cache(maxsize=64)
def _load_private(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"{type(key).__name__} keys cannot sign FSPIOP: use RSA or EC P-256")
    return key


@lru_cache(maxsize=256)
def load_public_key(pem: bytes) -> PublicKey:
    """A public key from a PEM public key or certificate (RSA or EC only)."""
    if b"-----BEGIN CERTIFICATE-----" in pem:
        key: Any = x509.load_pem_x509_certificate(pem).public_key()
    else:
        key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError(f"{type(key).__name__} keys cannot verify FSPIOP: use RSA or EC P-256")
    return key


def _alg_fits(alg: str, key: PublicKey | PrivateKey) -> bool:
    """RS256 needs RSA, ES256 an EC P-256 key (jsonwebtoken refuses other pairings too)."""
    if alg not in ALLOWED_ALGS:
        raise ValueError(f"alg {alg} not allowed: only RS256 and ES256")
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return alg == "RS256"
    return alg == "ES256" and isinstance(key.curve, ec.SECP256R1)


def sign(
    *,
    method: str,
    uri: str,
    headers: Mapping[str, str],
    body: bytes,
    private_key_pem: bytes | str | PrivateKey,
    alg: str | None = None,
) -> str:
    """The FSPIOP-Signature value for a request; send exactly ``body`` and the same headers.

    FSPIOP-Source and Date come from ``headers`` (required), FSPIOP-Destination when present.
    Also send ``FSPIOP-URI: fspiop_uri(uri)`` and ``FSPIOP-HTTP-Method: method.upper()``.
    """
    if not body:
        raise ValueError("cannot sign an empty body: the SDK rejects signatures without one")
    key = private_key_pem
    if isinstance(key, str | bytes):
        key = _load_private(key.encode() if isinstance(key, str) else key)
    alg = alg or ("RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256")
    if not _alg_fits(alg, key):
        raise ValueError(f"alg {alg} does not fit a {type(key).__name__} key")
    h = _lowered(headers)
    for required in ("fspiop-source", "date"):
        if not h.get(required):
            raise ValueError(f"cannot sign without a {required} header")
    protected = {
        "alg": alg,
        "FSPIOP-URI": fspiop_uri(uri),
        "FSPIOP-HTTP-Method": method.upper(),
        "FSPIOP-Source": h["fspiop-source"],
    }
    if h.get("fspiop-destination"):
        protected["FSPIOP-Destination"] = h["fspiop-destination"]
    protected["Date"] = h["date"]
    header_b64 = _b64(json.dumps(protected, separators=(",", ":"), ensure_ascii=False).encode())
    signing_input = f"{header_b64}.{_b64(body)}".encode("ascii")
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:  # JOSE wants r || s, 32 bytes each, not the DER that cryptography returns
        r, s = der_to_rs(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    value = {"protectedHeader": header_b64, "signature": _b64(signature)}
    return json.dumps(value, separators=(",", ":"))


def _parse_signature_header(value: str) -> tuple[str, str, dict[str, Any]]:
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise JwsError(f"FSPIOP-Signature header is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise JwsError("FSPIOP-Signature header is not a JSON object")
    parts: list[str] = []
    for field in ("protectedHeader", "signature"):
        part = parsed.get(field)
        if not isinstance(part, str) or not part:
            raise JwsError(f"FSPIOP-Signature header lacks {field}")
        parts.append(part)
    try:
        protected = json.loads(_unb64(parts[0], "protectedHeader").decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JwsError(f"protected header is not JSON: {exc}") from exc
    if not isinstance(protected, dict):
        raise JwsError("protected header is not a JSON object")
    return parts[0], parts[1], protected


def _field(protected: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = protected.get(name)
    if value is None or value == "":
        if required:
            raise JwsError(f"protected header lacks {name}")
        return None
    if not isinstance(value, str):
        raise JwsError(f"{name} in protected header is not a string: {value!r}")
    return value


_REQUIRED = ("FSPIOP-URI", "FSPIOP-HTTP-Method", "FSPIOP-Source")  # the SDK's must-haves


def _check_fields(protected: dict[str, Any], h: dict[str, str], method: str, path: str) -> None:
    for name in (*_REQUIRED, "FSPIOP-Destination", "Date"):
        signed = _field(protected, name, required=name in _REQUIRED)
        sent = h.get(name.lower()) or None
        if signed is None and (sent is None or name == "Date"):
            continue  # the SDK accepts a protected header without Date
        if signed is None:
            raise JwsError(f"{name} header '{sent}' is not in the protected header")
        if sent is None:
            raise JwsError(f"missing {name} header (the protected header has '{signed}')")
        if signed != sent:
            raise JwsError(
                f"{name} in protected header '{signed}' differs from the {name} header '{sent}'"
            )
    uri, request_path = protected["FSPIOP-URI"], fspiop_uri(path)
    if uri != request_path:
        raise JwsError(
            f"FSPIOP-URI in protected header '{uri}' differs from the request path '{request_path}'"
        )
    signed_method, request_method = protected["FSPIOP-HTTP-Method"], method.upper()
    if signed_method != request_method:
        raise JwsError(
            f"FSPIOP-HTTP-Method in protected header '{signed_method}' differs from the request "
            f"method '{request_method}'"
        )


def _signed_payload(body: bytes, body_mode: BodyMode) -> bytes:
    if not body:
        raise JwsError("request has no body: the SDK rejects signatures without one")
    if body_mode == "raw":
        return body
    try:
        return canonical_body(json.loads(body))
    except (UnicodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise JwsError(f"cannot re-serialise the body as the SDK does: {exc}") from exc


def verify(
    *,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    public_key_pem: bytes | str | PublicKey,
    body_mode: BodyMode = "raw",
) -> None:
    """Check a request's FSPIOP-Signature against the sender's key; raise JwsError if invalid.

    ``path`` is the request path (plus ``?query`` if any) and ``body`` the bytes received.
    """
    key = public_key_pem
    if isinstance(key, str | bytes):
        key = load_public_key(key.encode() if isinstance(key, str) else key)
    _verify(method, path, headers, body, key, body_mode)


def _verify(
    method: str, path: str, headers: Mapping[str, str], body: bytes, key: PublicKey, mode: BodyMode
) -> None:
    h = _lowered(headers)
    if not h.get("fspiop-signature"):
        raise JwsError("missing FSPIOP-Signature header")
    header_b64, signature_b64, protected = _parse_signature_header(h["fspiop-signature"])
    alg = _field(protected, "alg", required=True)
    if alg not in ALLOWED_ALGS:
        raise JwsError(f"alg {alg} not allowed: only RS256 and ES256")
    _check_fields(protected, h, method, path)
    if not _alg_fits(alg, key):
        raise JwsError(f"alg {alg} does not fit the sender's {type(key).__name__} key")
    signature = _unb64(signature_b64, "signature")
    signing_input = f"{header_b64}.{_b64(_signed_payload(body, mode))}".encode("ascii")
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        else:
            if len(signature) != 64:
                raise JwsError(f"ES256 signature must be 64 bytes (r || s), got {len(signature)}")
            der = rs_to_der(
                int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            )
            key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise JwsError("signature does not match") from exc


class PeerKeys:
    """Peers' public keys from ``<fspId>.pem`` files, re-read whenever a file changes.

    Each lookup costs one ``stat``; a changed mtime, ctime, size or inode reloads the file, so
    rotating a key (in place, by rename, or by a Kubernetes secret update) needs no restart.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[int, int, int, int], PublicKey]] = {}

    def known(self) -> list[str]:
        """The fspIds that have a key file now."""
        return sorted(p.stem for p in self.directory.glob("*.pem"))

    def get(self, fsp_id: str) -> PublicKey:
        """The current public key of ``fsp_id``; UnknownPeer if it has no key file."""
        if not _FSP_ID.fullmatch(fsp_id):
            raise UnknownPeer(f"{fsp_id!r} is not a valid fspId for a key file name")
        path = self.directory / f"{fsp_id}.pem"
        try:
            st = os.stat(path)  # stat before read: a change after it is seen next time
        except FileNotFoundError:
            with self._lock:
                self._cache.pop(fsp_id, None)
            have = ", ".join(self.known()) or "nobody"
            msg = f"no JWS public key for '{fsp_id}': {path} does not exist (have keys for: {have})"
            raise UnknownPeer(msg) from None
        stamp = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)
        with self._lock:
            cached = self._cache.get(fsp_id)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            try:
                key = load_public_key(path.read_bytes())
            except ValueError as exc:
                msg = f"{path}: not a usable PEM public key or certificate: {exc}"
                raise ValueError(msg) from exc
            self._cache[fsp_id] = (stamp, key)
            return key


def verify_request(
    *,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    keys: PeerKeys,
    body_mode: BodyMode = "raw",
) -> None:
    """:func:`verify` with the key of the FSP named by FSPIOP-Source; unknown peers -> JwsError."""
    source = _lowered(headers).get("fspiop-source")
    if not source:
        raise JwsError("missing FSPIOP-Source header")
    try:
        key = keys.get(source)
    except UnknownPeer as exc:
        raise JwsError(str(exc)) from exc
    _verify(method, path, headers, body, key, body_mode)
