"""Turning the payer and payee task functions into the engine worker's handlers.

A task function takes a `Job` (the external task with its variables decoded) and returns the
variables to complete it with; it raises to fail (policy in `engine_workers.failures`). Each
topic fetches only the variables it reads: fetching every variable ships every callback body.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from engine_workers.failures import attempts_left, outcome_of
from phee import contract
from phee.engine import Await, Complete, ExternalTask, Outcome
from phee.service import payment_context


@dataclass(frozen=True)
class Job:
    """One locked external task as the task functions see it."""

    task: ExternalTask
    variables: dict[str, Any]
    #: the task's `operaton:properties` in the BPMN (status, reason, errorFrom, ...)
    properties: dict[str, str]
    #: attempts left including this one
    attempts_left: int

    @property
    def last_attempt(self) -> bool:
        return self.attempts_left <= 1

    @property
    def instance_id(self) -> str:
        return self.task.process_instance_id


#: a task's variables to complete it with, or `Await` for a task that sent a request and is
#: ended by its answer (a message boundary event) or its timer
TaskFn = Callable[[Job], Awaitable[dict[str, Any] | Await]]
Handler = Callable[[ExternalTask], Awaitable[Outcome]]


def decode(variables: dict[str, Any]) -> dict[str, Any]:
    """Variables with the JSON documents (`contract.JSON_VARIABLES`) parsed."""
    out = dict(variables)
    for name in contract.JSON_VARIABLES.intersection(out):
        if isinstance(out[name], str):
            out[name] = json.loads(out[name])
    return out


@dataclass
class Tasks:
    """Every topic this worker serves: function, variables to fetch, attempts."""

    retries: int
    _fns: dict[str, tuple[TaskFn, list[str] | None, int]] = field(default_factory=dict)
    _locks: dict[str, int] = field(default_factory=dict)

    def add(
        self,
        topic: str,
        fn: TaskFn,
        fetch: list[str] | None = None,
        retries: int | None = None,
        *,
        lock_ms: int | None = None,
    ) -> None:
        """`lock_ms`: this topic's lock, when it is not the worker's (a task that awaits an
        answer is handed out again, and its request resent, when its lock expires)."""
        self._fns[topic] = (fn, fetch, retries or self.retries)
        if lock_ms is not None:
            self._locks[topic] = lock_ms

    def lock_ms(self) -> dict[str, int]:
        return dict(self._locks)

    def topics(self) -> list[str]:
        return sorted(self._fns)

    def fetch_variables(self) -> dict[str, list[str] | None]:
        return {topic: fetch for topic, (_fn, fetch, _r) in self._fns.items()}

    def handlers(self) -> dict[str, Handler]:
        return {topic: self._handler(topic, *spec) for topic, spec in self._fns.items()}

    @staticmethod
    def _handler(topic: str, fn: TaskFn, _fetch: list[str] | None, retries: int) -> Handler:
        async def run(task: ExternalTask) -> Outcome:
            variables = decode(task.variables)
            job = Job(
                task, variables, dict(task.extension_properties), attempts_left(task, retries)
            )
            with payment_context(variables.get("transactionId") or task.business_key):
                try:
                    result = await fn(job)
                except Exception as exc:  # noqa: BLE001  # the policy: retry, BPMN error or incident
                    return outcome_of(exc, task, retries)
                return result if isinstance(result, Await) else Complete(variables=result)

        run.__name__ = getattr(fn, "__name__", topic)
        return run
