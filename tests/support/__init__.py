"""Small test utilities: polling with a deadline (never a bare sleep as synchronisation)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")


class _Deadline:
    """Remembers the last outcome of a check and fails, quoting it, once time is up."""

    def __init__(self, what: str, deadline_s: float) -> None:
        self.what, self.deadline_s = what, deadline_s
        self.end = time.monotonic() + deadline_s

    def not_yet(self, outcome: object) -> None:
        if time.monotonic() > self.end:
            raise AssertionError(
                f"{self.what} did not happen within {self.deadline_s} s (last: {outcome!r})"
            )


def _attempt(check: Callable[[], Any]) -> tuple[Any, bool]:
    try:
        value = check()
    except Exception as err:  # noqa: BLE001 - "not yet", and quoted on timeout
        return err, False
    return value, bool(value)


def poll(
    check: Callable[[], T | None], *, what: str, deadline_s: float, interval_s: float = 0.2
) -> T:
    """Call `check` until it returns something truthy, and return that; fail naming `what`.

    None, False and empty values mean "not yet"; an exception does too, and the last outcome is
    quoted when the deadline passes.
    """
    deadline = _Deadline(what, deadline_s)
    while True:
        value, done = _attempt(check)
        if done:
            return cast(T, value)
        deadline.not_yet(value)
        time.sleep(interval_s)


async def _aattempt(check: Callable[[], Awaitable[Any]]) -> tuple[Any, bool]:
    try:
        value = await check()
    except Exception as err:  # noqa: BLE001 - "not yet", and quoted on timeout
        return err, False
    return value, bool(value)


async def apoll(
    check: Callable[[], Awaitable[T | None]],
    *,
    what: str,
    deadline_s: float,
    interval_s: float = 0.2,
) -> T:
    """Async `poll`."""
    deadline = _Deadline(what, deadline_s)
    while True:
        value, done = await _aattempt(check)
        if done:
            return cast(T, value)
        deadline.not_yet(value)
        await asyncio.sleep(interval_s)
