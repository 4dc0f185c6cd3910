"""FSPIOP-Signature: the real SDK's verdicts, sign/verify round trips, tampering, key rotation.

The vectors were produced by Mojaloop sdk-standard-components 19.19.1; every verdict must match.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from phee.fspiop.jws import (
    JwsError,
    PeerKeys,
    PrivateKey,
    UnknownPeer,
    canonical_body,
    fspiop_uri,
    sign,
    signature_required,
    verify,
    verify_request,
)

VECTORS = (
    Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "mojaloop-sdk-19.19.1.json"
)


def _load_jws_vectors() -> dict[str, Any] | None:
    try:
        jws: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))["jws"]
    except FileNotFoundError:
        return None
    return jws


_JWS = _load_jws_vectors()
# without the file, one placeholder case still runs, and fails through the `vectors` fixture
_CASES: list[tuple[int, dict[str, Any]]] = list(enumerate(_JWS["cases"])) if _JWS else [(-1, {})]
_IDS = [f"case{i:02d}" for i, _ in _CASES]
_VALID = [(i, c) for i, c in _CASES if c.get("validBySdk")] or [(-1, {})]


def _vectors() -> dict[str, Any]:
    """The JWS vectors; a missing file fails the test (never a skip: they are the spec)."""
    if _JWS is None:
        pytest.fail(f"SDK vectors missing: expected {VECTORS} (shared/ beside the project root)")
    return _JWS


def test_vectors_have_valid_and_tampered_cases() -> None:
    vectors = _vectors()
    verdicts = [c["validBySdk"] for c in vectors["cases"]]
    assert len(verdicts) == 18
    assert verdicts.count(True) == 6


@pytest.mark.parametrize("mode", ["raw", "sdk"])
@pytest.mark.parametrize(("index", "case"), _CASES, ids=_IDS)
def test_vector_verdict_matches_sdk(index: int, case: dict[str, Any], mode: Any) -> None:
    vectors = _vectors()

    def run() -> None:
        verify(
            method=case["method"],
            path=case["path"],
            headers=case["headers"],
            body=case["bodyText"].encode("utf-8"),
            public_key_pem=vectors["publicKeyPem"],
            body_mode=mode,
        )

    if case["validBySdk"]:
        run()
        return
    with pytest.raises(JwsError) as caught:
        run()
    note = case.get("note", "")
    if "body changed" in note:
        assert caught.value.reason == "signature does not match"
    elif "FSPIOP-URI header" in note:
        assert caught.value.reason.startswith("FSPIOP-URI in protected header '")
        assert "differs from the FSPIOP-URI header" in caught.value.reason
    else:
        pytest.fail(f"case {index}: no expectation for note {note!r}")


@pytest.mark.parametrize(("index", "case"), _VALID, ids=[f"case{i:02d}" for i, _ in _VALID])
def test_sign_reproduces_the_sdk_header_byte_for_byte(index: int, case: dict[str, Any]) -> None:
    vectors = _vectors()
    headers = {k: v for k, v in case["headers"].items() if k != "fspiop-signature"}
    value = sign(
        method=case["method"],
        uri=case["path"],
        headers=headers,
        body=case["bodyText"].encode("utf-8"),
        private_key_pem=vectors["privateKeyPem"],
    )
    assert value == case["headers"]["fspiop-signature"], f"case {index}"


def test_canonical_body_matches_the_vector_bodies() -> None:
    vectors = _vectors()
    for case in vectors["cases"]:
        assert canonical_body(json.loads(case["bodyText"])) == case["bodyText"].encode("utf-8")


def test_canonical_body_is_compact_sorted_utf8() -> None:
    body = {"b": {"z": 1, "a": [True, None]}, "a": "né 中文 😀", "c": 2.0, "d": 0.25}
    expected = '{"a":"né 中文 😀","b":{"a":[true,null],"z":1},"c":2,"d":0.25}'.encode()
    assert canonical_body(body) == expected


@pytest.mark.parametrize("number", [1e-05, 1.5e300, float("nan"), float("inf"), 2**60])
def test_canonical_body_refuses_numbers_javascript_would_print_differently(number: Any) -> None:
    with pytest.raises(ValueError, match="JavaScript"):
        canonical_body({"n": number})


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("/transfers/01J", "/transfers/01J"),
        ("https://switch:4000/fspiop/transfers/01J/error", "/transfers/01J/error"),
        ("http://h/parties/MSISDN/123/456", "/parties/MSISDN/123/456"),
        ("/participants/MSISDN/1?currency=USD", "/participants/MSISDN/1?currency=USD"),
        ("/fxQuotes", "/fxQuotes"),
        ("/health", "/health"),
    ],
)
def test_fspiop_uri_cuts_like_the_sdk(uri: str, expected: str) -> None:
    assert fspiop_uri(uri) == expected


@pytest.mark.parametrize(
    ("method", "path", "put_parties", "expected"),
    [
        ("GET", "/transfers/01J", False, False),
        ("get", "/parties/MSISDN/1", True, False),
        ("PUT", "/parties/MSISDN/1", False, False),
        ("PUT", "/parties/MSISDN/1/error", False, False),
        ("PUT", "/fspiop/parties/MSISDN/1", False, False),
        ("PUT", "/parties/MSISDN/1", True, True),
        ("PUT", "/transfers/01J", False, True),
        ("POST", "/quotes", False, True),
        ("PATCH", "/transfers/01J", False, True),
        ("PUT", "/participants/MSISDN/1", False, True),
    ],
)
def test_signature_required(method: str, path: str, put_parties: bool, expected: bool) -> None:
    assert signature_required(method, path, put_parties=put_parties) is expected


# --- our own keys -----------------------------------------------------------------------------

PATH = "/transfers/01JWEKQ53HY99APMNE4455BJ20"
BODY = canonical_body({"completedTimestamp": "2030-01-01T00:00:00.000Z", "transferState": "X"})
BASE = {
    "FSPIOP-Source": "payerfsp",
    "FSPIOP-Destination": "payeefsp",
    "Date": "Fri, 21 Nov 2026 08:00:00 GMT",
    "Content-Type": "application/vnd.interoperability.transfers+json;version=1.1",
}


@dataclass(frozen=True)
class Req:
    method: str
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def with_header(self, name: str, value: str | None) -> Req:
        headers = {k: v for k, v in self.headers.items() if k.lower() != name.lower()}
        if value is not None:
            headers[name] = value
        return replace(self, headers=headers)


def _pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _new_key(alg: str) -> PrivateKey:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _signed(key: PrivateKey, *, body: bytes = BODY, base: dict[str, str] | None = None) -> Req:
    headers = dict(BASE if base is None else base)
    headers["FSPIOP-URI"] = PATH
    headers["FSPIOP-HTTP-Method"] = "PUT"
    headers["FSPIOP-Signature"] = sign(
        method="put", uri=PATH, headers=headers, body=body, private_key_pem=key
    )
    return Req("PUT", PATH, body, headers)


def _check(req: Req, key: PrivateKey, mode: Any = "raw") -> None:
    verify(
        method=req.method,
        path=req.path,
        headers=req.headers,
        body=req.body,
        public_key_pem=_pem(key),
        body_mode=mode,
    )


@pytest.fixture(scope="module", params=["RS256", "ES256"])
def alg_key(request: pytest.FixtureRequest) -> tuple[str, PrivateKey]:
    alg: str = request.param
    return alg, _new_key(alg)


@pytest.fixture(scope="module")
def rsa_key() -> PrivateKey:
    return _new_key("RS256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_round_trip(alg_key: tuple[str, PrivateKey]) -> None:
    alg, key = alg_key
    req = _signed(key)
    _check(req, key, "raw")
    _check(req, key, "sdk")
    value = json.loads(req.headers["FSPIOP-Signature"])
    assert list(value) == ["protectedHeader", "signature"]
    assert json.loads(_unb64(value["protectedHeader"])) == {
        "alg": alg,
        "FSPIOP-URI": PATH,
        "FSPIOP-HTTP-Method": "PUT",
        "FSPIOP-Source": "payerfsp",
        "FSPIOP-Destination": "payeefsp",
        "Date": "Fri, 21 Nov 2026 08:00:00 GMT",
    }
    assert len(_unb64(value["signature"])) == (256 if alg == "RS256" else 64)  # JOSE r || s


def test_round_trip_without_destination(rsa_key: PrivateKey) -> None:
    base = {k: v for k, v in BASE.items() if k != "FSPIOP-Destination"}
    req = _signed(rsa_key, base=base)
    _check(req, rsa_key)
    with pytest.raises(JwsError, match="FSPIOP-Destination header 'payeefsp' is not in the prot"):
        _check(req.with_header("fspiop-destination", "payeefsp"), rsa_key)


def test_header_names_are_case_insensitive(rsa_key: PrivateKey) -> None:
    req = _signed(rsa_key)
    upper = replace(req, headers={k.upper(): v for k, v in req.headers.items()})
    _check(upper, rsa_key)
    twice = replace(req, headers={**req.headers, "fspiop-source": "evilfsp"})
    with pytest.raises(JwsError, match="given twice with different values"):
        _check(twice, rsa_key)


TAMPERS: list[tuple[str, Callable[[Req], Req], str]] = [
    ("body", lambda r: replace(r, body=r.body.replace(b'"X"', b'"Y"')), "signature does not match"),
    (
        "source",
        lambda r: r.with_header("FSPIOP-Source", "evilfsp"),
        "FSPIOP-Source in protected header 'payerfsp' differs from the FSPIOP-Source header "
        "'evilfsp'",
    ),
    (
        "destination",
        lambda r: r.with_header("FSPIOP-Destination", "otherfsp"),
        "FSPIOP-Destination in protected header 'payeefsp' differs from the FSPIOP-Destination "
        "header 'otherfsp'",
    ),
    (
        "destination-dropped",
        lambda r: r.with_header("FSPIOP-Destination", None),
        "missing FSPIOP-Destination header (the protected header has 'payeefsp')",
    ),
    (
        "date",
        lambda r: r.with_header("Date", "Sat, 22 Nov 2026 08:00:00 GMT"),
        "Date in protected header 'Fri, 21 Nov 2026 08:00:00 GMT' differs from the Date header "
        "'Sat, 22 Nov 2026 08:00:00 GMT'",
    ),
    (
        "uri-header",
        lambda r: r.with_header("FSPIOP-URI", "/transfers/B"),
        f"FSPIOP-URI in protected header '{PATH}' differs from the FSPIOP-URI header "
        "'/transfers/B'",
    ),
    (
        "path",
        lambda r: replace(r, path="/transfers/B"),
        f"FSPIOP-URI in protected header '{PATH}' differs from the request path '/transfers/B'",
    ),
    (
        "method-header",
        lambda r: r.with_header("FSPIOP-HTTP-Method", "POST"),
        "FSPIOP-HTTP-Method in protected header 'PUT' differs from the FSPIOP-HTTP-Method header "
        "'POST'",
    ),
    (
        "method",
        lambda r: replace(r, method="POST"),
        "FSPIOP-HTTP-Method in protected header 'PUT' differs from the request method 'POST'",
    ),
    (
        "signature-dropped",
        lambda r: r.with_header("FSPIOP-Signature", None),
        "missing FSPIOP-Signature header",
    ),
    ("empty-body", lambda r: replace(r, body=b""), "request has no body"),
]


@pytest.mark.parametrize(("what", "tamper", "reason"), TAMPERS, ids=[t[0] for t in TAMPERS])
def test_tampering_is_detected_with_the_right_reason(
    alg_key: tuple[str, PrivateKey], what: str, tamper: Callable[[Req], Req], reason: str
) -> None:
    _, key = alg_key
    with pytest.raises(JwsError) as caught:
        _check(tamper(_signed(key)), key)
    assert caught.value.reason.startswith(reason), what
    assert isinstance(caught.value, ValueError)


def test_signature_of_another_key_does_not_match(alg_key: tuple[str, PrivateKey]) -> None:
    alg, key = alg_key
    with pytest.raises(JwsError, match=r"^signature does not match$"):
        _check(_signed(_new_key(alg)), key)


def _forge(protected: dict[str, Any], key: rsa.RSAPrivateKey, body: bytes = BODY) -> Req:
    """A request whose protected header we choose freely, RS256-signed over it and the body."""
    header_b64 = _b64(json.dumps(protected).encode())
    data = f"{header_b64}.{_b64(body)}".encode()
    signature = _b64(key.sign(data, padding.PKCS1v15(), hashes.SHA256()))
    value = json.dumps({"protectedHeader": header_b64, "signature": signature})
    headers = {**BASE, "FSPIOP-URI": PATH, "FSPIOP-HTTP-Method": "PUT", "FSPIOP-Signature": value}
    return Req("PUT", PATH, body, headers)


GOOD = {
    "alg": "RS256",
    "FSPIOP-URI": PATH,
    "FSPIOP-HTTP-Method": "PUT",
    "FSPIOP-Source": "payerfsp",
    "FSPIOP-Destination": "payeefsp",
    "Date": "Fri, 21 Nov 2026 08:00:00 GMT",
}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"alg": "HS256"}, "alg HS256 not allowed: only RS256 and ES256"),
        ({"alg": "none"}, "alg none not allowed: only RS256 and ES256"),
        ({"alg": "PS256"}, "alg PS256 not allowed: only RS256 and ES256"),
        ({"alg": None}, "protected header lacks alg"),
        ({"FSPIOP-Source": None}, "protected header lacks FSPIOP-Source"),
        ({"FSPIOP-URI": None}, "protected header lacks FSPIOP-URI"),
        ({"FSPIOP-HTTP-Method": ""}, "protected header lacks FSPIOP-HTTP-Method"),
        ({"FSPIOP-URI": 7}, "FSPIOP-URI in protected header is not a string: 7"),
        ({"alg": "ES256"}, "alg ES256 does not fit the sender's"),
    ],
)
def test_bad_protected_headers(
    rsa_key: rsa.RSAPrivateKey, changes: dict[str, Any], reason: str
) -> None:
    protected = {k: v for k, v in {**GOOD, **changes}.items() if v is not None}
    with pytest.raises(JwsError) as caught:
        _check(_forge(protected, rsa_key), rsa_key)
    assert caught.value.reason.startswith(reason)


def test_protected_header_without_date_passes_like_the_sdk(rsa_key: rsa.RSAPrivateKey) -> None:
    _check(_forge({k: v for k, v in GOOD.items() if k != "Date"}, rsa_key), rsa_key)


def test_es256_signature_must_be_jose_not_der() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    req = _signed(key)
    value = json.loads(req.headers["FSPIOP-Signature"])
    data = f"{value['protectedHeader']}.{_b64(BODY)}".encode()
    value["signature"] = _b64(key.sign(data, ec.ECDSA(hashes.SHA256())))  # DER
    with pytest.raises(JwsError, match="ES256 signature must be 64 bytes"):
        _check(req.with_header("FSPIOP-Signature", json.dumps(value)), key)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("not json", "FSPIOP-Signature header is not JSON"),
        ("[]", "FSPIOP-Signature header is not a JSON object"),
        ('{"protectedHeader": "eyJ9"}', "FSPIOP-Signature header lacks signature"),
        ('{"signature": "abc"}', "FSPIOP-Signature header lacks protectedHeader"),
        ('{"protectedHeader": "e30=", "signature": "abc"}', "protectedHeader is not unpadded"),
        ('{"protectedHeader": "bm9wZQ", "signature": "abc"}', "protected header is not JSON"),
        ('{"protectedHeader": "W10", "signature": "abc"}', "protected header is not a JSON obj"),
    ],
)
def test_malformed_signature_header(rsa_key: PrivateKey, value: str, reason: str) -> None:
    with pytest.raises(JwsError) as caught:
        _check(_signed(rsa_key).with_header("FSPIOP-Signature", value), rsa_key)
    assert caught.value.reason.startswith(reason)


def test_sign_refuses_what_the_sdk_cannot_verify(rsa_key: PrivateKey) -> None:
    kwargs: dict[str, Any] = {"method": "PUT", "uri": PATH, "private_key_pem": rsa_key}
    with pytest.raises(ValueError, match="empty body"):
        sign(headers=BASE, body=b"", **kwargs)
    with pytest.raises(ValueError, match="without a fspiop-source header"):
        sign(headers={"Date": BASE["Date"]}, body=BODY, **kwargs)
    with pytest.raises(ValueError, match="alg HS256 not allowed"):
        sign(headers=BASE, body=BODY, alg="HS256", **kwargs)
    with pytest.raises(ValueError, match="alg ES256 does not fit"):
        sign(headers=BASE, body=BODY, alg="ES256", **kwargs)


def test_body_modes_differ_only_on_non_canonical_bodies(rsa_key: PrivateKey) -> None:
    # Verdicts of the real 19.19.1 validator on these two requests: unsorted -> invalid (it
    # re-serialises with sorted keys), pretty -> valid (it never sees the raw bytes).
    unsorted = b'{"transferState":"X","completedTimestamp":"2030-01-01T00:00:00.000Z"}'
    req = _signed(rsa_key, body=unsorted)
    _check(req, rsa_key, "raw")
    with pytest.raises(JwsError, match="signature does not match"):
        _check(req, rsa_key, "sdk")
    pretty = json.dumps(json.loads(BODY), indent=2, sort_keys=True).encode()
    req = replace(_signed(rsa_key), body=pretty)
    _check(req, rsa_key, "sdk")
    with pytest.raises(JwsError, match="signature does not match"):
        _check(req, rsa_key, "raw")
    with pytest.raises(JwsError, match="cannot re-serialise the body"):
        _check(replace(req, body=b"{not json"), rsa_key, "sdk")


# --- PeerKeys ---------------------------------------------------------------------------------


def _verify_with(keys: PeerKeys, req: Req) -> None:
    verify_request(method=req.method, path=req.path, headers=req.headers, body=req.body, keys=keys)


@pytest.mark.parametrize("how", ["in-place", "rename"])
def test_peer_keys_follow_rotation_without_restart(tmp_path: Path, how: str) -> None:
    old, new = _new_key("RS256"), _new_key("ES256")
    key_file = tmp_path / "payerfsp.pem"
    key_file.write_bytes(_pem(old))
    keys = PeerKeys(tmp_path)
    old_request = _signed(old)
    _verify_with(keys, old_request)

    if how == "in-place":
        key_file.write_bytes(_pem(new))
    else:
        staged = tmp_path / "payerfsp.pem.tmp"
        staged.write_bytes(_pem(new))
        os.replace(staged, key_file)
    stat = key_file.stat()  # push mtime forward so coarse timestamps cannot hide the change
    os.utime(key_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))

    _verify_with(keys, _signed(new))
    with pytest.raises(JwsError, match="alg RS256 does not fit"):
        _verify_with(keys, old_request)
    key_file.write_bytes(_pem(_new_key("RS256")))  # same alg, different key: plain mismatch
    os.utime(key_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000_000))
    with pytest.raises(JwsError, match=r"^signature does not match$"):
        _verify_with(keys, old_request)


def test_unknown_and_removed_peers(tmp_path: Path) -> None:
    key = _new_key("RS256")
    (tmp_path / "payerfsp.pem").write_bytes(_pem(key))
    (tmp_path / "greenbankfsp.pem").write_bytes(_pem(_new_key("ES256")))
    keys = PeerKeys(tmp_path)
    assert keys.known() == ["greenbankfsp", "payerfsp"]
    with pytest.raises(UnknownPeer) as caught:
        keys.get("nobody")
    assert isinstance(caught.value, KeyError)
    assert str(caught.value) == (
        f"no JWS public key for 'nobody': {tmp_path / 'nobody.pem'} does not exist "
        "(have keys for: greenbankfsp, payerfsp)"
    )
    with pytest.raises(UnknownPeer, match="not a valid fspId"):
        keys.get("../payerfsp")

    req = _signed(key)
    _verify_with(keys, req)
    (tmp_path / "payerfsp.pem").unlink()
    with pytest.raises(JwsError, match="no JWS public key for 'payerfsp'"):
        _verify_with(keys, req)
    with pytest.raises(JwsError, match="missing FSPIOP-Source header"):
        _verify_with(keys, req.with_header("FSPIOP-Source", None))


def test_broken_key_file_is_a_config_error_not_a_bad_signature(tmp_path: Path) -> None:
    (tmp_path / "payerfsp.pem").write_text("-----BEGIN PUBLIC KEY-----\nnope\n")
    with pytest.raises(ValueError, match=r"payerfsp\.pem: not a usable PEM") as caught:
        PeerKeys(tmp_path).get("payerfsp")
    assert not isinstance(caught.value, JwsError)


def test_peer_keys_are_thread_safe_during_rotation(tmp_path: Path) -> None:
    pems = [_pem(_new_key("ES256")) for _ in range(2)]
    numbers = {
        serialization.load_pem_public_key(p).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        for p in pems
    }
    key_file = tmp_path / "payerfsp.pem"
    key_file.write_bytes(pems[0])
    keys = PeerKeys(tmp_path)
    errors: list[BaseException] = []
    seen: set[bytes] = set()

    def reader() -> None:
        try:
            for _ in range(300):
                got = keys.get("payerfsp").public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                seen.add(got)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(6)]
    for thread in threads:
        thread.start()
    for i in range(40):  # atomic replacements, as a secret mount or a careful operator does
        staged = tmp_path / "staged"
        staged.write_bytes(pems[i % 2])
        os.replace(staged, key_file)
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert seen <= numbers
