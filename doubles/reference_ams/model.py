"""Values shared by the ledger and its reports: parties, errors, validation, JSON shapes.

The ledger validates everything itself (not only the HTTP layer), so direct callers and the
HTTP API get the same FSPIOP error naming the same field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from doubles.reference_ams.amounts import CURRENCY_PATTERN, AmountError, from_minor, to_minor
from phee.fspiop.errors import FspiopError
from phee.fspiop.ids import is_fspiop_id

PARTY_ID_TYPES = frozenset(
    {"MSISDN", "EMAIL", "PERSONAL_ID", "BUSINESS", "DEVICE", "ACCOUNT_ID", "IBAN", "ALIAS"}
    | {"CONSENT", "THIRD_PARTY_LINK"}
)
#: hold states, and the state of a transfer that only has a payee credit
BLOCKED, BOOKED, RELEASED, CREDITED = "BLOCKED", "BOOKED", "RELEASED", "CREDITED"
#: money operations, the second half of the idempotency key
BLOCK, BOOK, RELEASE, CREDIT, OPEN = "BLOCK", "BOOK", "RELEASE", "CREDIT", "OPEN"


class LedgerError(Exception):
    """A refusal with an FSPIOP code and the HTTP status it is answered with."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        self.status = status
        self.error = FspiopError(code, detail)
        super().__init__(self.error.description)

    @property
    def code(self) -> str:
        return self.error.code


@dataclass(frozen=True)
class Party:
    id_type: str
    identifier: str

    def info(self) -> dict[str, str]:
        """FSPIOP `PartyIdInfo` (without fspId: the AMS only knows its own DFSP)."""
        return {"partyIdType": self.id_type, "partyIdentifier": self.identifier}

    def __str__(self) -> str:
        return f"{self.id_type}/{self.identifier}"


@dataclass(frozen=True)
class Outcome:
    """The answer to a money operation; `replayed` when it is the stored first answer."""

    body: dict[str, Any]
    replayed: bool


def now() -> datetime:
    """Naive UTC (what every dialect's DATETIME keeps as written)."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso(moment: datetime) -> str:
    """FSPIOP DateTime (UTC, milliseconds)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def invalid(field: str, why: str) -> LedgerError:
    return LedgerError(400, "3100", f"{field}: {why}")


def check_party(party: Party, field: str = "") -> None:
    prefix = f"{field}." if field else ""
    if party.id_type not in PARTY_ID_TYPES:
        raise invalid(f"{prefix}partyIdType", f"{party.id_type!r} is not an FSPIOP PartyIdType")
    if not 1 <= len(party.identifier) <= 128:
        raise invalid(f"{prefix}partyIdentifier", "must be 1 to 128 characters")


def check_id(value: str, field: str) -> None:
    if not is_fspiop_id(value):
        raise invalid(field, f"{value!r} is not a lowercase UUID or a ULID")


def minor_units(amount: str, currency: str, field: str, *, positive: bool = True) -> int:
    """Validated amount in minor units; 3100 naming `field` when it does not fit the currency."""
    if not CURRENCY_PATTERN.match(currency):
        # "amount.amount" goes with "amount.currency"; a top-level amount with "currency"
        where = f"{field.rpartition('.')[0]}.currency".lstrip(".")
        raise invalid(where, f"{currency!r} is not an ISO 4217 code")
    try:
        minor = to_minor(amount, currency)
    except AmountError as err:
        raise invalid(field, str(err)) from err
    if positive and minor == 0:
        raise invalid(field, "must be greater than 0")
    return minor


def money(minor: int, currency: str) -> dict[str, str]:
    """FSPIOP `Money`."""
    return {"amount": from_minor(minor, currency), "currency": currency}


def digest(request: dict[str, Any]) -> str:
    """Fingerprint of a request's content, to tell a true repeat from a modified one (3106)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
