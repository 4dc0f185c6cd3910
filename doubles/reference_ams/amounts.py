"""Money in the reference AMS: FSPIOP amount strings outside, integer minor units in the ledger.

FSPIOP carries amounts as strings without trailing zeros; floats would lose cents, so requests
are parsed into `Decimal`, checked against the currency's exponent (ISO 4217) and stored as
signed integers of minor units, which every SQL dialect sums exactly.
"""

from __future__ import annotations

import re
from decimal import Decimal

AMOUNT_PATTERN = re.compile(r"^([0]|([1-9][0-9]{0,17}))([.][0-9]{0,3}[1-9])?$")
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")

#: ISO 4217 minor-unit exponents that differ from the usual 2
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        ["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND"], 0
    ),
    **dict.fromkeys(["VUV", "XAF", "XOF", "XPF"], 0),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}

#: the largest amount (in minor units) one operation may move; keeps sums inside BIGINT
MAX_MINOR = 10**15


class AmountError(ValueError):
    """An amount or currency the ledger cannot take; the message names what is wrong."""


def exponent(currency: str) -> int:
    """Digits after the decimal point the currency allows (2 unless listed)."""
    if not CURRENCY_PATTERN.match(currency):
        raise AmountError(f"currency {currency!r} is not an ISO 4217 code")
    return _EXPONENTS.get(currency, 2)


def check_amount(text: str) -> Decimal:
    """Parse an FSPIOP `Amount` string (no sign, no exponent, no trailing zeros)."""
    if not AMOUNT_PATTERN.match(text):
        raise AmountError(f"{text!r} is not an FSPIOP amount")
    return Decimal(text)


def to_minor(text: str, currency: str) -> int:
    """FSPIOP amount string -> integer minor units, refusing more decimals than allowed."""
    value = check_amount(text)
    digits = exponent(currency)
    decimals = max(0, -int(value.as_tuple().exponent))
    if decimals > digits:
        raise AmountError(f"{text} has {decimals} decimals; {currency} allows {digits}")
    minor = int(value.scaleb(digits))
    if minor > MAX_MINOR:
        raise AmountError(f"{text} {currency} is above this ledger's limit per operation")
    return minor


def from_minor(minor: int, currency: str) -> str:
    """Integer minor units -> canonical FSPIOP amount (a leading '-' for negative balances)."""
    value = Decimal(abs(minor)).scaleb(-exponent(currency)).normalize()
    text = format(value, "f")
    return f"-{text}" if minor < 0 else text
