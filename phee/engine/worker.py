"""A generic external-task worker: fetch, run handlers concurrently, report their outcomes.

`TaskWorker.run` long-polls fetchAndLock only while it has free slots (maxTasks = free slots),
runs each task's handler as its own asyncio task, extends the lock of handlers that run long
(every half lock), and reports the handler's `Outcome` (complete / bpmnError / failure),
retrying transient engine errors. An exception escaping a handler is a defect: it is reported
as a Failure with 0 retries, so the engine raises an incident. A report that finds the task
gone or locked by another worker means our lock was lost (the engine handed the task to
someone else after it expired): that is logged, not raised; the engine's at-least-once
delivery is why handlers must be idempotent.

`stop()` stops fetching (a long poll under way is cancelled: tasks it would have locked go
to another fetch when their lock expires), lets the handlers in flight finish and report,
then `run` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from phee.engine.client import EngineClient, ExternalTask, TopicRequest, lock_lost
from phee.engine.errors import EngineError
from phee.engine.outcome import Await, BpmnError, Complete, Failure, Outcome

log = logging.getLogger("phee.engine.worker")

Handler = Callable[[ExternalTask], Awaitable[Outcome]]


def _transient(err: BaseException) -> bool:
    return isinstance(err, EngineError) and err.retryable


class TaskWorker:
    """Runs `handlers` (topic -> handler) for external tasks of one engine."""

    def __init__(
        self,
        client: EngineClient,
        worker_id: str,
        handlers: Mapping[str, Handler],
        *,
        max_in_flight: int = 8,
        lock_ms: int = 30_000,
        long_poll_ms: int = 20_000,
        fetch_variables: Mapping[str, list[str] | None] | None = None,
        lock_ms_by_topic: Mapping[str, int] | None = None,
        report_attempts: int = 6,
        fetch_backoff_s: float = 1.0,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if not handlers:
            raise ValueError("a worker needs at least one handler")
        self.client = client
        self.worker_id = worker_id
        self.handlers = dict(handlers)
        self.max_in_flight = max_in_flight
        self.lock_ms = lock_ms
        self.long_poll_ms = long_poll_ms
        variables = fetch_variables or {}
        locks = lock_ms_by_topic or {}
        self.topics = [
            TopicRequest(t, locks.get(t, lock_ms), variables.get(t)) for t in self.handlers
        ]
        self._lock_of = {t.topic: t.lock_duration_ms for t in self.topics}
        self.report_attempts = max(1, report_attempts)
        self.fetch_backoff_s = fetch_backoff_s
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        #: counts for tests and logs
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "fetched",
                "completed",
                "bpmn_errors",
                "failures",
                "awaiting",
                "ended",
                "lost",
                "unreported",
            ),
            0,
        )

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def stop(self) -> None:
        """Ask `run` to stop fetching and return once the handlers in flight are done."""
        self._stopping.set()

    async def run(self) -> None:
        """Fetch and handle tasks until `stop()`; then finish what is in flight."""
        stop_wait: asyncio.Future[Any] = asyncio.ensure_future(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                free = self.max_in_flight - len(self._in_flight)
                if free <= 0:
                    any_of: set[asyncio.Future[Any]] = {*self._in_flight, stop_wait}
                    await asyncio.wait(any_of, return_when=asyncio.FIRST_COMPLETED)
                    continue
                tasks = await self._fetch(free, stop_wait)
                for task in tasks:
                    self._spawn(task)
            if self._in_flight:
                await asyncio.wait(set(self._in_flight))
        finally:
            stop_wait.cancel()

    async def _fetch(self, free: int, stop_wait: asyncio.Future[Any]) -> list[ExternalTask]:
        """One long poll, cancelled by stop(); [] after an engine error (logged, backed off)."""
        fetch = asyncio.ensure_future(
            self.client.fetch_and_lock(
                self.worker_id,
                self.topics,
                max_tasks=free,
                async_response_timeout_ms=self.long_poll_ms,
            )
        )
        either: set[asyncio.Future[Any]] = {fetch, stop_wait}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not fetch.done():
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError, EngineError):
                await fetch
            # the engine still holds the poll we walked away from: end it, or it locks the
            # next task for nobody until that task's lock runs out
            try:
                await self.client.end_long_poll(self.worker_id)
            except EngineError as err:
                log.warning("ending the long poll of %s failed: %r", self.worker_id, err)
            return []
        try:
            tasks = fetch.result()
        except EngineError as err:
            log.warning(
                "fetchAndLock failed (%r); trying again in %.1f s", err, self.fetch_backoff_s
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(stop_wait), self.fetch_backoff_s)
            return []
        self.stats["fetched"] += len(tasks)
        return tasks

    def _spawn(self, task: ExternalTask) -> None:
        running = asyncio.create_task(self._handle(task), name=f"task-{task.topic}-{task.id}")
        self._in_flight.add(running)
        running.add_done_callback(self._in_flight.discard)

    async def _handle(self, task: ExternalTask) -> None:
        handler = self.handlers.get(task.topic)
        keeper = asyncio.create_task(self._keep_lock(task))
        try:
            if handler is None:
                outcome: Outcome = Failure(f"no handler for topic {task.topic!r}", retries=0)
            else:
                outcome = await handler(task)
        except Exception as err:
            log.exception("handler for %s failed on task %s", task.topic, task.id)
            outcome = Failure(
                f"{type(err).__name__}: {err}", retries=0, details=traceback.format_exc()
            )
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        await self._report(task, outcome)

    async def _keep_lock(self, task: ExternalTask) -> None:
        """Extend the lock every half lock while the handler runs; stop when it is lost."""
        while True:
            lock_ms = self._lock_of.get(task.topic, self.lock_ms)
            await asyncio.sleep(lock_ms / 2000)
            try:
                await self.client.extend_lock(task, lock_ms)
            except EngineError as err:
                if lock_lost(err):
                    log.warning("lock of task %s (%s) lost: %s", task.id, task.topic, err)
                    return
                log.warning("extending the lock of task %s failed: %r", task.id, err)

    async def _report(self, task: ExternalTask, outcome: Outcome) -> None:
        if isinstance(outcome, Await):
            self.stats["awaiting"] += 1
            return
        retrying = AsyncRetrying(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(self.report_attempts),
            wait=wait_random_exponential(multiplier=0.2, max=5.0),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._send(task, outcome)
        except EngineError as err:
            if err.status == 404:
                # The task is gone: an event interrupted it (the answer to the request this
                # task sent, taken by a boundary event), its instance ended, or an earlier
                # ambiguous attempt of this report took effect. Nothing is left to report.
                self.stats["ended"] += 1
                log.info("task %s (%s) ended before its report", task.id, task.topic)
                return
            if lock_lost(err):
                # An earlier ambiguous attempt may have taken effect, or the lock expired.
                self.stats["lost"] += 1
                log.warning(
                    "task %s (%s): lock lost before the report: %s", task.id, task.topic, err
                )
                return
            self.stats["unreported"] += 1
            log.error(
                "task %s (%s): could not report %s: %r; the engine hands it out again when "
                "its lock expires",
                task.id,
                task.topic,
                type(outcome).__name__,
                err,
            )
            return
        key = {Complete: "completed", BpmnError: "bpmn_errors", Failure: "failures"}
        self.stats[key[type(outcome)]] += 1

    async def _send(self, task: ExternalTask, outcome: Outcome) -> None:
        if isinstance(outcome, Complete):
            await self.client.complete(task, outcome.variables)
        elif isinstance(outcome, BpmnError):
            await self.client.bpmn_error(
                task, code=outcome.code, message=outcome.message, variables=outcome.variables
            )
        elif isinstance(outcome, Failure):
            await self.client.failure(
                task,
                message=outcome.message,
                details=outcome.details,
                retries=outcome.retries,
                retry_timeout_ms=outcome.retry_timeout_ms,
            )
