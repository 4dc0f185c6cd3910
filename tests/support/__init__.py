"""Small test utilities: polling with a deadline (never a bare sleep as synchronisation)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def poll(
    check: Callable[[], T | None], *, what: str, deadline_s: float, interval_s: float = 0.2
) -> T:
    """Call `check` until it returns something truthy, and return that; fail naming `what`.

    None, False and empty values mean "not yet"; an exception does too, and the last one is
    quoted when the deadline passes.
    """
    end = time.monotonic() + deadline_s
    last: object = None
    while True:
        try:
            value = check()
        except Exception as err:  # noqa: BLE001 - remembered and reported on timeout
            last = err
        else:
            if value:
                return value
            last = value
        if time.monotonic() > end:
            raise AssertionError(f"{what} did not happen within {deadline_s} s (last: {last!r})")
        time.sleep(interval_s)


async def apoll(
    check: Callable[[], Awaitable[T | None]],
    *,
    what: str,
    deadline_s: float,
    interval_s: float = 0.2,
) -> T:
    """Async `poll`."""
    end = time.monotonic() + deadline_s
    last: object = None
    while True:
        try:
            value = await check()
        except Exception as err:  # noqa: BLE001 - remembered and reported on timeout
            last = err
        else:
            if value:
                return value
            last = value
        if time.monotonic() > end:
            raise AssertionError(f"{what} did not happen within {deadline_s} s (last: {last!r})")
        await asyncio.sleep(interval_s)
