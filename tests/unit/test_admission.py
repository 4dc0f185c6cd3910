"""Admission control: the count of open payments, refreshed on a clock, decides the door."""

from __future__ import annotations

import asyncio

import pytest

from engine_workers.admission import Admission
from phee.sql import SqlError


class Counter:
    def __init__(self, value: int) -> None:
        self.value = value
        self.calls = 0
        self.fail = False

    async def __call__(self) -> int:
        self.calls += 1
        await asyncio.sleep(0)  # let concurrent admits meet here
        if self.fail:
            raise SqlError("connection lost", retryable=True)
        return self.value


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_no_limit_admits_everything_without_counting() -> None:
    count = Counter(10_000)
    door = Admission(count, 0)
    assert all([(await door.admit()).admitted for _ in range(50)])
    assert count.calls == 0


async def test_admits_up_to_the_limit_counting_its_own_admissions() -> None:
    count, clock = Counter(1), Clock()
    door = Admission(count, 3, refresh_s=1, clock=clock)
    verdicts = [await door.admit() for _ in range(3)]
    assert [v.admitted for v in verdicts] == [True, True, False]
    assert verdicts[-1].open_payments == 3
    assert count.calls == 1  # one count within the refresh time
    assert door.refused == 1


async def test_a_new_count_opens_the_door_again() -> None:
    count, clock = Counter(3), Clock()
    door = Admission(count, 3, refresh_s=1, clock=clock)
    assert not (await door.admit()).admitted
    count.value = 2
    clock.now = 0.5
    assert not (await door.admit()).admitted  # not counted again yet
    clock.now = 1.0
    assert (await door.admit()).admitted
    assert count.calls == 2


async def test_concurrent_admits_share_one_count() -> None:
    count = Counter(0)
    door = Admission(count, 5, refresh_s=10, clock=Clock())
    verdicts = await asyncio.gather(*(door.admit() for _ in range(8)))
    assert sum(v.admitted for v in verdicts) == 5
    assert count.calls == 1


async def test_a_failed_count_keeps_the_last_one() -> None:
    count, clock = Counter(2), Clock()
    door = Admission(count, 3, refresh_s=1, clock=clock)
    assert (await door.admit()).admitted  # open: 2 + 1
    count.fail = True
    clock.now = 5
    assert not (await door.admit()).admitted  # the last count (3) stands
    assert count.calls == 2


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        Admission(Counter(0), -1)
