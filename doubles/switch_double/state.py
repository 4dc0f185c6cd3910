"""In-memory state of the switch: registered DFSPs, the party oracle, quotes and transfers.

Everything lives in bounded, expiring maps so a long load test cannot grow the process without
limit: the oldest entries go first once `max_records` is reached or their `ttl` has passed.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Generic, TypeVar

from doubles.switch_double.settings import DfspSpec, PartySpec

K = TypeVar("K")
V = TypeVar("V")

PartyKey = tuple[str, str, str | None]


class BoundedMap(Generic[K, V]):
    """A dict that forgets entries older than `ttl_s` or beyond `max_size` (oldest first)."""

    def __init__(
        self,
        max_size: int,
        ttl_s: float,
        *,
        on_evict: Callable[[V], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._max = max_size
        self._ttl = ttl_s
        self._on_evict = on_evict
        self._clock = clock

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K) -> V | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if self._clock() - entry[0] > self._ttl:
            self._evict(key)
            return None
        return entry[1]

    def put(self, key: K, value: V) -> None:
        """Insert or replace; a replaced entry keeps its age (ids are not reused in practice)."""
        old = self._data.get(key)
        self._data[key] = (old[0] if old else self._clock(), value)
        self._trim()

    def pop(self, key: K) -> V | None:
        entry = self._data.pop(key, None)
        return entry[1] if entry else None

    def values(self) -> Iterator[V]:
        return (value for _, value in list(self._data.values()))

    def clear(self) -> None:
        for key in list(self._data):
            self._evict(key)

    def _trim(self) -> None:
        now = self._clock()
        while self._data:
            key, (born, _) = next(iter(self._data.items()))
            if len(self._data) <= self._max and now - born <= self._ttl:
                break
            self._evict(key)

    def _evict(self, key: K) -> None:
        entry = self._data.pop(key, None)
        if entry is not None and self._on_evict is not None:
            self._on_evict(entry[1])


class TransferState(StrEnum):
    """FSPIOP transfer states as the switch sees them."""

    RECEIVED = "RECEIVED"
    RESERVED = "RESERVED"
    COMMITTED = "COMMITTED"
    ABORTED = "ABORTED"


@dataclass
class Sent:
    """The last answer sent to a requester, to be sent again for a duplicate request."""

    path: str
    body: dict[str, object]
    source: str


@dataclass
class QuoteRecord:
    """What the switch remembers of a quote: who asked, who answers, what was asked."""

    quote_id: str
    payer: str
    payee: str
    fingerprint: str
    version: str
    result: Sent | None = None


@dataclass
class TransferRecord:
    """A transfer between prepare and its final state, then kept for `GET` and duplicates."""

    transfer_id: str
    payer: str
    payee: str
    fingerprint: str
    condition: str
    expiration: datetime
    version: str
    state: TransferState = TransferState.RECEIVED
    fulfilment: str | None = None
    completed: str | None = None
    error_code: str | None = None
    result: Sent | None = None
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    @property
    def final(self) -> bool:
        return self.state in (TransferState.COMMITTED, TransferState.ABORTED)

    def stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class PartyConflictError(ValueError):
    """A party that another DFSP already owns."""


@dataclass
class Dfsp:
    fsp_id: str
    callback_base: str | None
    parties: list[PartySpec]


class Directory:
    """Registered DFSPs and the oracle (party -> owning DFSP)."""

    def __init__(self) -> None:
        self._dfsps: dict[str, Dfsp] = {}
        self._owner: dict[PartyKey, str] = {}
        self._parties: dict[PartyKey, PartySpec] = {}

    def register(self, fsp_id: str, spec: DfspSpec) -> Dfsp:
        """Add or replace a DFSP and its parties; refuses parties owned by another DFSP."""
        for party in spec.parties:
            owner = self._owner.get(party.key)
            if owner is not None and owner != fsp_id:
                raise PartyConflictError(f"party {party.key} already belongs to {owner}")
        self.remove(fsp_id)
        dfsp = Dfsp(fsp_id, spec.callback_base, list(spec.parties))
        self._dfsps[fsp_id] = dfsp
        for party in spec.parties:
            self._owner[party.key] = fsp_id
            self._parties[party.key] = party
        return dfsp

    def remove(self, fsp_id: str) -> bool:
        old = self._dfsps.pop(fsp_id, None)
        if old is None:
            return False
        for party in old.parties:
            if self._owner.get(party.key) == fsp_id:
                del self._owner[party.key]
                del self._parties[party.key]
        return True

    def get(self, fsp_id: str) -> Dfsp | None:
        return self._dfsps.get(fsp_id)

    def all(self) -> list[Dfsp]:
        return sorted(self._dfsps.values(), key=lambda d: d.fsp_id)

    def owner_of(self, key: PartyKey) -> str | None:
        """The DFSP owning a party; a party registered without sub-id matches any sub-id."""
        return self._owner.get(key) or self._owner.get((key[0], key[1], None))

    def party(self, key: PartyKey) -> PartySpec | None:
        return self._parties.get(key) or self._parties.get((key[0], key[1], None))
