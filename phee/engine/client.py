"""The Operaton REST client: the only code that talks to the engine (async, httpx).

Every failure leaves here as a `phee.engine.errors.EngineError` (mapped in `_call`, one place).
Retrying is the caller's business, with one exception: `complete` and `correlate` retry an
`OptimisticLockConflict` themselves (a few attempts, small jittered backoff; see
`EngineClient.__init__`), because a completion and a callback racing on one instance make the
engine roll one of them back with a 500 OptimisticLockingException, and trying again is always
right then (REFERENCE 4.2).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from phee.engine.errors import (
    EngineError,
    NotFound,
    OptimisticLockConflict,
    Refused,
    from_response,
    from_transport,
)
from phee.engine.variables import decode_all, encode, encode_all
from phee.httpclient import async_client

BPMN_MODEL_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
#: seconds an httpx call may take beyond a long poll's own timeout
LONG_POLL_MARGIN_S = 10.0
HISTORIC_FIELDS = ("id", "state", "startTime", "endTime", "processDefinitionKey", "businessKey")


@dataclass(frozen=True)
class ExternalTask:
    """A locked external task as fetchAndLock returned it, variables decoded."""

    id: str
    topic: str
    worker_id: str
    process_instance_id: str
    process_definition_key: str | None
    execution_id: str
    activity_id: str
    business_key: str | None
    retries: int | None
    error_message: str | None
    variables: dict[str, Any] = field(default_factory=dict)
    extension_properties: dict[str, str] = field(default_factory=dict)

    def json(self, name: str) -> Any:
        """A JSON-in-String variable parsed (None when the variable is absent or null)."""
        text = self.variables.get(name)
        return None if text is None else json.loads(text)

    @classmethod
    def from_dto(cls, dto: Mapping[str, Any]) -> ExternalTask:
        return cls(
            id=str(dto["id"]),
            topic=str(dto.get("topicName") or ""),
            worker_id=str(dto.get("workerId") or ""),
            process_instance_id=str(dto.get("processInstanceId") or ""),
            process_definition_key=dto.get("processDefinitionKey"),
            execution_id=str(dto.get("executionId") or ""),
            activity_id=str(dto.get("activityId") or ""),
            business_key=dto.get("businessKey"),
            retries=dto.get("retries"),
            error_message=dto.get("errorMessage"),
            variables=decode_all(dto.get("variables")),
            extension_properties={
                str(k): str(v) for k, v in (dto.get("extensionProperties") or {}).items()
            },
        )


@dataclass(frozen=True)
class TopicRequest:
    """One topic of a fetchAndLock: its lock duration and the variables to fetch (None: all);
    optionally only the tasks of one business key or process definition."""

    topic: str
    lock_duration_ms: int
    variables: list[str] | None = None
    business_key: str | None = None
    process_definition_key: str | None = None

    def dto(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "topicName": self.topic,
            "lockDuration": self.lock_duration_ms,
            "includeExtensionProperties": True,
        }
        if self.variables is not None:
            body["variables"] = self.variables
        if self.business_key is not None:
            body["businessKey"] = self.business_key
        if self.process_definition_key is not None:
            body["processDefinitionKey"] = self.process_definition_key
        return body


def process_keys(files: Mapping[str, bytes]) -> list[str]:
    """The executable process ids (definition keys) of BPMN files, in file order."""
    keys: list[str] = []
    for name, content in files.items():
        if not name.endswith(".bpmn"):
            continue
        root = ET.fromstring(content)  # noqa: S314 - the project's own models, not input
        for proc in root.iter(f"{{{BPMN_MODEL_NS}}}process"):
            if proc.get("isExecutable", "true") != "false" and proc.get("id"):
                keys.append(str(proc.get("id")))
    return keys


class EngineClient:
    """Operaton's REST API at `base_url` (`http://host:port/engine-rest`).

    `timeout_s` bounds each call (fetchAndLock gets its long-poll time on top). Pass `http` to
    share one `httpx.AsyncClient` (it is then not closed here). `complete` and `correlate`
    retry an OptimisticLockConflict up to `lock_conflict_attempts` times in all, waiting a
    random 0..`lock_conflict_backoff_s` x 2^n seconds between tries (1 attempt: no retry).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        http: httpx.AsyncClient | None = None,
        lock_conflict_attempts: int = 5,
        lock_conflict_backoff_s: float = 0.05,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._own_http = http is None
        self._http = http or async_client(timeout=timeout_s)
        self.lock_conflict_attempts = max(1, lock_conflict_attempts)
        self.lock_conflict_backoff_s = lock_conflict_backoff_s
        #: OptimisticLockConflicts retried inside so far (complete/correlate), for metrics and tests
        self.lock_conflicts_retried = 0

    async def close(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> EngineClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # -- the one place HTTP happens -------------------------------------------------------
    async def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json_body: Any = None,
        params: Mapping[str, str | int | bool] | None = None,
        files: Any = None,
        data: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        correlating: bool = False,
    ) -> Any:
        """Send one request; the decoded JSON answer (None for 204), or an EngineError."""
        try:
            response = await self._http.request(
                method,
                self.base_url + path,
                json=json_body,
                params=params,
                files=files,
                data=data,
                timeout=timeout_s if timeout_s is not None else self.timeout_s,
            )
        except httpx.TransportError as err:
            raise from_transport(err, what) from err
        if response.status_code >= 300:
            raise from_response(response, what, correlating=correlating)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as err:
            raise EngineError(
                f"{what}: answer is not JSON: {response.text[:200]!r}",
                status=response.status_code,
                kind="InvalidJson",
                retryable=False,
                ambiguous=True,
            ) from err

    def _conflict_retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            retry=retry_if_exception_type(OptimisticLockConflict),
            stop=stop_after_attempt(self.lock_conflict_attempts),
            wait=wait_random_exponential(multiplier=self.lock_conflict_backoff_s, max=2.0),
            before_sleep=self._count_conflict,
            reraise=True,
        )

    def _count_conflict(self, _: RetryCallState) -> None:
        self.lock_conflicts_retried += 1

    # -- engine and deployments -----------------------------------------------------------
    async def ready(self) -> bool:
        """True when `GET /engine` answers with the engine list."""
        try:
            engines = await self._call("GET", "/engine", what="engine list")
        except EngineError:
            return False
        return isinstance(engines, list) and len(engines) > 0

    async def deploy(self, name: str, files: dict[str, bytes]) -> dict[str, int]:
        """Deploy `files` (name -> content) as deployment `name`, skipping unchanged resources
        (duplicate filtering + deploy-changed-only); {process key: latest version}."""
        await self._call(
            "POST",
            "/deployment/create",
            what=f"deploy {name}",
            data={
                "deployment-name": name,
                "deployment-source": "phee",
                "enable-duplicate-filtering": "true",
                "deploy-changed-only": "true",
            },
            files=[
                (fname, (fname, content, "application/octet-stream"))
                for fname, content in files.items()
            ],
        )
        versions: dict[str, int] = {}
        for key in process_keys(files):
            found = await self._call(
                "GET",
                "/process-definition",
                what=f"definition {key}",
                params={"key": key, "latestVersion": "true"},
            )
            if found:
                versions[key] = int(found[0]["version"])
        return versions

    async def latest_definition_id(self, process_key: str) -> str:
        """The id of the latest deployed version of `process_key`; NotFound when none is."""
        found = await self._call(
            "GET",
            "/process-definition",
            what=f"definition {process_key}",
            params={"key": process_key, "latestVersion": "true"},
        )
        if not found:
            raise NotFound(f"no process definition {process_key}", status=404)
        return str(found[0]["id"])

    # -- process instances ----------------------------------------------------------------
    async def start(
        self,
        process_key: str,
        *,
        business_key: str,
        variables: dict[str, Any],
        definition_id: str | None = None,
    ) -> str:
        """Start the latest version of `process_key`, or exactly `definition_id` (one query
        less per start in the engine); the new instance's id. The engine does not make business
        keys unique: callers that must not start twice check first."""
        path = (
            f"/process-definition/{definition_id}/start"
            if definition_id
            else f"/process-definition/key/{process_key}/start"
        )
        started = await self._call(
            "POST",
            path,
            what=f"start {process_key} {business_key}",
            json_body={"businessKey": business_key, "variables": encode_all(variables)},
        )
        return str(started["id"])

    async def running_instances(
        self, *, business_key: str, process_key: str | None = None
    ) -> list[str]:
        """Ids of the running (not ended) instances with this business key."""
        params: dict[str, str] = {"businessKey": business_key}
        if process_key:
            params["processDefinitionKey"] = process_key
        found = await self._call(
            "GET", "/process-instance", what=f"instances of {business_key}", params=params
        )
        return [str(item["id"]) for item in found or []]

    async def historic_instances(self, *, business_key: str) -> list[dict[str, Any]]:
        """Every instance with this business key, ended ones included (history), oldest first:
        id, state, startTime, endTime, processDefinitionKey, businessKey."""
        found = await self._call(
            "GET",
            "/history/process-instance",
            what=f"history of {business_key}",
            params={
                "processInstanceBusinessKey": business_key,
                "sortBy": "startTime",
                "sortOrder": "asc",
            },
        )
        return [{k: item.get(k) for k in HISTORIC_FIELDS} for item in found or []]

    async def correlate(
        self,
        message: str,
        *,
        business_key: str | None = None,
        correlation_keys: dict[str, Any] | None = None,
        process_instance_id: str | None = None,
        variables: dict[str, Any] | None = None,
        transient: Collection[str] = (),
    ) -> None:
        """Deliver `message` to the one execution waiting for it (chosen by business key,
        correlation keys and/or instance id); `variables` go on the process instance, those
        named in `transient` only for the correlation's own transaction.
        NoMatchingSubscription when nothing waits; Refused when more than one execution matches;
        OptimisticLockConflict retried here."""
        body: dict[str, Any] = {"messageName": message}
        if business_key is not None:
            body["businessKey"] = business_key
        if correlation_keys:
            body["correlationKeys"] = {k: encode(v) for k, v in correlation_keys.items()}
        if process_instance_id is not None:
            body["processInstanceId"] = process_instance_id
        if variables:
            body["processVariables"] = encode_all(variables, transient)
        what = f"correlate {message} " + str(business_key or process_instance_id or "")
        async for attempt in self._conflict_retrying():
            with attempt:
                await self._call("POST", "/message", what=what, json_body=body, correlating=True)

    async def set_variables(self, process_instance_id: str, variables: dict[str, Any]) -> None:
        await self._call(
            "POST",
            f"/process-instance/{process_instance_id}/variables",
            what=f"set variables of {process_instance_id}",
            json_body={"modifications": encode_all(variables)},
        )

    async def get_variables(self, process_instance_id: str) -> dict[str, Any]:
        found = await self._call(
            "GET",
            f"/process-instance/{process_instance_id}/variables",
            what=f"variables of {process_instance_id}",
            params={"deserializeValues": "false"},
        )
        return decode_all(found)

    async def count(self, *, process_key: str | None = None, incidents: bool = False) -> int:
        """Running instances (of `process_key`, or all), or open incidents with `incidents`."""
        params: dict[str, str] = {}
        if incidents:
            if process_key:
                params["processDefinitionKeyIn"] = process_key
            found = await self._call("GET", "/incident/count", what="incidents", params=params)
        else:
            if process_key:
                params["processDefinitionKey"] = process_key
            found = await self._call(
                "GET", "/process-instance/count", what="instances", params=params
            )
        return int(found["count"])

    # -- external tasks -------------------------------------------------------------------
    async def fetch_and_lock(
        self,
        worker_id: str,
        topics: list[TopicRequest],
        *,
        max_tasks: int,
        async_response_timeout_ms: int,
    ) -> list[ExternalTask]:
        """Lock up to `max_tasks` tasks of `topics` for `worker_id`, waiting (long polling) up
        to `async_response_timeout_ms` for the first one; [] when none came."""
        found = await self._call(
            "POST",
            "/external-task/fetchAndLock",
            what=f"fetchAndLock {worker_id}",
            json_body={
                "workerId": worker_id,
                "maxTasks": max_tasks,
                "usePriority": True,
                "asyncResponseTimeout": async_response_timeout_ms,
                "topics": [t.dto() for t in topics],
            },
            timeout_s=self.timeout_s + async_response_timeout_ms / 1000 + LONG_POLL_MARGIN_S,
        )
        return [ExternalTask.from_dto(item) for item in found or []]

    async def end_long_poll(self, worker_id: str) -> None:
        """Cancel `worker_id`'s pending long poll in the engine.

        A fetch the worker gave up on (stopped, timed out) stays pending in the engine, which
        would lock the next task for a caller that no longer listens. A new fetch from the same
        workerId replaces it (the engine app sets `fetch-and-lock-unique-worker-request`); this
        one asks for no topic and no task, so it locks nothing and returns empty at once.
        """
        await self._call(
            "POST",
            "/external-task/fetchAndLock",
            what=f"end long poll {worker_id}",
            json_body={
                "workerId": worker_id,
                "maxTasks": 0,
                "asyncResponseTimeout": 1,
                "topics": [],
            },
        )

    async def complete(self, task: ExternalTask, variables: dict[str, Any] | None = None) -> None:
        """Complete a locked task; OptimisticLockConflict retried here."""
        body = {"workerId": task.worker_id, "variables": encode_all(variables)}
        async for attempt in self._conflict_retrying():
            with attempt:
                await self._call(
                    "POST",
                    f"/external-task/{task.id}/complete",
                    what=f"complete {task.topic} {task.id}",
                    json_body=body,
                )

    async def failure(
        self,
        task: ExternalTask,
        *,
        message: str,
        details: str | None,
        retries: int,
        retry_timeout_ms: int,
    ) -> None:
        """Report a technical failure: retried by the engine while `retries` > 0, an incident
        at 0."""
        await self._call(
            "POST",
            f"/external-task/{task.id}/failure",
            what=f"failure {task.topic} {task.id}",
            json_body={
                "workerId": task.worker_id,
                "errorMessage": message[:4000],
                "errorDetails": details,
                "retries": max(0, retries),
                "retryTimeout": max(0, retry_timeout_ms),
            },
        )

    async def bpmn_error(
        self,
        task: ExternalTask,
        *,
        code: str,
        message: str,
        variables: dict[str, Any] | None = None,
    ) -> None:
        """Throw BPMN error `code` at the task (caught by the model's error events)."""
        await self._call(
            "POST",
            f"/external-task/{task.id}/bpmnError",
            what=f"bpmnError {code} {task.topic} {task.id}",
            json_body={
                "workerId": task.worker_id,
                "errorCode": code,
                "errorMessage": message,
                "variables": encode_all(variables),
            },
        )

    async def extend_lock(self, task: ExternalTask, new_duration_ms: int) -> None:
        """Lock the task for `new_duration_ms` from now (NotFound/Refused: the lock is lost)."""
        await self._call(
            "POST",
            f"/external-task/{task.id}/extendLock",
            what=f"extendLock {task.topic} {task.id}",
            json_body={"workerId": task.worker_id, "newDuration": new_duration_ms},
        )


def lock_lost(err: EngineError) -> bool:
    """True when an answer about a task says this worker no longer holds it: the task is gone
    (completed by an earlier, ambiguous attempt, or its instance ended) or another worker
    locked it after our lock expired."""
    if isinstance(err, Refused):
        text = str(err)
        return "locked by" in text or "is not locked" in text or "does not exist" in text
    return err.status == 404
