"""The engine adapter: Operaton's REST API, the only code that talks to the engine.

- `client.EngineClient`: deploy, start, correlate, external tasks, variables, counts (httpx);
- `errors`: every failure as an `EngineError` saying retryable / ambiguous;
- `variables`: Python values <-> Operaton typed variables;
- `outcome`: what a handler decides (`Complete`, `BpmnError`, `Failure`);
- `worker.TaskWorker`: the generic external-task worker loop.
"""

from phee.engine.client import EngineClient, ExternalTask, TopicRequest
from phee.engine.errors import (
    EngineError,
    EngineUnavailable,
    NoMatchingSubscription,
    NotFound,
    OptimisticLockConflict,
    Refused,
)
from phee.engine.outcome import Await, BpmnError, Complete, Failure, Outcome
from phee.engine.worker import Handler, TaskWorker

__all__ = [
    "Await",
    "BpmnError",
    "Complete",
    "EngineClient",
    "EngineError",
    "EngineUnavailable",
    "ExternalTask",
    "Failure",
    "Handler",
    "NoMatchingSubscription",
    "NotFound",
    "OptimisticLockConflict",
    "Outcome",
    "Refused",
    "TaskWorker",
    "TopicRequest",
]
