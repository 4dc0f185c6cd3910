"""What an external-task handler decides: complete, raise a BPMN error, report a failure, or
leave the task to the answer it awaits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Complete:
    """The task is done; `variables` are set on the process instance."""

    variables: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BpmnError:
    """A business error the model catches (an error boundary event or event subprocess)."""

    code: str
    message: str = ""
    variables: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Failure:
    """A technical failure: the engine retries after `retry_timeout_ms` while `retries` > 0;
    at 0 it raises an incident (an operator must look)."""

    message: str
    retries: int
    retry_timeout_ms: int = 0
    details: str | None = None


@dataclass(frozen=True)
class Await:
    """The task sent its request and stays locked: the answer ends it (a message boundary event
    on the task), or a timer boundary event does. Nothing is reported. If neither comes before
    the lock expires, the engine hands the task out again and its kept request is resent.

    Completing instead would race the answer on the same execution (an optimistic-locking
    conflict for nearly every fast answer), so a task that awaits an answer is never completed.
    """


Outcome = Complete | BpmnError | Failure | Await
