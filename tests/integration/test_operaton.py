"""The engine adapter (phee.engine) against a real Operaton over PostgreSQL.

One engine (one node, a second added for the two-node test) for the module. The fixture calls
the component's fetch, so a broken `engine/` build fails here loudly (the first run builds it).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import psycopg
import pytest

from harness.components.operaton import ENGINE_DB, Operaton, RunningEngine, start_engine
from phee.engine import (
    Await,
    BpmnError,
    Complete,
    EngineClient,
    EngineError,
    EngineUnavailable,
    ExternalTask,
    Failure,
    NoMatchingSubscription,
    NotFound,
    TaskWorker,
    TopicRequest,
)
from tests.conftest import STARTED
from tests.support import apoll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

PROCESS = "phee_engine_test"
TOPIC = "phee-test-work"
#: a small model: an external task (BPMN error REJECTED caught), a 3 s timer, a message catch
#: "proceed", and a non-interrupting message event subprocess "callback"
MODEL = b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  xmlns:camunda="http://camunda.org/schema/1.0/bpmn"
                  id="engineTestDefinitions" targetNamespace="http://phee.local/test">
  <bpmn:message id="msgProceed" name="proceed"/>
  <bpmn:message id="msgCallback" name="callback"/>
  <bpmn:error id="errRejected" name="rejected" errorCode="REJECTED"/>
  <bpmn:process id="phee_engine_test" isExecutable="true" camunda:historyTimeToLive="P1D">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="toWork" sourceRef="start" targetRef="work"/>
    <bpmn:serviceTask id="work" camunda:type="external" camunda:topic="phee-test-work">
      <bpmn:extensionElements>
        <camunda:properties>
          <camunda:property name="step" value="work"/>
        </camunda:properties>
      </bpmn:extensionElements>
    </bpmn:serviceTask>
    <bpmn:boundaryEvent id="rejected" attachedToRef="work">
      <bpmn:errorEventDefinition errorRef="errRejected"/>
    </bpmn:boundaryEvent>
    <bpmn:sequenceFlow id="toEndRejected" sourceRef="rejected" targetRef="endRejected"/>
    <bpmn:endEvent id="endRejected"/>
    <bpmn:sequenceFlow id="toPause" sourceRef="work" targetRef="pause"/>
    <bpmn:intermediateCatchEvent id="pause">
      <bpmn:timerEventDefinition>
        <bpmn:timeDuration>PT3S</bpmn:timeDuration>
      </bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="toWaitProceed" sourceRef="pause" targetRef="waitProceed"/>
    <bpmn:intermediateCatchEvent id="waitProceed">
      <bpmn:messageEventDefinition messageRef="msgProceed"/>
    </bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="toEnd" sourceRef="waitProceed" targetRef="end"/>
    <bpmn:endEvent id="end"/>
    <bpmn:subProcess id="callbacks" triggeredByEvent="true">
      <bpmn:startEvent id="callbackStart" isInterrupting="false">
        <bpmn:messageEventDefinition messageRef="msgCallback"/>
      </bpmn:startEvent>
      <bpmn:sequenceFlow id="toCallbackEnd" sourceRef="callbackStart" targetRef="callbackEnd"/>
      <bpmn:endEvent id="callbackEnd"/>
    </bpmn:subProcess>
  </bpmn:process>
</bpmn:definitions>
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    component = Operaton()
    component.fetch()  # builds engine/ on the first run: a failed build fails the module
    # pg_stat_statements shows what the engine's sessions ran (their first SET included)
    started = start_engine(
        tmp_path_factory.mktemp("operaton"),
        "operaton",
        nodes=1,
        pg_settings={"shared_preload_libraries": "pg_stat_statements"},
    )
    STARTED.extend([started.postgres, started.running()])
    print(f"engine ready in {started.ready_s[0]:.1f} s, RSS {started.rss_mb()[0]:.0f} MB")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
async def client(engine: RunningEngine) -> AsyncIterator[EngineClient]:
    async with EngineClient(engine.rest_urls[0]) as c:
        versions = await c.deploy("phee-engine-test", {"engine-test.bpmn": MODEL})
        assert versions == {PROCESS: 1}  # unchanged redeploys keep version 1
        yield c


def key() -> str:
    return f"bk-{uuid.uuid4().hex[:12]}"


async def fetch_one(client: EngineClient, business_key: str, worker: str = "w1") -> ExternalTask:
    """Lock this instance's task (topic filtered by business key), waiting for it."""

    async def once() -> ExternalTask | None:
        tasks = await client.fetch_and_lock(
            worker,
            [TopicRequest(TOPIC, 30_000, None, business_key=business_key)],
            max_tasks=1,
            async_response_timeout_ms=2_000,
        )
        return tasks[0] if tasks else None

    return await apoll(once, what=f"a task of {business_key}", deadline_s=30)


async def test_start_fetch_and_complete_then_timer_and_message(client: EngineClient) -> None:
    bk, transfer = key(), str(uuid.uuid4())
    pid = await client.start(
        PROCESS, business_key=bk, variables={"transferId": transfer, "amount": 12.5, "n": 3}
    )
    assert await client.running_instances(business_key=bk) == [pid]
    assert await client.running_instances(business_key=bk, process_key="other") == []

    task = await fetch_one(client, bk)
    assert (task.process_instance_id, task.business_key, task.topic) == (pid, bk, TOPIC)
    assert task.process_definition_key == PROCESS
    assert task.activity_id == "work"
    assert task.worker_id == "w1"
    assert task.extension_properties == {"step": "work"}
    assert task.variables == {"transferId": transfer, "amount": 12.5, "n": 3}

    await client.complete(task, {"quote": {"b": 2, "a": [1, None]}, "ok": True})
    stored = await client.get_variables(pid)
    assert stored["quote"] == '{"a":[1,null],"b":2}'
    assert stored["ok"] is True

    # The timer (3 s, fired by the job executor) stands before the "proceed" catch.
    async def proceed() -> bool:
        try:
            await client.correlate("proceed", business_key=bk)
        except NoMatchingSubscription:
            return False
        return True

    await apoll(
        proceed, what="the timer fired and proceed was taken", deadline_s=60, interval_s=0.5
    )
    assert await client.running_instances(business_key=bk) == []
    (hist,) = await client.historic_instances(business_key=bk)
    assert hist["id"] == pid
    assert hist["state"] == "COMPLETED"
    assert hist["processDefinitionKey"] == PROCESS
    assert hist["endTime"] is not None
    # The instance has ended: a late callback finds no subscription.
    with pytest.raises(NoMatchingSubscription) as caught:
        await client.correlate("callback", business_key=bk, variables={"late": True})
    assert not caught.value.retryable
    assert caught.value.status == 400


async def test_bpmn_error_ends_on_the_error_path(client: EngineClient) -> None:
    bk = key()
    pid = await client.start(PROCESS, business_key=bk, variables={"transferId": "x"})
    task = await fetch_one(client, bk)
    await client.bpmn_error(task, code="REJECTED", message="payee refused", variables={"why": "no"})
    (hist,) = await client.historic_instances(business_key=bk)
    assert (hist["id"], hist["state"]) == (pid, "COMPLETED")
    assert await client.running_instances(business_key=bk) == []


async def test_failure_with_retries_then_an_incident(client: EngineClient) -> None:
    before = await client.count(process_key=PROCESS, incidents=True)
    bk = key()
    await client.start(PROCESS, business_key=bk, variables={})
    task = await fetch_one(client, bk)
    await client.failure(
        task, message="switch down", details="trace", retries=1, retry_timeout_ms=0
    )
    again = await fetch_one(client, bk)
    assert again.id == task.id
    assert again.retries == 1
    assert again.error_message == "switch down"
    await client.failure(again, message="still down", details=None, retries=0, retry_timeout_ms=0)
    assert await client.count(process_key=PROCESS, incidents=True) == before + 1
    assert await client.count(incidents=True) >= before + 1
    # With no retries left nothing is handed out any more.
    none = await client.fetch_and_lock(
        "w1",
        [TopicRequest(TOPIC, 10_000, business_key=bk)],
        max_tasks=1,
        async_response_timeout_ms=0,
    )
    assert none == []


async def test_correlate_by_business_key_and_by_correlation_key(client: EngineClient) -> None:
    bk, transfer = key(), str(uuid.uuid4())
    pid = await client.start(PROCESS, business_key=bk, variables={"transferId": transfer})
    running = await client.count(process_key=PROCESS)
    assert running >= 1
    await client.correlate("callback", business_key=bk, variables={"quoteCallback": {"x": 1}})
    await client.correlate(
        "callback", correlation_keys={"transferId": transfer}, variables={"transferCallback": "ok"}
    )
    await client.correlate("callback", process_instance_id=pid, variables={"third": 3})
    stored = await client.get_variables(pid)
    assert stored["quoteCallback"] == '{"x":1}'
    assert stored["transferCallback"] == "ok"
    assert stored["third"] == 3
    await client.set_variables(pid, {"third": None, "extra": 1.5})
    stored = await client.get_variables(pid)
    assert stored["third"] is None
    assert stored["extra"] == 1.5
    # The event subprocess is non-interrupting: the instance still runs.
    assert await client.running_instances(business_key=bk) == [pid]


async def test_racing_callbacks_on_one_instance_all_land(
    engine: RunningEngine, client: EngineClient
) -> None:
    bk = key()
    pid = await client.start(PROCESS, business_key=bk, variables={})
    count = 12
    async with EngineClient(
        engine.rest_urls[0], lock_conflict_attempts=20, lock_conflict_backoff_s=0.02
    ) as racing:
        await asyncio.gather(
            *(
                racing.correlate("callback", process_instance_id=pid, variables={f"cb{n}": n})
                for n in range(count)
            )
        )
        print(f"optimistic-lock conflicts retried: {racing.lock_conflicts_retried}")
    stored = await client.get_variables(pid)
    assert {f"cb{n}": stored.get(f"cb{n}") for n in range(count)} == {
        f"cb{n}": n for n in range(count)
    }


async def test_no_subscription_is_refused(client: EngineClient) -> None:
    bk = key()
    pid = await client.start(PROCESS, business_key=bk, variables={})
    # The instance waits at the external task, not at "proceed".
    with pytest.raises(NoMatchingSubscription) as caught:
        await client.correlate("proceed", process_instance_id=pid)
    assert caught.value.status == 400
    assert caught.value.kind == "RestException", repr(caught.value)
    assert "No process definition or execution matches" in str(caught.value)
    assert not caught.value.ambiguous
    with pytest.raises(NoMatchingSubscription):
        await client.correlate("callback", business_key=key())


async def test_task_worker_runs_handlers(client: EngineClient) -> None:
    keys = [key() for _ in range(4)]
    for i, bk in enumerate(keys):
        await client.start(PROCESS, business_key=bk, variables={"i": i})
    seen: list[str] = []

    async def handle(task: ExternalTask) -> Complete | BpmnError | Failure:
        seen.append(str(task.business_key))
        i = task.variables["i"]
        if i == 0:
            return BpmnError("REJECTED", "no")
        if i == 1:
            raise RuntimeError("a defect")
        return Complete({"handled": i})

    worker = TaskWorker(
        client, "worker-test", {TOPIC: handle}, max_in_flight=2, lock_ms=10_000, long_poll_ms=1_000
    )
    running = asyncio.create_task(worker.run())
    await apoll(
        lambda: asyncio.sleep(0, result=set(keys) <= set(seen)),
        what="the worker handled all four",
        deadline_s=60,
    )
    worker.stop()
    await asyncio.wait_for(running, 30)
    assert worker.stats["bpmn_errors"] >= 1
    assert worker.stats["failures"] >= 1  # the defect became an incident
    assert worker.stats["completed"] >= 2
    incidents = await client.count(process_key=PROCESS, incidents=True)
    assert incidents >= 1
    (rejected,) = await client.historic_instances(business_key=keys[0])
    assert rejected["state"] == "COMPLETED"


async def test_task_worker_keeps_long_locks_and_stops_gracefully(client: EngineClient) -> None:
    bk = key()
    pid = await client.start(PROCESS, business_key=bk, variables={})
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(task: ExternalTask) -> Complete:
        started.set()
        await release.wait()
        return Complete({"slow": True})

    worker = TaskWorker(
        client, "worker-slow", {TOPIC: slow}, max_in_flight=1, lock_ms=1_000, long_poll_ms=500
    )
    # Only this test's instance: other tests leave tasks of the same topic behind.
    worker.topics = [TopicRequest(TOPIC, 1_000, None, business_key=bk)]
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 30)
    worker.stop()  # asked to stop while the handler runs: it must finish and report first
    await apoll(
        lambda: asyncio.sleep(0, result=worker.stats["fetched"] == 1),
        what="the slow task fetched",
        deadline_s=10,
    )
    # Three lock durations later the lock still holds: the worker extended it.
    await asyncio.sleep(3)  # the duration under test, not a synchronisation
    stolen = await client.fetch_and_lock(
        "thief",
        [TopicRequest(TOPIC, 1_000, business_key=bk)],
        max_tasks=1,
        async_response_timeout_ms=0,
    )
    assert stolen == []
    assert not running.done()
    release.set()
    await asyncio.wait_for(running, 30)
    assert worker.stats["completed"] == 1
    assert worker.in_flight == 0
    assert (await client.get_variables(pid))["slow"] is True


async def test_a_long_poll_left_behind_is_ended_by_its_worker(client: EngineClient) -> None:
    """A fetch its caller walked away from stays pending in the engine and would lock the next
    task for nobody; the same workerId's end_long_poll ends it (unique worker requests)."""
    topic = f"phee-test-idle-{uuid.uuid4().hex[:8]}"  # no task ever has it
    left = asyncio.create_task(
        client.fetch_and_lock(
            "worker-gone",
            [TopicRequest(topic, 30_000)],
            max_tasks=1,
            async_response_timeout_ms=120_000,
        )
    )

    async def ended() -> bool | None:
        # the first end may reach the engine before the poll it is meant for: send it again
        await client.end_long_poll("worker-gone")
        done, _ = await asyncio.wait({left}, timeout=0.5)
        return True if done else None

    await apoll(ended, what="the pending long poll ended", deadline_s=30)
    with pytest.raises(EngineError) as failed:
        left.result()
    assert failed.value.status == 503  # the engine cancelled it: nothing was locked for it
    # ending a poll that does not exist is harmless, and locks nothing
    await client.end_long_poll("worker-never-polled")


async def test_two_nodes_on_one_database_then_a_stopped_node(
    engine: RunningEngine, client: EngineClient
) -> None:
    second_url = engine.add_node()
    try:
        # A fresh JVM's first calls (definition cache, JIT) can take seconds on a busy machine.
        async with EngineClient(second_url, timeout_s=30.0) as second:
            assert await second.ready()
            bk1, bk2 = key(), key()
            await client.start(PROCESS, business_key=bk1, variables={})
            await second.start(PROCESS, business_key=bk2, variables={})
            # Each node locks the task the other started: one database, two nodes.
            on_second = await fetch_one(second, bk1, worker="w-second")
            on_first = await fetch_one(client, bk2, worker="w-first")
            await second.complete(on_second)
            await client.complete(on_first)
            assert (on_second.business_key, on_first.business_key) == (bk1, bk2)

            engine.kill_node(len(engine.nodes) - 1)
            assert not await second.ready()
            with pytest.raises(EngineUnavailable) as caught:
                await second.fetch_and_lock(
                    "w-second",
                    [TopicRequest(TOPIC, 1_000)],
                    max_tasks=1,
                    async_response_timeout_ms=0,
                )
            assert caught.value.retryable
            assert not caught.value.ambiguous
            assert await client.ready()  # the first node still serves

            # Restarted on its old port, the node serves again.
            ready_s = engine.restart_node(len(engine.nodes) - 1)
            assert ready_s > 0
            assert await second.ready()
            bk3 = key()
            await client.start(PROCESS, business_key=bk3, variables={})
            again = await fetch_one(second, bk3, worker="w-second")
            await second.complete(again)
    finally:
        engine.remove_node(len(engine.nodes) - 1)


AWAIT_PROCESS = "phee_await_test"
AWAIT_TOPIC = "phee-test-send"
#: a sending task whose answer (message "answer", an interrupting boundary event) ends it
AWAIT_MODEL = b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  xmlns:camunda="http://camunda.org/schema/1.0/bpmn"
                  id="awaitTestDefinitions" targetNamespace="http://phee.local/test">
  <bpmn:message id="msgAnswer" name="answer"/>
  <bpmn:process id="phee_await_test" isExecutable="true" camunda:historyTimeToLive="P1D">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="toSend" sourceRef="start" targetRef="send"/>
    <bpmn:serviceTask id="send" camunda:type="external" camunda:topic="phee-test-send"/>
    <bpmn:boundaryEvent id="answered" attachedToRef="send">
      <bpmn:messageEventDefinition messageRef="msgAnswer"/>
    </bpmn:boundaryEvent>
    <bpmn:sequenceFlow id="toEndAnswered" sourceRef="answered" targetRef="endAnswered"/>
    <bpmn:endEvent id="endAnswered"/>
    <bpmn:sequenceFlow id="toEndCompleted" sourceRef="send" targetRef="endCompleted"/>
    <bpmn:endEvent id="endCompleted"/>
  </bpmn:process>
</bpmn:definitions>
"""


async def test_an_awaiting_task_is_ended_by_its_answer_and_a_late_report_is_dropped(
    client: EngineClient,
) -> None:
    await client.deploy("phee-await-test", {"await-test.bpmn": AWAIT_MODEL})
    awaiting, completing = key(), key()
    for bk in (awaiting, completing):
        await client.start(AWAIT_PROCESS, business_key=bk, variables={})
    sent: set[str] = set()
    answered = asyncio.Event()

    async def send(task: ExternalTask) -> Await | Complete:
        sent.add(str(task.business_key))
        if task.business_key == awaiting:
            return Await()
        await answered.wait()  # the answer overtakes this task's completion
        return Complete({"late": True})

    worker = TaskWorker(
        client,
        "worker-await",
        {AWAIT_TOPIC: send},
        max_in_flight=2,
        lock_ms=10_000,
        long_poll_ms=500,
        lock_ms_by_topic={AWAIT_TOPIC: 60_000},
    )
    assert [t.lock_duration_ms for t in worker.topics] == [60_000]  # the topic's own lock
    running = asyncio.create_task(worker.run())
    await apoll(
        lambda: asyncio.sleep(0, result=sent == {awaiting, completing}),
        what="both requests sent",
        deadline_s=30,
    )
    assert worker.stats["awaiting"] == 1
    # Left locked, not completed: its instance still waits in the sending task.
    assert len(await client.running_instances(business_key=awaiting)) == 1
    for bk in (awaiting, completing):
        await client.correlate("answer", business_key=bk, variables={"answerOk": True})
    answered.set()
    await apoll(
        lambda: asyncio.sleep(0, result=worker.stats["ended"] == 1),
        what="the late completion found its task gone",
        deadline_s=30,
    )
    worker.stop()
    await asyncio.wait_for(running, 30)
    assert worker.stats["completed"] == 0
    for bk in (awaiting, completing):
        (done,) = await client.historic_instances(business_key=bk)
        assert done["state"] == "COMPLETED"
        ends = await client._call(
            "GET",
            "/history/activity-instance",
            what="end events",
            params={"processInstanceId": done["id"], "activityType": "noneEndEvent"},
        )
        assert [e["activityId"] for e in ends] == ["endAnswered"]


async def test_correlation_by_a_variable_reads_the_hash_index(
    engine: RunningEngine, client: EngineClient
) -> None:
    """The engine adds a hash index on the runtime variables' text (decision 0023), and
    PostgreSQL uses it for the correlation-key lookup once the table holds many instances."""
    wanted = str(uuid.uuid4())
    for n in range(150):
        await client.start(
            PROCESS,
            business_key=key(),
            variables={"transferId": wanted if n == 75 else str(uuid.uuid4()), "note": "x" * 50},
        )
    conninfo = f"host=127.0.0.1 port={engine.sql_port} user=postgres dbname={ENGINE_DB}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        method = conn.execute(
            "select am.amname from pg_class c join pg_am am on am.oid = c.relam "
            "where c.relname = 'phee_idx_ru_var_text'"
        ).fetchone()
        assert method == ("hash",)
        conn.execute("analyze act_ru_variable")
        plan = conn.execute(
            "explain (format json) select id_ from act_ru_variable where name_ = 'transferId' "
            "and task_id_ is null and type_ = 'string' and text_ = %s",
            (wanted,),
        ).fetchone()
    assert plan is not None
    assert "phee_idx_ru_var_text" in json.dumps(plan[0])
    await client.correlate(
        "callback", correlation_keys={"transferId": wanted}, variables={"transferCallback": "ok"}
    )


#: a message catch, then a gateway that reads a flag the correlation brings
FLAG_MODEL = b"""<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL"
             xmlns:operaton="http://operaton.org/schema/1.0/bpmn"
             xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
             id="flagDefinitions" targetNamespace="http://phee.local/test">
  <message id="msgAnswer" name="answer"/>
  <process id="phee_flag_test" isExecutable="true" operaton:historyTimeToLive="P1D">
    <startEvent id="start"/>
    <sequenceFlow id="toWait" sourceRef="start" targetRef="wait"/>
    <intermediateCatchEvent id="wait">
      <messageEventDefinition messageRef="msgAnswer"/>
    </intermediateCatchEvent>
    <sequenceFlow id="toGate" sourceRef="wait" targetRef="gate"/>
    <exclusiveGateway id="gate" default="toNo"/>
    <sequenceFlow id="toYes" sourceRef="gate" targetRef="yes">
      <conditionExpression xsi:type="tFormalExpression">${answerOk}</conditionExpression>
    </sequenceFlow>
    <sequenceFlow id="toNo" sourceRef="gate" targetRef="no"/>
    <serviceTask id="yes" operaton:type="external" operaton:topic="phee-flag-yes"/>
    <serviceTask id="no" operaton:type="external" operaton:topic="phee-flag-no"/>
  </process>
</definitions>
"""


@pytest.mark.parametrize("ok", [True, False])
async def test_a_transient_flag_steers_the_gateway_and_is_stored_nowhere(
    client: EngineClient, ok: bool
) -> None:
    """What the router does with the payer's party and quote flags (contract.TRANSIENT_FLAGS)."""
    await client.deploy("phee-flag-test", {"flag-test.bpmn": FLAG_MODEL})
    bk = key()
    pid = await client.start("phee_flag_test", business_key=bk, variables={})
    await client.correlate(
        "answer",
        business_key=bk,
        variables={"answer": {"ok": ok}, "answerOk": ok},
        transient={"answerOk"},
    )
    topic = "phee-flag-yes" if ok else "phee-flag-no"

    async def taken() -> list[ExternalTask] | None:
        tasks = await client.fetch_and_lock(
            "w-flag",
            [TopicRequest(topic, 30_000, None, business_key=bk)],
            max_tasks=1,
            async_response_timeout_ms=1_000,
        )
        return tasks or None

    (task,) = await apoll(taken, what=f"the {topic} task of {bk}", deadline_s=30)
    assert task.process_instance_id == pid
    stored = await client.get_variables(pid)
    assert stored == {"answer": '{"ok":' + ("true" if ok else "false") + "}"}


async def test_a_start_on_a_definition_id_keeps_that_version(
    client: EngineClient, engine: RunningEngine
) -> None:
    """What each worker process does: start its payments on the definition it deployed, even
    after another version of the process was deployed."""
    await client.deploy("phee-flag-test", {"flag-test.bpmn": FLAG_MODEL})
    mine = await client.latest_definition_id("phee_flag_test")
    newer = FLAG_MODEL.replace(b'id="no"', b'id="no" name="no (newer)"')
    await client.deploy("phee-flag-test", {"flag-test.bpmn": newer})
    latest = await client.latest_definition_id("phee_flag_test")
    assert latest != mine
    pinned = await client.start(
        "phee_flag_test", business_key=key(), variables={}, definition_id=mine
    )
    unpinned = await client.start("phee_flag_test", business_key=key(), variables={})
    async with httpx.AsyncClient(base_url=engine.rest_urls[0]) as rest:
        first = (await rest.get(f"/process-instance/{pinned}")).json()
        second = (await rest.get(f"/process-instance/{unpinned}")).json()
    assert first["definitionId"] == mine
    assert second["definitionId"] == latest
    with pytest.raises(NotFound):
        await client.latest_definition_id("phee_no_such_process")


async def test_every_engine_connection_asks_for_generic_plans(
    client: EngineClient, engine: RunningEngine
) -> None:
    """Decision 0024: the pool's connections run `SET plan_cache_mode TO force_generic_plan`
    first (Hikari's connection-init-sql), so the engine's statements are not planned anew on
    every execution. The setting is the engine sessions' own, not the database's."""
    await client.start(PROCESS, business_key=key(), variables={})  # the pool is in use
    dsn = f"host=127.0.0.1 port={engine.sql_port} user=postgres dbname={ENGINE_DB}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("create extension if not exists pg_stat_statements")
        row = conn.execute(
            "select coalesce(sum(calls), 0) from pg_stat_statements where query ilike %s"
            " and dbid = (select oid from pg_database where datname = %s)",
            ("SET plan_cache_mode TO force_generic_plan", ENGINE_DB),
        ).fetchone()
        connections = conn.execute(
            "select count(*) from pg_stat_activity where datname = %s and pid <> pg_backend_pid()",
            (ENGINE_DB,),
        ).fetchone()
        mine = conn.execute("show plan_cache_mode").fetchone()
    assert row is not None
    assert connections is not None
    assert mine is not None
    assert connections[0] >= 1
    assert row[0] >= connections[0]  # every open connection of the pool ran it
    assert mine[0] == "auto"  # other sessions keep PostgreSQL's default
