"""How a task's failure is reported to the engine: retry with backoff, a BPMN error, or an incident.

- `Transient`: the peer did not answer or answered 5xx. Report a failure with one retry fewer
  and an exponential backoff; on the last attempt, tasks that have a BPMN boundary for it
  (`UNREACHABLE_ERRORS`) throw that error so the process decides (wait and ask the switch, or end
  with a reason) instead of stalling in an incident.
- `Rejected`: the business or the switch said no. A BPMN error with its code and the variables
  explaining why; never retried.
- Anything else is a defect: a failure with no retries left, i.e. an incident for an operator.
A task is never completed when its call failed.
"""

from __future__ import annotations

import logging
from typing import Any

from phee.engine import BpmnError, ExternalTask, Failure, Outcome

log = logging.getLogger("engine_workers.failures")

BACKOFF_BASE_MS = 500
BACKOFF_MAX_MS = 10_000


class Transient(Exception):
    """A call that may succeed later."""


class Rejected(Exception):
    """A business refusal: becomes the BPMN error `error_code` with `variables`."""

    def __init__(self, error_code: str, message: str, variables: dict[str, Any]) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.variables = variables


class GiveUp(Exception):
    """End the task with the BPMN error `error_code` now (for example a duplicate instance)."""

    def __init__(
        self, error_code: str, message: str, variables: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.variables = variables or {}


#: topic -> BPMN error thrown when its last attempt fails transiently
UNREACHABLE_ERRORS = {
    "fspiop-party-lookup": "fspiop-unreachable",
    "fspiop-quote": "fspiop-unreachable",
    "fspiop-transfer": "fspiop-unreachable",
    "fspiop-transfer-status": "fspiop-unreachable",
}


def attempts_left(task: ExternalTask, configured: int) -> int:
    """Attempts left including this one (the engine reports no retries before the first failure)."""
    return configured if task.retries is None else max(task.retries, 0)


def is_last_attempt(task: ExternalTask, configured: int) -> bool:
    return attempts_left(task, configured) <= 1


def backoff_ms(retries_left: int, configured: int) -> int:
    """Exponential backoff by attempt number, capped."""
    attempt = max(configured - retries_left, 0)
    return int(min(BACKOFF_BASE_MS * (2**attempt), BACKOFF_MAX_MS))


def outcome_of(exc: Exception, task: ExternalTask, configured: int) -> Outcome:
    """The policy above, for `exc` raised by the handler of `task`."""
    if isinstance(exc, GiveUp):
        log.info("task %s %s ends: %s", task.topic, task.id, exc)
        return BpmnError(code=exc.error_code, message=str(exc), variables=exc.variables)
    if isinstance(exc, Rejected):
        log.info("task %s %s rejected: %s", task.topic, task.id, exc)
        return BpmnError(code=exc.error_code, message=str(exc), variables=exc.variables)
    if isinstance(exc, Transient):
        left = attempts_left(task, configured)
        error_code = UNREACHABLE_ERRORS.get(task.topic)
        if left <= 1 and error_code:
            log.warning("task %s %s gave up after retries: %s", task.topic, task.id, exc)
            return BpmnError(code=error_code, message=str(exc), variables={"lastError": str(exc)})
        log.warning("task %s %s will be retried: %s", task.topic, task.id, exc)
        return Failure(
            message=str(exc),
            retries=max(left - 1, 0),
            retry_timeout_ms=backoff_ms(left, configured),
        )
    log.error("task %s %s failed unexpectedly", task.topic, task.id, exc_info=exc)
    return Failure(message=f"{type(exc).__name__}: {exc}", retries=0, retry_timeout_ms=0)
