"""Ids that name the engine that created them, while still matching FSPIOP's id patterns.

The router routes a callback for an id we created (quoteId, transferId, ...) without a lookup:
the owning engine's slot (0..1023) sits in ten bits of the id that are otherwise random.
- UUIDv4 (lowercase, FSPIOP 1.1): the three hex digits after the version nibble hold 12 bits;
  we use the low 10 (the top two stay random so ids do not look alike).
- ULID (uppercase, FSPIOP 2.0): the first two characters of the randomness hold 10 bits.
Ids created by others decode to some slot too, so the router only trusts the slot for ids it
knows to be ours (the payer side); anything else goes through its fallback.
"""

from __future__ import annotations

import re
import secrets
import uuid

from ulid import ULID

MAX_SLOT = 1023
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
UUID_PATTERN = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-7][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)
ULID_PATTERN = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")


def _check_slot(slot: int) -> None:
    if not 0 <= slot <= MAX_SLOT:
        raise ValueError(f"engine slot {slot} is outside 0..{MAX_SLOT}")


def new_uuid(slot: int) -> str:
    """A lowercase UUIDv4 carrying `slot`."""
    _check_slot(slot)
    raw = uuid.uuid4().hex
    top = secrets.randbelow(4) << 10
    marked = raw[:13] + f"{top | slot:03x}" + raw[16:]
    return str(uuid.UUID(marked))


def new_ulid(slot: int) -> str:
    """An uppercase ULID (time-ordered) carrying `slot`."""
    _check_slot(slot)
    text = str(ULID())
    return text[:10] + _CROCKFORD[slot >> 5] + _CROCKFORD[slot & 31] + text[12:]


def new_id(slot: int, kind: str = "uuid") -> str:
    """A new id of `kind` ("uuid" for FSPIOP 1.1 peers, "ulid" for 2.0)."""
    if kind == "uuid":
        return new_uuid(slot)
    if kind == "ulid":
        return new_ulid(slot)
    raise ValueError(f"unknown id kind {kind!r}: use 'uuid' or 'ulid'")


def slot_of(value: str) -> int | None:
    """The engine slot inside an FSPIOP id, or None when `value` is not a valid id."""
    if UUID_PATTERN.match(value):
        return int(value[15:18], 16) & MAX_SLOT
    if ULID_PATTERN.match(value):
        return (_CROCKFORD.index(value[10]) << 5) | _CROCKFORD.index(value[11])
    return None


def is_fspiop_id(value: str) -> bool:
    """True for a lowercase UUID (versions 1-7) or an uppercase ULID, as FSPIOP requires."""
    return bool(UUID_PATTERN.match(value) or ULID_PATTERN.match(value))
