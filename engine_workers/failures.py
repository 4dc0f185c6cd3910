"""How a failed job is reported to Zeebe: retry with backoff, a BPMN error, or an incident.

- `Transient`: the peer did not answer or answered 5xx. Retry with exponential backoff; on the
  last retry, tasks that have a BPMN boundary for it (`unreachable_error`) throw that error so
  the process decides (ask the switch, or end with a reason) instead of stalling.
- `Rejected`: the business said no (insufficient funds, ...). A BPMN error with its code and the
  variables explaining why; never retried.
- Anything else is a bug: fail with retries so it surfaces as an incident for an operator.
A job is never completed when its call failed (PH-EE completes on send and loses errors).
"""

from __future__ import annotations

import logging
from typing import Any

from pyzeebe import Job, JobController

from phee.service import payment_context

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


#: task type -> BPMN error code thrown when its last retry fails transiently
UNREACHABLE_ERRORS = {
    "fspiop-party-lookup": "fspiop-unreachable",
    "fspiop-quote": "fspiop-unreachable",
    "fspiop-transfer": "fspiop-unreachable",
    "fspiop-transfer-status": "fspiop-unreachable",
}


def backoff_ms(retries_left: int, configured: int = 3) -> int:
    """Exponential backoff by attempt number, capped."""
    attempt = max(configured - retries_left, 0)
    return int(min(BACKOFF_BASE_MS * (2**attempt), BACKOFF_MAX_MS))


async def handle(exc: Exception, job: Job, controller: JobController) -> None:
    """pyzeebe exception handler implementing the policy above."""
    with payment_context(job.variables.get("transactionId")):
        await _handle(exc, job, controller)


async def _handle(exc: Exception, job: Job, controller: JobController) -> None:
    if isinstance(exc, Rejected):
        log.info("job %s %s rejected: %s", job.type, job.key, exc)
        await controller.set_error_status(
            str(exc), error_code=exc.error_code, variables=exc.variables
        )
        return
    if isinstance(exc, Transient):
        error_code = UNREACHABLE_ERRORS.get(job.type)
        if job.retries <= 1 and error_code:
            log.warning("job %s %s gave up after retries: %s", job.type, job.key, exc)
            await controller.set_error_status(
                str(exc), error_code=error_code, variables={"lastError": str(exc)}
            )
            return
        log.warning("job %s %s will be retried: %s", job.type, job.key, exc)
        await controller.set_failure_status(str(exc), retry_back_off_ms=backoff_ms(job.retries))
        return
    log.exception("job %s %s failed unexpectedly", job.type, job.key, exc_info=exc)
    await controller.set_failure_status(f"{type(exc).__name__}: {exc}", retry_back_off_ms=1000)
