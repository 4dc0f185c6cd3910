"""Admission control for the channel API: refuse new payments while the engine is full.

Past its capacity an engine does not slow down gracefully: answers arrive after the switch's
waits, timeouts fire, resends add load, and payments that were accepted end ABORTED (measured:
233 of 720 at 12/s offered on one engine, docs/benchmarks.md). Refusing at the door keeps the
accepted payments fast and tells the client to come back, before any money moves.

"Full" is the number of payer payments not yet final in the engine's shared store (every
replica's), counted again every `refresh_s`; admissions since the last count are added, so a
burst between two counts is not let through whole.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from phee.sql import SqlError

log = logging.getLogger("engine_workers.admission")


@dataclass(frozen=True)
class Verdict:
    admitted: bool
    open_payments: int
    limit: int


class Admission:
    """`admit()` says whether one more payment may start; `limit` 0 admits everything."""

    def __init__(
        self,
        count_open: Callable[[], Awaitable[int]],
        limit: int,
        *,
        refresh_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 0:
            raise ValueError("limit must be 0 (no limit) or more")
        self._count_open = count_open
        self.limit = limit
        self.refresh_s = refresh_s
        self._clock = clock
        self._open = 0
        self._counted_at: float | None = None
        self._lock = asyncio.Lock()
        self.refused = 0

    async def admit(self) -> Verdict:
        if self.limit == 0:
            return Verdict(True, 0, 0)
        await self._refresh()
        if self._open >= self.limit:
            self.refused += 1
            return Verdict(False, self._open, self.limit)
        self._open += 1  # counted as open until the next count sees it
        return Verdict(True, self._open, self.limit)

    async def _refresh(self) -> None:
        async with self._lock:  # one count at a time; the others use its result
            now = self._clock()
            if self._counted_at is not None and now - self._counted_at < self.refresh_s:
                return
            try:
                self._open = await self._count_open()
            except SqlError as err:
                # Admit on the last count: a store that cannot count cannot take the payment
                # either, and the request fails there with its own clear error.
                log.warning("open payments not counted (%s); the last count stands", err)
            self._counted_at = now
