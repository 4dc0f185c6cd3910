"""Small test utilities: polling with a deadline (never a bare sleep as synchronisation)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def poll(
    fetch: Callable[[], T | None], *, what: str, deadline_s: float, interval_s: float = 0.2
) -> T:
    """Call `fetch` until it returns something other than None, or fail naming `what`."""
    end = time.monotonic() + deadline_s
    last_error: Exception | None = None
    while time.monotonic() < end:
        try:
            value = fetch()
        except Exception as err:  # noqa: BLE001 - remembered and reported on timeout
            last_error = err
            value = None
        if value is not None:
            return value
        time.sleep(interval_s)
    raise AssertionError(
        f"{what} did not happen within {deadline_s} s (last error: {last_error!r})"
    )


async def apoll(
    fetch: Callable[[], Awaitable[T | None]],
    *,
    what: str,
    deadline_s: float,
    interval_s: float = 0.2,
) -> T:
    """Async `poll`."""
    end = time.monotonic() + deadline_s
    last_error: Exception | None = None
    while time.monotonic() < end:
        try:
            value = await fetch()
        except Exception as err:  # noqa: BLE001 - remembered and reported on timeout
            last_error = err
            value = None
        if value is not None:
            return value
        await asyncio.sleep(interval_s)
    raise AssertionError(
        f"{what} did not happen within {deadline_s} s (last error: {last_error!r})"
    )
