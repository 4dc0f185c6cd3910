"""ILP v1/v4 against the real Mojaloop SDK's output, and every way a packet or amount is wrong."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from phee.fspiop.ilp import (
    CURRENCY_EXPONENTS,
    V4_ADDRESS,
    IlpError,
    IlpResponse,
    condition_for,
    decode,
    fulfilment_for_packet,
    fulfilment_matches,
    minor_units,
    v1_response,
    v4_response,
)

VECTORS = (
    Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "mojaloop-sdk-19.19.1.json"
)


def _load_cases() -> list[Any]:
    """One param per vector; a missing file yields one param whose tests fail (never skip)."""
    if not VECTORS.is_file():
        return [pytest.param(None, id="vectors-missing")]
    cases = json.loads(VECTORS.read_text(encoding="utf-8"))["ilp"]
    return [
        pytest.param(case, id=f"{i}-{case['transactionObject']['transactionId'][:8]}")
        for i, case in enumerate(cases)
    ]


CASES = _load_cases()


def _case(case: dict[str, Any] | None) -> dict[str, Any]:
    assert case is not None, f"SDK vector file missing: {VECTORS} (expected beside the repo)"
    return case


def _expected(case: dict[str, Any], version: str) -> IlpResponse:
    e = case[version]
    return IlpResponse(packet=e["ilpPacket"], condition=e["condition"], fulfilment=e["fulfilment"])


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _raw(packet: str) -> bytes:
    return base64.urlsafe_b64decode(packet + "=" * (-len(packet) % 4))


def _octets(data: bytes) -> bytes:
    """Independent OER var-octet encoder, for crafting packets by hand."""
    if len(data) < 128:
        return bytes([len(data)]) + data
    size = len(data).to_bytes(2, "big")
    return b"\x82" + size + data


def _v1_packet(data: bytes, address: bytes = b"g.x.msisdn.1", tail: bytes = b"\x00") -> str:
    body = (100).to_bytes(8, "big") + _octets(address) + _octets(data) + tail
    return _b64url(b"\x01" + _octets(body))


def test_vector_file_is_present_and_complete() -> None:
    assert VECTORS.is_file(), f"SDK vector file missing: {VECTORS}"
    cases = json.loads(VECTORS.read_text(encoding="utf-8"))["ilp"]
    assert len(cases) >= 12
    for case in cases:
        assert {"transactionObject", "secret", "v1", "v4"} <= case.keys()


@pytest.mark.parametrize("case", CASES)
def test_v1_matches_sdk(case: dict[str, Any] | None) -> None:
    c = _case(case)
    assert v1_response(c["transactionObject"], c["secret"]) == _expected(c, "v1")


@pytest.mark.parametrize("case", CASES)
def test_v4_matches_sdk(case: dict[str, Any] | None) -> None:
    c = _case(case)
    assert v4_response(c["transactionObject"], c["secret"]) == _expected(c, "v4")


@pytest.mark.parametrize("case", CASES)
def test_decode_round_trip(case: dict[str, Any] | None) -> None:
    c = _case(case)
    tx = c["transactionObject"]
    units = minor_units(tx["amount"]["amount"], tx["amount"]["currency"])
    v1 = decode(c["v1"]["ilpPacket"])
    assert (v1.version, v1.amount, v1.transaction) == (1, units, tx)
    assert v1.address.startswith(f"g.{tx['payee']['partyIdInfo']['fspId']}.")
    assert v1.expires_at is None
    assert v1.condition is None
    v4 = decode(c["v4"]["ilpPacket"])
    assert (v4.version, v4.amount, v4.address, v4.transaction) == (4, units, V4_ADDRESS, tx)
    assert v4.condition == c["v4"]["condition"]
    expected_expiry = datetime.fromisoformat(tx["expiration"]).astimezone(UTC)
    assert v4.expires_at == expected_expiry
    assert v1.transaction_json == v4.transaction_json


@pytest.mark.parametrize("case", CASES)
def test_any_engine_regenerates_fulfilment_from_packet(case: dict[str, Any] | None) -> None:
    c = _case(case)
    for version in ("v1", "v4"):
        expected = _expected(c, version)
        assert fulfilment_for_packet(expected.packet, c["secret"]) == expected.fulfilment
        assert fulfilment_for_packet(expected.packet, c["secret"] + "x") != expected.fulfilment


@pytest.mark.parametrize("case", CASES)
def test_condition_and_fulfilment_match(case: dict[str, Any] | None) -> None:
    c = _case(case)
    for version in ("v1", "v4"):
        expected = _expected(c, version)
        assert condition_for(expected.fulfilment) == expected.condition
        assert fulfilment_matches(expected.fulfilment, expected.condition)
    assert not fulfilment_matches(c["v1"]["fulfilment"], c["v4"]["condition"])


@pytest.mark.parametrize("case", CASES)
def test_key_order_of_input_does_not_matter(case: dict[str, Any] | None) -> None:
    c = _case(case)

    def reverse(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: reverse(value[k]) for k in reversed(list(value))}
        return value

    tx = reverse(c["transactionObject"])
    assert v1_response(tx, c["secret"]) == _expected(c, "v1")
    assert v4_response(tx, c["secret"]) == _expected(c, "v4")


# Produced by the real sdk-standard-components 19.19.1 code (secret "s"), from the first vector's
# transaction object with one field changed: (change, fulfilment, condition, sha256(packet)).
_BASE_TX = {
    "quoteId": "fa8de1f3-3f06-41ae-ab19-73e1c20bbddd",
    "transactionId": "052a64c5-d837-464d-85b9-6931987471c3",
    "transactionType": {"scenario": "DEPOSIT", "initiator": "PAYER", "initiatorType": "BUSINESS"},
    "payee": {
        "partyIdInfo": {
            "partyIdType": "PERSONAL_ID",
            "partyIdentifier": "93221092267",
            "fspId": "greenbankfsp",
            "partySubIdOrType": "SUB28",
        },
        "name": "Justin Pierre",
    },
    "payer": {
        "partyIdInfo": {
            "partyIdType": "IBAN",
            "partyIdentifier": "39351654071",
            "fspId": "testingtoolkitdfsp",
        }
    },
    "expiration": "2030-06-16T10:10:10.308Z",
    "amount": {"amount": "100", "currency": "JPY"},
}
_SDK_EXTRA = [
    pytest.param(
        {"note": ">>>???~~~\u00ff\u00ff"},  # its base64 holds + and /: proves standard alphabet
        (
            "R4omJRTPhjDbNhCzk8B8H0iFsN1AVg6UIj02cySihxY",
            "qBuRgmSE_RT8tm2rGWMajZaaPz0RoLK4OfT_VN7UjX4",
            "2ab994afb654e37bdaef482f6a10fa38b22c21d1892e82b35109280927762114",
        ),
        (
            "eHPJal2fyBQfMJh7M_ytPayu4OMKe4p3wkhj_v2C_J0",
            "tNdsskXCSmgMCA8hb_O4ymbjfXM29P3UZyETpgNxqX8",
            "b890ff57cf55a3fd5242296f4c4163f7c99fa88f274001df911c63800a8bcacb",
        ),
        id="base64-alphabet",
    ),
    pytest.param(
        {"expiration": "2030-06-16T12:10:10.308+02:00"},
        (
            "C8W5oj1lBdfURr_WvyTokASBVs6P9PiUA6w9u4FoH4g",
            "xcpBlcRw-d_mwvmAqp_NuLqA0Asskv1rwNoCatmnYB8",
            "cd26fbb6ea889677a92a2b469434f4cdc70825b0c037ebd40d76c425db40286e",
        ),
        (
            "d0ieTz_HMQmH88wIphz5AS8NU4PLA9GHPBGr-9Bv14g",
            "sZxwl5ecLNl3xMOJjN2QarfPnxiaEr9LQ5O4sL1XpdM",
            "190dd6b48124ad36804e185ab034883ffbd284af76a1ea8c0f63aa9437d972fc",
        ),
        id="utc-offset-expiry",
    ),
    pytest.param(
        {"amount": {"amount": "1.2345", "currency": "CLF"}},
        (
            "RZb2TlxVGs7UpnRmH7hq97wzVvZghpYdIDIs9w9RIFQ",
            "av5GFl_oFye6-YR8tdTXch86w5F1DDJDKkts4vzUiqA",
            "cae03a18f39b9be7aba27e9b146f83d28f286a9cdd144f01fb55665fbe6049e1",
        ),
        (
            "Lv_JZNudvQmn0LgBKjHWzK7almfXa9mtgXL27wj9m6c",
            "crNNMjWHd0-L4q4-73FDQzBsyxaZF8YwsolzfrghspI",
            "f05f5f6405c58207ba6ed19ffe12cb272734eecab42b76c9cbd15c91cb7bc377",
        ),
        id="four-decimals",
    ),
    pytest.param(
        {"note": 'tab\there "q" \\ \x01 \u2028 \U0001f600'},
        (
            "IYb29Qy4dt5V4NfyaMXPZPt4uWzmnRT3RMzCx3eukjI",
            "rtiH6frGdlID5oz2Z8-A0f-A79FY0AAOMCA6XEjdvI0",
            "cc4a237585bb79f772e959506eb023d4cfb8312eaa0ba6bbdd7c3de60c8b767a",
        ),
        (
            "iIXmzSrkxkRGCvCqgpDHbcPi7KY0tAdU78ZiMyLhH-w",
            "2jcTspFUdnMe-8_2sscAcZcNWwkM-vSsKa1oPsCS-8I",
            "9cb16c4aa328dc3be066a9efe9c80e60ee2d55c91363c488341db8002736c9a9",
        ),
        id="json-escapes",
    ),
]


@pytest.mark.parametrize(("change", "v1", "v4"), _SDK_EXTRA)
def test_extra_sdk_cases(
    change: dict[str, Any], v1: tuple[str, str, str], v4: tuple[str, str, str]
) -> None:
    tx = {**_BASE_TX, **change}
    for response, (fulfilment, condition, packet_sha) in (
        (v1_response(tx, "s"), v1),
        (v4_response(tx, "s"), v4),
    ):
        assert (response.fulfilment, response.condition) == (fulfilment, condition)
        assert hashlib.sha256(response.packet.encode()).hexdigest() == packet_sha


def test_v4_expiry_in_packet_is_utc_milliseconds() -> None:
    tx = {**_BASE_TX, "expiration": "2030-06-16T12:10:10.308+02:00"}
    assert _raw(v4_response(tx, "s").packet)[12:29] == b"20300616101010308"


# --- tampering and malformed packets ---------------------------------------------------------


def test_tampered_v1_packet_gets_another_fulfilment() -> None:
    good = v1_response(_BASE_TX, "s")
    raw = bytearray(_raw(good.packet))
    raw[11] ^= 0x01  # last byte of the amount
    tampered = _b64url(bytes(raw))
    assert decode(tampered).amount == 101
    forged = fulfilment_for_packet(tampered, "s")
    assert not fulfilment_matches(forged, good.condition)


def test_tampered_v4_data_no_longer_matches_embedded_condition() -> None:
    other = v4_response({**_BASE_TX, "note": "x"}, "s")
    good = v4_response(_BASE_TX, "s")
    raw_good, raw_other = _raw(good.packet), _raw(other.packet)
    header = 4 + 8 + 17  # type, envelope length, amount, expiry
    spliced = raw_other[:header] + raw_good[header : header + 32] + raw_other[header + 32 :]
    decoded = decode(_b64url(spliced))
    assert decoded.condition == good.condition
    assert condition_for(fulfilment_for_packet(_b64url(spliced), "s")) != decoded.condition


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        ("", "not base64url"),
        ("AY+DDQ", "not base64url"),
        ("AY!DDQ", "not base64url"),
        ("AYIDD", "length or padding"),
        ("AQ=", "length or padding"),
        ("BQA", "unknown ILP packet type 5"),
        ("AQ", "truncated in packet envelope length"),
        ("AYIDDQAAAA", "truncated in"),
        (_b64url(b"\x01\x81\x05" + b"\x00" * 5), "non-canonical OER length"),
        (_b64url(_raw(_v1_packet(b"eyJhIjoxfQ")) + b"\x00"), "trailing byte"),
        (_v1_packet(b"eyJhIjoxfQ", tail=b"\x01"), "extensions"),
        (_v1_packet(b"eyJhIjoxfQ", tail=b"\x00\x00"), "trailing byte"),
        (_v1_packet(b"eyJhIjoxfQ", tail=b""), "truncated in v1 extensions"),
        (_v1_packet(b"bm90IGpzb24"), "not UTF-8 JSON"),  # "not json"
        (_v1_packet(b"WzFd"), "not an object"),  # [1]
        (_v1_packet(b"ey+h"), "packet data is not base64url"),
        (_v1_packet(b"eyJhIjoxfQ", address=b"g.\xff"), "not ASCII"),
        (_b64url(b"\x0c" + _octets((1).to_bytes(8, "big") + b"2030xx16101010308")), "v4 expiry"),
    ],
)
def test_malformed_packets_are_rejected(packet: str, message: str) -> None:
    with pytest.raises(IlpError, match=message):
        decode(packet)


def test_handmade_packet_decodes_and_padding_is_accepted() -> None:
    packet = _v1_packet(b"eyJhIjoxfQ")  # {"a":1}
    padded = packet + "=" * (-len(packet) % 4)
    for text in (packet, padded):
        decoded = decode(text)
        assert (decoded.amount, decoded.address, decoded.transaction) == (
            100,
            "g.x.msisdn.1",
            {"a": 1},
        )


@pytest.mark.parametrize(
    ("fulfilment", "condition"),
    [
        ("short", "x"),
        (
            "lXJUG-LQC3WGzkYfxFOjRKLTHfBh6ezrdKzzWYm_2G",
            "lSQWw0AOgkKS7vFTGbyfmqwi15yhYwJrIFPsyr8GU9s",
        ),
        (
            "lXJUG-LQC3WGzkYfxFOjRKLTHfBh6ezrdKzzWYm_2Gs",
            "lSQWw0AOgkKS7vFTGbyfmqwi15yhYwJrIFPsyr8GU9t",
        ),
        ("lXJUG-LQC3WGzkYfxFOjRKLTHfBh6ezrdKzzWYm_2Gs", "é"),
        (
            "lXJUG+LQC3WGzkYfxFOjRKLTHfBh6ezrdKzzWYm/2Gs",
            "lSQWw0AOgkKS7vFTGbyfmqwi15yhYwJrIFPsyr8GU9s",
        ),
    ],
)
def test_wrong_fulfilments_do_not_match(fulfilment: str, condition: str) -> None:
    assert not fulfilment_matches(fulfilment, condition)


def test_condition_for_needs_32_bytes() -> None:
    with pytest.raises(IlpError, match="32 bytes"):
        condition_for(_b64url(b"\x00" * 31))


# --- amounts and currencies ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [("USD", 2), ("EUR", 2), ("XOF", 0), ("JPY", 0), ("KES", 2), ("TZS", 2), ("ZMW", 2),
     ("BHD", 3), ("KWD", 3), ("CLF", 4), ("UGX", 0), ("RWF", 0)],
)  # fmt: skip
def test_currency_exponents(currency: str, exponent: int) -> None:
    assert CURRENCY_EXPONENTS[currency] == exponent


@pytest.mark.parametrize(
    ("amount", "currency", "units"),
    [("0", "USD", 0), ("7.25", "ZMW", 725), ("7.25", "BHD", 7250), ("0.01", "TZS", 1),
     ("100", "XOF", 100), ("123456789012345678", "USD", 12345678901234567800)],
)  # fmt: skip
def test_minor_units(amount: str, currency: str, units: int) -> None:
    assert minor_units(amount, currency) == units


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        ("1", "ABC", "no minor-unit data for currency 'ABC'"),
        ("1", "usd", "no minor-unit data"),
        ("1", None, "no minor-unit data"),
        ("1.005", "USD", "more than 2 decimal"),
        ("1.5", "JPY", "more than 0 decimal"),
        ("0.0001", "BHD", "more than 3 decimal"),
        ("1.50", "USD", "Amount pattern"),
        ("01", "USD", "Amount pattern"),
        ("1.", "USD", "Amount pattern"),
        ("-1", "USD", "Amount pattern"),
        ("1e3", "USD", "Amount pattern"),
        (" 1", "USD", "Amount pattern"),
        ("1.00001", "CLF", "Amount pattern"),
        (100, "USD", "Amount pattern"),
        ("999999999999999999.9999", "CLF", "64-bit"),
    ],
)
def test_bad_amounts_are_rejected_in_both_versions(
    amount: object, currency: object, message: str
) -> None:
    with pytest.raises(IlpError, match=message):
        minor_units(amount, currency)
    tx = {**_BASE_TX, "amount": {"amount": amount, "currency": currency}}
    for build in (v1_response, v4_response):
        with pytest.raises(IlpError, match=message):
            build(tx, "s")


# --- transaction objects and secrets ---------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"expiration": "2030-06-16T10:10:10.308"}, "UTC offset"),
        ({"expiration": "tomorrow"}, "UTC offset"),
        ({"expiration": "2030-02-30T10:10:10.308Z"}, "not a valid date-time"),
        ({"expiration": None}, "UTC offset"),
        ({"amount": None}, "lacks amount.amount"),
    ],
)
def test_v4_needs_expiration_and_amount(change: dict[str, Any], message: str) -> None:
    with pytest.raises(IlpError, match=message):
        v4_response({**_BASE_TX, **change}, "s")


def test_v1_does_not_need_expiration() -> None:
    tx = {k: v for k, v in _BASE_TX.items() if k != "expiration"}
    assert decode(v1_response(tx, "s").packet).transaction == tx
    with pytest.raises(IlpError, match="lacks expiration"):
        v4_response(tx, "s")


@pytest.mark.parametrize(
    ("info", "message"),
    [
        ({"partyIdType": "MSISDN", "partyIdentifier": "1"}, "fspId"),
        ({"fspId": "b", "partyIdentifier": "1"}, "partyIdType"),
        ({"fspId": "b", "partyIdType": "MSISDN", "partyIdentifier": ""}, "partyIdentifier"),
        (
            {"fspId": "b", "partyIdType": "MSISDN", "partyIdentifier": "1", "partySubIdOrType": 3},
            "SubId",
        ),
        ({"fspId": "b", "partyIdType": "MSISDN", "partyIdentifier": "é"}, "not ASCII"),
    ],
)
def test_v1_needs_a_payee_address(info: dict[str, Any], message: str) -> None:
    with pytest.raises(IlpError, match=message):
        v1_response({**_BASE_TX, "payee": {"partyIdInfo": info}}, "s")


def test_v1_address_lowercases_all_but_fsp_and_drops_empty_sub_id() -> None:
    info = {
        "fspId": "BankX",
        "partyIdType": "EMAIL",
        "partyIdentifier": "A@B.io",
        "partySubIdOrType": "",
    }
    packet = v1_response({**_BASE_TX, "payee": {"partyIdInfo": info}}, "s").packet
    assert decode(packet).address == "g.BankX.email.a@b.io"


@pytest.mark.parametrize(
    ("value", "message"),
    [(1.5, "non-JSON-safe"), (2**53, "non-JSON-safe"), ({1: "x"}, "keys must be strings"),
     ("\ud800", "lone surrogate")],
)  # fmt: skip
def test_values_javascript_would_serialise_differently_are_rejected(
    value: object, message: str
) -> None:
    with pytest.raises(IlpError, match=message):
        v4_response({**_BASE_TX, "extra": value}, "s")


def test_secret_must_be_non_empty() -> None:
    with pytest.raises(IlpError, match="secret"):
        v1_response(_BASE_TX, "")


def test_fx_transaction_objects_are_refused_clearly() -> None:
    with pytest.raises(IlpError, match="FX"):
        v1_response({**_BASE_TX, "conversionTerms": {}}, "s")
