"""FSPIOP messages as the switch moves them: parsed paths, bodies, timestamps, error callbacks."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from phee.fspiop.errors import FspiopError

#: headers forwarded unchanged with a forwarded message, so a JWS signature still verifies
PASSTHROUGH = (
    "Date",
    "FSPIOP-Signature",
    "FSPIOP-URI",
    "FSPIOP-HTTP-Method",
    "traceparent",
    "tracestate",
)

Body = dict[str, Any]


@dataclass(frozen=True)
class Route:
    """What a path addresses: `/parties/MSISDN/123/error` -> parties, id `MSISDN/123`, error."""

    resource: str
    id: str | None
    error: bool

    @property
    def base(self) -> str:
        """The path without `/error`: where the answer for this id goes."""
        return f"/{self.resource}/{self.id}" if self.id else f"/{self.resource}"

    @property
    def error_path(self) -> str:
        return self.base + "/error"

    def party_key(self) -> tuple[str, str, str | None]:
        parts = (self.id or "").split("/")
        return (parts[0], parts[1], parts[2] if len(parts) > 2 else None)


def parse_path(path: str) -> Route:
    """The route of a path the switch serves; 3002 for anything else."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if not parts:
        raise FspiopError("3002", path)
    resource, rest = parts[0], parts[1:]
    error = bool(rest) and rest[-1] == "error"
    if error:
        rest = rest[:-1]
    if resource == "parties":
        if len(rest) not in (2, 3):
            raise FspiopError("3002", f"{path}: expected /parties/{{Type}}/{{ID}}[/{{SubId}}]")
        return Route(resource, "/".join(rest), error)
    if resource in ("quotes", "transfers"):
        if len(rest) > 1 or (error and not rest):
            raise FspiopError("3002", path)
        return Route(resource, rest[0] if rest else None, error)
    raise FspiopError("3002", f"{path} is not served by the switch double")


@dataclass(frozen=True)
class Message:
    """One FSPIOP request or callback; `raw` is the exact body received, forwarded unchanged."""

    method: str
    path: str
    source: str
    destination: str | None
    body: Body | None
    version: str
    raw: bytes | None = None
    passthrough: Mapping[str, str] = field(default_factory=dict)

    @cached_property
    def route(self) -> Route:
        return parse_path(self.path)

    def content(self) -> bytes | None:
        """Bytes to send: as received when forwarding, else compact JSON with sorted keys."""
        if self.method == "GET":
            return None
        if self.raw is not None:
            return self.raw
        return dumps(self.body or {})

    def forward(self, destination: str) -> Message:
        """The same message addressed to `destination` (body and signature headers untouched)."""
        return Message(
            self.method,
            self.path,
            self.source,
            destination,
            self.body,
            self.version,
            self.raw,
            self.passthrough,
        )


def dumps(body: Mapping[str, Any]) -> bytes:
    """Canonical JSON (what a JWS signer hashes): compact, sorted keys, UTF-8."""
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def fingerprint(body: Body | None) -> str:
    """Equal for bodies with equal content, whatever their key order (duplicate detection)."""
    return hashlib.sha256(dumps(body or {})).hexdigest()


def now_utc() -> datetime:
    return datetime.now(UTC)


def fspiop_time(when: datetime) -> str:
    """FSPIOP DateTime: UTC with milliseconds (`2026-11-21T08:00:00.123Z`)."""
    utc = when.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_time(value: object, name: str) -> datetime:
    """An FSPIOP DateTime field; 3100 naming the field when it is not one (or has no zone)."""
    if not isinstance(value, str):
        raise FspiopError("3100", f"{name} must be a date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as err:
        raise FspiopError("3100", f"{name} {value!r} is not a date-time") from err
    if parsed.tzinfo is None:
        raise FspiopError("3100", f"{name} {value!r} has no time zone")
    return parsed


def error_message(
    *, source: str, to: str, path: str, code: str, detail: str, version: str
) -> Message:
    """A `PUT .../error` callback (`path` is the base path, without `/error`)."""
    body = FspiopError(code, detail).body()
    return Message("PUT", path + "/error", source, to, body, version)


def callback(*, source: str, to: str, path: str, body: Body, version: str) -> Message:
    return Message("PUT", path, source, to, body, version)
