"""ILP packets, conditions and fulfilments for FSPIOP, byte for byte as the Mojaloop SDK makes them.

The payee builds the packet from the transaction object and keeps no state: the fulfilment is an
HMAC keyed by the ILP secret, so any engine sharing the secret can regenerate it from the packet
alone (see `fulfilment_for_packet`). Reproduces @mojaloop/sdk-standard-components 19.19.1:
- data = ASCII(base64url, unpadded) of the transaction object as compact JSON, keys sorted at every
  level (the SDK uses safe-stable-stringify), UTF-8, non-ASCII unescaped.
- v1 (IlpPayment, type 1): amount, payee address `g.<fspId>.<type>.<id>[.<subId>]`, data, a 0 byte;
  fulfilment = HMAC-SHA256(ASCII(base64(secret)), ASCII(packet as sent)).
- v4 (IlpPrepare, type 12): amount, expiry, condition, `g.mojaloop`, data;
  fulfilment = HMAC-SHA256(ASCII(base64(secret)), ASCII(padded standard base64(JSON))).
- condition = SHA-256(fulfilment); packet, condition and fulfilment are base64url without padding.
Deliberately stricter than the SDK: v1 amounts with too many decimals are rejected (the SDK
truncates them), as are naive expiry times (the SDK reads them in the server's local time).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final

V4_ADDRESS: Final = "g.mojaloop"
_V1_TYPE: Final = 1
_V4_TYPE: Final = 12
_UINT64_MAX: Final = 2**64 - 1
_JS_SAFE_INT: Final = 2**53 - 1
_AMOUNT = re.compile(r"(0|[1-9][0-9]{0,17})(\.[0-9]{0,3}[1-9])?")
_DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)", re.ASCII)
_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_EXPIRY = re.compile(rb"\d{17}")

_BY_EXPONENT: Final = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    2: (
        "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP "
        "BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR "
        "FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HRK HTG HUF IDR ILS INR IRR JMD KES KGS KHR "
        "KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR "
        "MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK "
        "SGD SHP SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU "
        "UZS VES WST XCD YER ZAR ZMW ZWL"
    ),
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW XTS XXX",  # XTS/XXX have no ISO minor unit; 4 is what the SDK uses
}
CURRENCY_EXPONENTS: Final[Mapping[str, int]] = MappingProxyType(
    {code: exp for exp, codes in _BY_EXPONENT.items() for code in codes.split()}
)
"""ISO 4217 minor units, the set of the SDK's currency.json; an unknown currency is an error."""


class IlpError(ValueError):
    """A transaction object, amount or packet that cannot be turned into (or read as) ILP."""


@dataclass(frozen=True)
class IlpResponse:
    """What the payee puts in the quote response (packet, condition) and keeps back (fulfilment)."""

    packet: str
    condition: str
    fulfilment: str


@dataclass(frozen=True)
class DecodedPacket:
    """A parsed packet; `transaction_json` holds the exact JSON bytes the fulfilment depends on."""

    version: int
    amount: int
    address: str
    transaction: dict[str, Any]
    transaction_json: bytes
    expires_at: datetime | None = None
    condition: str | None = None


def minor_units(amount: object, currency: object) -> int:
    """FSPIOP amount string -> integer count of the currency's minor units (the ILP amount)."""
    if not isinstance(currency, str) or currency not in CURRENCY_EXPONENTS:
        raise IlpError(f"no minor-unit data for currency {currency!r}")
    if not isinstance(amount, str) or not _AMOUNT.fullmatch(amount):
        raise IlpError(f"amount {amount!r} does not match the FSPIOP Amount pattern")
    exponent = CURRENCY_EXPONENTS[currency]
    scaled = Decimal(amount).scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise IlpError(f"amount {amount} {currency} has more than {exponent} decimal(s)")
    if int(scaled) > _UINT64_MAX:
        raise IlpError(f"amount {amount} {currency} does not fit an unsigned 64-bit ILP amount")
    return int(scaled)


def v1_response(transaction: Mapping[str, Any], secret: str) -> IlpResponse:
    """ILP v1 packet (the FSPIOP default) with its fulfilment and condition."""
    amount = _amount_of(transaction)
    address = _payee_address(transaction)
    data = _b64url(_transaction_json(transaction)).encode("ascii")
    body = amount.to_bytes(8, "big") + _var_octets(address) + _var_octets(data) + b"\x00"
    packet = _b64url(bytes([_V1_TYPE]) + _var_octets(body))
    fulfilment = _hmac(secret, packet.encode("ascii"))
    return IlpResponse(packet, _b64url(hashlib.sha256(fulfilment).digest()), _b64url(fulfilment))


def v4_response(transaction: Mapping[str, Any], secret: str) -> IlpResponse:
    """ILP v4 IlpPrepare (ISO 20022 mode): the condition is inside the packet, so it comes first."""
    amount = _amount_of(transaction)
    expiry = _expiry_of(transaction)
    json_bytes = _transaction_json(transaction)
    fulfilment = _hmac(secret, base64.b64encode(json_bytes))
    condition = hashlib.sha256(fulfilment).digest()
    data = _b64url(json_bytes).encode("ascii")
    body = amount.to_bytes(8, "big") + expiry + condition
    body += _var_octets(V4_ADDRESS.encode("ascii")) + _var_octets(data)
    packet = _b64url(bytes([_V4_TYPE]) + _var_octets(body))
    return IlpResponse(packet, _b64url(condition), _b64url(fulfilment))


def decode(packet: str) -> DecodedPacket:
    """Parse a v1 or v4 packet strictly: no trailing bytes, data must be a JSON object."""
    outer = _Reader(_b64url_decode(packet, "ILP packet"))
    kind = outer.take(1, "packet type")[0]
    if kind not in (_V1_TYPE, _V4_TYPE):
        raise IlpError(f"unknown ILP packet type {kind} (expected 1 for v1, 12 for v4)")
    body = _Reader(outer.var_octets("packet envelope"))
    outer.end("packet")
    amount = int.from_bytes(body.take(8, "amount"), "big")
    expires_at = condition = None
    if kind == _V4_TYPE:
        expires_at = _parse_expiry(body.take(17, "expiry"))
        condition = _b64url(body.take(32, "execution condition"))
    try:
        address = body.var_octets("address").decode("ascii")
        data = body.var_octets("data").decode("ascii")
    except UnicodeDecodeError as exc:
        raise IlpError("ILP address or data is not ASCII") from exc
    if kind == _V1_TYPE and body.take(1, "v1 extensions") != b"\x00":
        raise IlpError("v1 packet has extensions (expected a single 0 byte)")
    body.end("packet envelope")
    json_bytes = _b64url_decode(data, "packet data")
    try:
        transaction = json.loads(json_bytes.decode("utf-8"))
    except ValueError as exc:
        raise IlpError(f"packet data is not UTF-8 JSON: {exc}") from exc
    if not isinstance(transaction, dict):
        raise IlpError("packet data is JSON but not an object")
    version = 1 if kind == _V1_TYPE else 4
    return DecodedPacket(version, amount, address, transaction, json_bytes, expires_at, condition)


def fulfilment_for_packet(packet: str, secret: str) -> str:
    """Regenerate the fulfilment from an incoming packet, so any engine can answer a transfer.

    v1 hashes the packet text exactly as received; v4 hashes the embedded JSON bytes (what the SDK
    gets by re-serialising them). For v4, `condition_for(result) == decode(packet).condition` proves
    the packet was made with this secret.
    """
    decoded = decode(packet)
    if decoded.version == 1:
        return _b64url(_hmac(secret, packet.encode("ascii")))
    return _b64url(_hmac(secret, base64.b64encode(decoded.transaction_json)))


def condition_for(fulfilment: str) -> str:
    """condition = base64url(SHA-256(32-byte fulfilment)), as the payer checks on PUT /transfers."""
    preimage = _b64url_decode(fulfilment, "fulfilment")
    if len(preimage) != 32:
        raise IlpError(f"fulfilment must be 32 bytes, got {len(preimage)}")
    return _b64url(hashlib.sha256(preimage).digest())


def fulfilment_matches(fulfilment: str, condition: str) -> bool:
    """True if the fulfilment hashes to the condition; malformed input is simply False."""
    try:
        expected = condition_for(fulfilment)
    except IlpError:
        return False
    return hmac.compare_digest(expected.encode("ascii"), str(condition).encode("utf-8"))


def _field(transaction: Mapping[str, Any], *path: str) -> Any:
    value: Any = transaction
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            raise IlpError(f"transaction object lacks {'.'.join(path)}")
        value = value[key]
    return value


def _amount_of(transaction: Mapping[str, Any]) -> int:
    if "conversionTerms" in transaction:
        raise IlpError("FX transaction objects (conversionTerms) are not supported")
    return minor_units(
        _field(transaction, "amount", "amount"), _field(transaction, "amount", "currency")
    )


def _payee_address(transaction: Mapping[str, Any]) -> bytes:
    info = _field(transaction, "payee", "partyIdInfo")
    if not isinstance(info, Mapping):
        raise IlpError("payee.partyIdInfo must be an object")
    parts = ["g"]
    for name in ("fspId", "partyIdType", "partyIdentifier"):
        value = info.get(name)
        if not isinstance(value, str) or not value:
            raise IlpError(f"payee.partyIdInfo.{name} must be a non-empty string")
        parts.append(value if name == "fspId" else value.lower())  # the SDK keeps fspId's case
    sub_id = info.get("partySubIdOrType")
    if sub_id is not None and not isinstance(sub_id, str):
        raise IlpError("payee.partyIdInfo.partySubIdOrType must be a string")
    if sub_id:  # the SDK drops an empty one too
        parts.append(sub_id.lower())
    address = ".".join(parts)
    if not address.isascii():
        raise IlpError(f"ILP address {address!r} is not ASCII")
    return address.encode("ascii")


def _expiry_of(transaction: Mapping[str, Any]) -> bytes:
    value = _field(transaction, "expiration")
    if not isinstance(value, str) or not _DATETIME.fullmatch(value):
        raise IlpError(f"expiration {value!r} is not a date-time with a UTC offset")
    try:
        moment = datetime.fromisoformat(value).astimezone(UTC)
    except ValueError as exc:
        raise IlpError(f"expiration {value!r} is not a valid date-time") from exc
    stamp = f"{moment.year:04d}{moment:%m%d%H%M%S}{moment.microsecond // 1000:03d}"
    return stamp.encode("ascii")


def _parse_expiry(raw: bytes) -> datetime:
    if _EXPIRY.fullmatch(raw):
        with contextlib.suppress(ValueError):
            moment = datetime.strptime(raw[:14].decode("ascii"), "%Y%m%d%H%M%S")
            return moment.replace(microsecond=int(raw[14:]) * 1000, tzinfo=UTC)
    raise IlpError(f"v4 expiry {raw!r} is not YYYYMMDDHHMMSSmmm")


def _transaction_json(transaction: Mapping[str, Any]) -> bytes:
    """Compact, deep-sorted, UTF-8 JSON: what safe-stable-stringify produces for FSPIOP objects."""
    try:
        text = json.dumps(
            _plain(transaction), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise IlpError("transaction object holds a lone surrogate") from exc


def _plain(value: object) -> object:
    """Copy to plain JSON types, refusing what JavaScript would serialise differently (floats)."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int) and abs(value) <= _JS_SAFE_INT:
        return value
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise IlpError("transaction object keys must be strings")
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    raise IlpError(f"transaction object holds a non-JSON-safe value {value!r}")


def _hmac(secret: str, message: bytes) -> bytes:
    if not isinstance(secret, str) or not secret:
        raise IlpError("the ILP secret must be a non-empty string")
    key = base64.b64encode(secret.encode("utf-8"))
    return hmac.new(key, message, hashlib.sha256).digest()


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_decode(text: object, what: str) -> bytes:
    """Strict base64url: optional correct padding, nothing outside the URL-safe alphabet."""
    if not isinstance(text, str) or not _B64URL.fullmatch(text) or not text.rstrip("="):
        raise IlpError(f"{what} is not base64url")
    bare = text.rstrip("=")
    if len(bare) % 4 == 1 or (len(text) != len(bare) and len(text) % 4):
        raise IlpError(f"{what} has an impossible base64url length or padding")
    try:
        return base64.urlsafe_b64decode(bare + "=" * (-len(bare) % 4))
    except binascii.Error as exc:
        raise IlpError(f"{what} is not base64url: {exc}") from exc


def _var_octets(data: bytes) -> bytes:
    """OER variable-length octet string: short form below 128, else 0x80|n then n length bytes."""
    size = len(data)
    if size < 0x80:
        return bytes([size]) + data
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(length)]) + length + data


class _Reader:
    """Bounds-checked cursor over OER bytes; every shortfall is an IlpError naming the field."""

    def __init__(self, buffer: bytes) -> None:
        self._buffer = buffer
        self._pos = 0

    def take(self, count: int, what: str) -> bytes:
        if self._pos + count > len(self._buffer):
            raise IlpError(f"ILP packet truncated in {what}")
        chunk = self._buffer[self._pos : self._pos + count]
        self._pos += count
        return chunk

    def var_octets(self, what: str) -> bytes:
        first = self.take(1, f"{what} length")[0]
        if first < 0x80:
            return self.take(first, what)
        length = self.take(first & 0x7F, f"{what} length")
        size = int.from_bytes(length, "big")
        if not length or length[0] == 0 or size < 0x80:
            raise IlpError(f"non-canonical OER length for {what}")
        return self.take(size, what)

    def end(self, what: str) -> None:
        if self._pos != len(self._buffer):
            raise IlpError(
                f"{len(self._buffer) - self._pos} unexpected trailing byte(s) after {what}"
            )
