"""What an external-task handler decides: complete, raise a BPMN error, or report a failure."""

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


Outcome = Complete | BpmnError | Failure
