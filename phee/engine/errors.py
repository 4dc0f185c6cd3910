"""Operaton's failures as ours, mapped in one place (`from_transport`, `from_response`).

Every `EngineError` says two things a caller decides on:
- `retryable`: trying the same call again (later) may succeed;
- `ambiguous`: the call may have taken effect although it failed (a timeout or a broken
  connection after the request was sent, a 5xx), so a retry must be safe to repeat.

Operaton's REST API answers a failure with `{"type": "<exception class>", "message": ...}`;
`kind` keeps that type (or the httpx error's class name) for logs and tests.
"""

from __future__ import annotations

from typing import Any

import httpx


class EngineError(Exception):
    """A call to the engine failed."""

    default_retryable = True
    default_ambiguous = True

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        kind: str = "",
        retryable: bool | None = None,
        ambiguous: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.retryable = self.default_retryable if retryable is None else retryable
        self.ambiguous = self.default_ambiguous if ambiguous is None else ambiguous

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self)!r}, status={self.status}, kind={self.kind!r}, "
            f"retryable={self.retryable}, ambiguous={self.ambiguous})"
        )


class EngineUnavailable(EngineError):
    """No connection could be made: the request was definitely not sent."""

    default_retryable = True
    default_ambiguous = False


class OptimisticLockConflict(EngineError):
    """Operaton's OptimisticLockingException: another transaction changed the same rows (a
    complete racing a correlation on one instance). The engine rolled back: retry."""

    default_retryable = True
    default_ambiguous = False


class NoMatchingSubscription(EngineError):
    """`POST /message` refused: no execution waits for that message (not yet, or the instance
    has ended). The engine keeps no buffer; whether to try again later is the caller's call."""

    default_retryable = False
    default_ambiguous = False


class NotFound(EngineError):
    """404: the task, instance or definition does not exist (any more)."""

    default_retryable = False
    default_ambiguous = False


class Refused(EngineError):
    """Any other 4xx: the engine refused the request as it is (bad input, lock held by another
    worker, ...). Sending it again unchanged will not help."""

    default_retryable = False
    default_ambiguous = False


#: the exception type Operaton names in the body of an optimistic-locking failure
OPTIMISTIC_LOCKING = "OptimisticLockingException"
#: what `POST /message` says when nothing waits for the message (MismatchingMessageCorrelation)
NO_MATCH_MARKERS = (
    "No process definition or execution matches",
    "No process definition matches",
)


def from_transport(err: httpx.TransportError, what: str) -> EngineError:
    """An httpx failure (no HTTP answer) as ours: connect failures were not sent at all."""
    kind = type(err).__name__
    detail = f"{what}: {kind}: {err}".rstrip(": ")
    if isinstance(err, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return EngineUnavailable(detail, kind=kind)
    # Read/write timeouts, a connection reset or closed mid-answer: it may have happened.
    return EngineError(detail, kind=kind, retryable=True, ambiguous=True)


def _body(response: httpx.Response) -> tuple[str, str]:
    """Operaton's exception type and message from an error answer (best effort)."""
    try:
        data: Any = response.json()
    except ValueError:
        return "", response.text.strip()[:500]
    if isinstance(data, dict):
        return str(data.get("type") or ""), str(data.get("message") or "")
    return "", str(data)[:500]


def from_response(response: httpx.Response, what: str, *, correlating: bool = False) -> EngineError:
    """An HTTP error answer as ours. `correlating`: the call was `POST /message`, where a
    400 naming no matching execution means NoMatchingSubscription."""
    status = response.status_code
    kind, message = _body(response)
    detail = f"{what}: HTTP {status}" + (f" {kind}" if kind else "") + f": {message}"
    if kind == OPTIMISTIC_LOCKING or OPTIMISTIC_LOCKING in message:
        return OptimisticLockConflict(detail, status=status, kind=kind or OPTIMISTIC_LOCKING)
    if status == 404:
        return NotFound(detail, status=status, kind=kind)
    if correlating and status == 400 and any(m in message for m in NO_MATCH_MARKERS):
        return NoMatchingSubscription(detail, status=status, kind=kind)
    if 400 <= status < 500:
        return Refused(detail, status=status, kind=kind)
    # 5xx (or an unexpected 1xx/3xx): the request was received; it may have taken effect.
    return EngineError(detail, status=status, kind=kind, retryable=True, ambiguous=True)
