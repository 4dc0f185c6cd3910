"""The pure half of the audit log: how entries are sealed into a hash chain and how it is checked.

Each entry's hash is an HMAC over its own fields and its predecessor's hash, so changing, removing
or adding an entry breaks the chain for anyone who lacks the key. The head (newest seq and hash,
also sealed) catches what a chain alone cannot: a log whose tail was cut off.
No I/O here; `backoffice.audit` reads and writes the tables.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

#: prev_hash of the first entry, and the hash of an empty log's head
GENESIS = "0" * 64

#: longest value each column holds (MariaDB may silently cut longer strings, breaking the hash)
LIMITS = {"actor": 128, "action": 64, "subject": 256, "source": 128}

FindingKind = Literal["edited", "inserted", "deleted", "head"]


@dataclass(frozen=True)
class AuditEntry:
    """One thing that happened: who did what to which subject, and when (UTC)."""

    at: datetime
    actor: str
    action: str
    subject: str
    detail: dict[str, Any] = field(default_factory=dict)
    #: unique origin (e.g. "engine/partition/position"): an entry with a known source is skipped
    source: str | None = None

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("AuditEntry.at must be timezone-aware (naive times are ambiguous)")
        for name, limit in LIMITS.items():
            value = getattr(self, name)
            if value is not None and len(value) > limit:
                raise ValueError(f"AuditEntry.{name} is longer than {limit} characters")


@dataclass(frozen=True)
class Finding:
    """One problem `verify_rows` found: what kind, at which seq, in words."""

    kind: FindingKind
    seq: int
    message: str


def canonical_json(detail: Mapping[str, Any]) -> str:
    """Detail as stored and hashed: sorted keys, compact, ASCII only (survives any DB charset)."""
    return json.dumps(
        detail, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=_json_default
    )


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"audit detail cannot hold a {type(value).__name__}")


def utc(at: datetime) -> datetime:
    """`at` in UTC; a naive time (as SQLite and MariaDB return them) is taken to be UTC already."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _mac(key: bytes, fields: list[Any]) -> str:
    # a JSON array keeps field boundaries unambiguous ("ab","c" differs from "a","bc")
    message = json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def entry_hash(key: bytes, row: Mapping[str, Any]) -> str:
    """The hash an audit_log row must carry, from its stored fields (detail as stored text)."""
    at = utc(row["at"]).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return _mac(
        key,
        [
            int(row["seq"]),
            at,
            row["actor"],
            row["action"],
            row["subject"],
            row["detail"],
            row["source"],
            row["prev_hash"],
        ],
    )


def head_mac(key: bytes, seq: int, hash_: str) -> str:
    """The seal of the head row: without the key nobody can move the head to hide a cut tail."""
    return _mac(key, ["head", seq, hash_])


def chain(
    key: bytes, prev_hash: str, next_seq: int, entries: Iterable[AuditEntry]
) -> list[dict[str, Any]]:
    """audit_log rows for `entries`, numbered from `next_seq` and linked to `prev_hash`."""
    rows: list[dict[str, Any]] = []
    for seq, entry in enumerate(entries, start=next_seq):
        row: dict[str, Any] = {
            "seq": seq,
            "at": utc(entry.at),
            "actor": entry.actor,
            "action": entry.action,
            "subject": entry.subject,
            "detail": canonical_json(entry.detail),
            "source": entry.source,
            "prev_hash": prev_hash,
        }
        row["hash"] = prev_hash = entry_hash(key, row)
        rows.append(row)
    return rows


def verify_rows(
    key: bytes, rows: Iterable[Mapping[str, Any]], head: Mapping[str, Any] | None
) -> list[Finding]:
    """Every problem in a log read in seq order, given its head row (None: no head row).

    * edited: an entry's hash does not match its content;
    * deleted: seqs missing in the middle, or at the end (the head names a later seq);
    * inserted: an entry beyond the head, a repeated seq, an entry the next entry bypasses
      (it links to the one before), or a validly sealed entry that does not link;
    * head: the head row is missing, its seal is wrong, or its hash is not the last entry's.
    """
    findings: list[Finding] = []
    limit: int | None = None  # highest seq the head vouches for, when it can be trusted
    head_hash = GENESIS
    if head is None:
        findings.append(Finding("head", 0, "the head row is missing"))
    elif not hmac.compare_digest(head["mac"], head_mac(key, int(head["seq"]), head["hash"])):
        findings.append(Finding("head", int(head["seq"]), "the head's seal is not valid"))
    else:
        limit, head_hash = int(head["seq"]), head["hash"]
    tip_seq, tip_hash = 0, GENESIS  # the last entry accepted into the chain
    last_seen = 0
    excused = False  # the previous entry was reported, so a broken link after it is no news
    for row, nxt in _pairs(rows):
        seq = int(row["seq"])
        if limit is not None and seq > limit:
            findings.append(Finding("inserted", seq, f"entry is beyond the head (seq {limit})"))
            continue
        if seq <= tip_seq:
            findings.append(Finding("inserted", seq, f"entry repeats seq {seq} or is out of order"))
            continue
        last_seen = seq
        gap = seq > tip_seq + 1
        if gap:
            findings.append(_missing(tip_seq + 1, seq - 1))
        own_ok = hmac.compare_digest(row["hash"], entry_hash(key, row))
        links = row["prev_hash"] == tip_hash
        if own_ok and (links or gap or excused):
            tip_seq, tip_hash, excused = seq, row["hash"], False
            continue
        if not gap and nxt is not None and nxt["prev_hash"] == tip_hash:
            findings.append(
                Finding("inserted", seq, "the next entry links past this one to its predecessor")
            )
            if int(nxt["seq"]) > seq:
                tip_seq = seq  # the forger took this seq number; the chain's hash stays
            continue
        if own_ok:
            findings.append(Finding("inserted", seq, "entry is sealed but does not link"))
        else:
            findings.append(Finding("edited", seq, "entry's hash does not match its content"))
        tip_seq, tip_hash, excused = seq, row["hash"], True
    if limit is not None:
        if last_seen < limit:
            findings.append(_missing(last_seen + 1, limit))
        elif limit > 0 and tip_seq == limit and tip_hash != head_hash and not excused:
            findings.append(Finding("head", limit, f"the head's hash is not entry {limit}'s"))
    return findings


def _missing(first: int, last: int) -> Finding:
    if first == last:
        return Finding("deleted", first, "entry is missing")
    return Finding("deleted", first, f"entries {first} to {last} are missing")


_Row = Mapping[str, Any]


def _pairs(rows: Iterable[_Row]) -> Iterator[tuple[_Row, _Row | None]]:
    """Each row with the one after it (None for the last), reading `rows` only once."""
    it = iter(rows)
    current = next(it, None)
    while current is not None:
        following = next(it, None)
        yield current, following
        current = following
