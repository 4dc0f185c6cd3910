"""What an import batch reports: its records' outcomes per engine, the records bound for the
dead-letter topic, and the steps an observer may time (benchmarks do; nobody else pays for it)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from backoffice.records import CdcRecord


@dataclass(frozen=True)
class Dead:
    """A record for the dead-letter topic, with why."""

    engine: str
    raw: bytes
    reason: str
    detail: str
    source: str


#: sends dead records and returns once the broker has them (called before the SQL commit)
DeadLetter = Callable[[Sequence[Dead]], None]


class Step(StrEnum):
    """The import's steps, as a `StepObserver` sees them (and where each one runs)."""

    DECODE = "decode"  #: event loop: one fetched batch decoded
    APPLY = "apply"  #: event loop: dead letters, then the transaction in a thread, with retries
    COMMIT = "commit"  #: event loop: the offset commit after the transaction
    LAG = "lag"  #: event loop: the lag gauge, after every poll
    TRANSACTION = "transaction"  #: batch thread: `Applier.apply`, the whole SQL transaction
    CLAIM = "claim"  #: batch thread: lock the progress rows, drop what they cover
    RESOLVE = "resolve"  #: batch thread: the tenant of each instance; park or dead-letter
    MAP = "map"  #: batch thread: records to rows (Python only)
    FOLD = "fold"  #: batch thread: payments folded into their transfer rows
    WRITE = "write"  #: batch thread: rows, transfers and audit entries written
    UPSERT_TRANSFERS = "upsert transfers"  #: batch thread, within WRITE
    AUDIT = "audit"  #: batch thread, within WRITE: the hash chain (HMAC + SQL)
    INDEX = "index"  #: search thread, beside WRITE: the OpenSearch bulk


class StepObserver(Protocol):
    """Watches the import's steps: `step(name)` wraps each one (benchmarks time or profile
    them through it). Steps nest (WRITE holds AUDIT) and run on three threads."""

    def step(self, name: Step) -> AbstractContextManager[object]: ...


_UNWATCHED = nullcontext()


def unwatched(name: Step) -> AbstractContextManager[object]:
    """The step wrapper when nobody observes: a shared no-op, so unobserved steps cost nothing
    measurable (about a dozen per batch)."""
    return _UNWATCHED


@dataclass
class BatchResult:
    """What became of a batch's records, per engine (a batch may span several engines)."""

    by_engine: Counter[tuple[str, str]] = field(default_factory=Counter)
    transfers: int = 0
    audit_entries: int = 0

    def add(self, records: Iterable[CdcRecord], outcome: str) -> None:
        self.by_engine.update((r.engine, outcome) for r in records)

    def total(self, outcome: str) -> int:
        return sum(n for (_, o), n in self.by_engine.items() if o == outcome)

    @property
    def imported(self) -> int:
        return self.total("imported")

    @property
    def duplicates(self) -> int:
        return self.total("duplicate")

    @property
    def ignored(self) -> int:
        return self.total("ignored")

    @property
    def pending(self) -> int:
        return self.total("pending")

    @property
    def dead(self) -> int:
        return self.total("dead_letter")
