"""Registering job handlers that take the whole Job, with a restricted variable fetch.

No `from __future__ import annotations` here: pyzeebe recognises the Job parameter by comparing
the annotation object with its Job class. With `variables_to_fetch`, pyzeebe also passes every
fetched variable as a keyword argument; the wrapper takes and ignores them (the handler reads
them from `job.variables`, like every other handler).
"""

from collections.abc import Awaitable, Callable
from typing import Any

from pyzeebe import Job, ZeebeWorker

from phee.service import payment_context

Handler = Callable[[Job], Awaitable[dict[str, Any]]]


def add_task(
    worker: ZeebeWorker,
    task_type: str,
    handler: Handler,
    max_jobs: int,
    fetch: list[str] | None = None,
) -> None:
    """Register `handler` for `task_type`; `fetch` names the variables it needs (None: all)."""

    async def run(job: Job, **_fetched: Any) -> dict[str, Any]:
        with payment_context(job.variables.get("transactionId")):
            return await handler(job)

    run.__name__ = getattr(handler, "__name__", task_type)
    decorate = worker.task(
        task_type=task_type,
        max_jobs_to_activate=max_jobs,
        max_running_jobs=max_jobs,
        variables_to_fetch=fetch,
    )
    decorate(run)  # type: ignore[arg-type]  # pyzeebe's ParamSpec union is too loose for mypy
