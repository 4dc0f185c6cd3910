"""Operaton's answers and httpx failures mapped to phee.engine's errors (one place), and the
optimistic-locking retry of complete/correlate. An httpx.MockTransport plays the engine's
status codes only; tests/integration/test_operaton.py meets the real engine."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from phee.engine import (
    EngineClient,
    EngineError,
    EngineUnavailable,
    ExternalTask,
    NoMatchingSubscription,
    NotFound,
    OptimisticLockConflict,
    Refused,
    TopicRequest,
)
from phee.engine.client import lock_lost

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

BASE = "http://engine.test/engine-rest"
OLE = {"type": "OptimisticLockingException", "message": "ENGINE-03005 Execution of 'UPDATE ...'"}
NO_MATCH = {
    "type": "RestException",
    "message": "Cannot correlate message 'callback': No process definition or execution matches "
    "the parameters",
}
TASK = ExternalTask(
    id="t1",
    topic="quote",
    worker_id="w",
    process_instance_id="p",
    process_definition_key="payer",
    execution_id="e",
    activity_id="a",
    business_key="bk",
    retries=None,
    error_message=None,
)

Responder = Callable[[httpx.Request], httpx.Response]


def client_for(respond: Responder, **options: Any) -> EngineClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(respond))
    return EngineClient(BASE, http=http, **options)


def answer(status: int, body: Any = None) -> Responder:
    def respond(_: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status)
        return httpx.Response(status, json=body)

    return respond


def raising(err: type[httpx.TransportError]) -> Responder:
    def respond(request: httpx.Request) -> httpx.Response:
        raise err("boom", request=request)

    return respond


@pytest.mark.parametrize(
    ("status", "body", "cls", "retryable", "ambiguous"),
    [
        (
            404,
            {"type": "RestException", "message": "External task does not exist"},
            NotFound,
            False,
            False,
        ),
        (400, {"type": "InvalidRequestException", "message": "bad"}, Refused, False, False),
        (403, None, Refused, False, False),
        (500, OLE, OptimisticLockConflict, True, False),
        (500, {"type": "ProcessEngineException", "message": "x"}, EngineError, True, True),
        (503, None, EngineError, True, True),
    ],
)
async def test_http_answers(
    status: int, body: Any, cls: type[EngineError], retryable: bool, ambiguous: bool
) -> None:
    client = client_for(answer(status, body), lock_conflict_attempts=1)
    with pytest.raises(EngineError) as caught:
        await client.complete(TASK, {"x": 1})
    err = caught.value
    assert type(err) is cls
    assert (err.status, err.retryable, err.ambiguous) == (status, retryable, ambiguous)
    assert err.kind == (body or {}).get("type", "")


async def test_no_match_only_on_correlate() -> None:
    client = client_for(answer(400, NO_MATCH))
    with pytest.raises(NoMatchingSubscription) as caught:
        await client.correlate("callback", business_key="bk")
    assert (caught.value.retryable, caught.value.ambiguous) == (False, False)
    # The same text elsewhere is a plain refusal.
    with pytest.raises(Refused):
        await client.set_variables("p", {"a": 1})


@pytest.mark.parametrize(
    ("err", "cls", "ambiguous"),
    [
        (httpx.ConnectError, EngineUnavailable, False),
        (httpx.ConnectTimeout, EngineUnavailable, False),
        (httpx.PoolTimeout, EngineUnavailable, False),
        (httpx.ReadTimeout, EngineError, True),
        (httpx.WriteTimeout, EngineError, True),
        (httpx.ReadError, EngineError, True),
        (httpx.RemoteProtocolError, EngineError, True),
    ],
)
async def test_transport_failures(
    err: type[httpx.TransportError], cls: type[EngineError], ambiguous: bool
) -> None:
    client = client_for(raising(err))
    with pytest.raises(EngineError) as caught:
        await client.start("p", business_key="bk", variables={})
    assert type(caught.value) is cls
    assert caught.value.retryable
    assert caught.value.ambiguous is ambiguous
    assert caught.value.status is None
    assert caught.value.kind == err.__name__


async def test_ready_is_false_when_nothing_answers() -> None:
    assert not await client_for(raising(httpx.ConnectError)).ready()
    assert await client_for(answer(200, [{"name": "default"}])).ready()


def flaky(conflicts: int, calls: list[httpx.Request]) -> Responder:
    """Answers OptimisticLockingException `conflicts` times, then 204."""

    def respond(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) <= conflicts:
            return httpx.Response(500, json=OLE)
        return httpx.Response(204)

    return respond


@pytest.mark.parametrize("operation", ["complete", "correlate"])
async def test_lock_conflicts_are_retried_inside(operation: str) -> None:
    calls: list[httpx.Request] = []
    client = client_for(flaky(2, calls), lock_conflict_attempts=3, lock_conflict_backoff_s=0.001)
    if operation == "complete":
        await client.complete(TASK)
    else:
        await client.correlate("callback", business_key="bk")
    assert len(calls) == 3
    assert len({c.content for c in calls}) == 1  # the same request each time
    assert client.lock_conflicts_retried == 2


async def test_lock_conflicts_give_up_after_the_configured_attempts() -> None:
    calls: list[httpx.Request] = []
    client = client_for(flaky(5, calls), lock_conflict_attempts=2, lock_conflict_backoff_s=0.001)
    with pytest.raises(OptimisticLockConflict):
        await client.complete(TASK)
    assert len(calls) == 2
    # Other calls are not retried here: that is the caller's business.
    calls.clear()
    with pytest.raises(OptimisticLockConflict):
        await client.bpmn_error(TASK, code="X", message="m")
    assert len(calls) == 1


async def test_long_poll_timeout_exceeds_the_poll() -> None:
    seen: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])

    client = client_for(respond, timeout_s=2.0)
    got = await client.fetch_and_lock(
        "w", [TopicRequest("quote", 5000, ["a"])], max_tasks=3, async_response_timeout_ms=30_000
    )
    assert got == []
    timeouts = seen[0].extensions["timeout"]
    assert timeouts["read"] > 30
    body = json.loads(seen[0].content)
    assert body["maxTasks"] == 3
    assert body["asyncResponseTimeout"] == 30_000
    assert body["topics"] == [
        {
            "topicName": "quote",
            "lockDuration": 5000,
            "includeExtensionProperties": True,
            "variables": ["a"],
        }
    ]


async def test_requests_carry_typed_variables() -> None:
    seen: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "pi-1"})

    client = client_for(respond)
    assert (
        await client.start("payer", business_key="tx", variables={"q": {"b": 1, "a": 2}}) == "pi-1"
    )
    body = json.loads(seen[0].content)
    assert seen[0].url.path == "/engine-rest/process-definition/key/payer/start"
    assert body == {
        "businessKey": "tx",
        "variables": {"q": {"value": '{"a":2,"b":1}', "type": "String"}},
    }


def test_lock_lost() -> None:
    assert lock_lost(NotFound("gone", status=404))
    assert lock_lost(
        Refused(
            "External task t1 cannot be completed by worker 'a'. It is locked by worker 'b'.",
            status=400,
        )
    )
    assert not lock_lost(Refused("bad variables", status=400))
    assert not lock_lost(EngineUnavailable("down"))


def test_errors_print_their_flags() -> None:
    text = repr(OptimisticLockConflict("x", status=500, kind="OptimisticLockingException"))
    assert "retryable=True" in text
    assert "ambiguous=False" in text
