"""Fault injection: rules that make the switch answer with an error, late, or not at all.

A rule matches an FSPIOP request the switch receives over HTTP (method, resource, path regex,
destination DFSP). What it does to that request:
- `error`: the request is not processed; the sender gets a `PUT .../error` callback with the code;
- `delay`: everything the switch sends over HTTP because of the request waits `delayMs` first;
- `drop`: the request is processed (state changes as usual) but nothing is sent over HTTP
  because of it: a missing callback, or a forward that never reaches the other DFSP.
Rules are tried in the order they were added; the first that matches is used and its `count`
(if any) goes down by one; a rule whose count reaches zero is removed.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from phee.fspiop.errors import CODES


class FaultMatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: str | None = None
    resource: str | None = None
    path_regex: str | None = None
    destination: str | None = None

    @field_validator("path_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value


class FaultSpec(BaseModel):
    """The body of `POST /admin/faults`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    match: FaultMatch = Field(default_factory=FaultMatch)
    action: Literal["error", "delay", "drop"]
    error_code: str | None = Field(default=None, alias="errorCode")
    delay_ms: int | None = Field(default=None, alias="delayMs", ge=0)
    count: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> FaultSpec:
        if self.action == "error":
            if self.error_code is None:
                self.error_code = "2001"
            if self.error_code not in CODES:
                raise ValueError(f"unknown FSPIOP error code {self.error_code}")
        if self.action == "delay" and self.delay_ms is None:
            raise ValueError("action delay needs delayMs")
        return self


@dataclass(frozen=True)
class Fault:
    """What applies to one request (a rule that matched)."""

    rule_id: int
    action: str
    error_code: str = "2001"
    delay_s: float = 0.0


@dataclass
class _Rule:
    id: int
    spec: FaultSpec
    pattern: re.Pattern[str] | None
    remaining: int | None


class FaultBook:
    """The active rules."""

    def __init__(self) -> None:
        self._rules: list[_Rule] = []
        self._ids = itertools.count(1)

    def add(self, spec: FaultSpec) -> int:
        pattern = re.compile(spec.match.path_regex) if spec.match.path_regex else None
        rule = _Rule(next(self._ids), spec, pattern, spec.count)
        self._rules.append(rule)
        return rule.id

    def clear(self) -> int:
        count = len(self._rules)
        self._rules.clear()
        return count

    def listing(self) -> list[dict[str, object]]:
        return [
            {"id": r.id, "remaining": r.remaining, **r.spec.model_dump(by_alias=True)}
            for r in self._rules
        ]

    def take(self, method: str, resource: str, path: str, destination: str | None) -> Fault | None:
        """The fault for a request, using up one of the matching rule's count."""
        for rule in self._rules:
            m = rule.spec.match
            if m.method is not None and m.method.upper() != method.upper():
                continue
            if m.resource is not None and m.resource != resource:
                continue
            if m.destination is not None and m.destination != destination:
                continue
            if rule.pattern is not None and not rule.pattern.search(path):
                continue
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._rules.remove(rule)
            spec = rule.spec
            return Fault(
                rule_id=rule.id,
                action=spec.action,
                error_code=spec.error_code or "2001",
                delay_s=(spec.delay_ms or 0) / 1000.0,
            )
        return None
