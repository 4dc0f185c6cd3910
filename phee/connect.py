"""Kafka Connect's REST API as ours: register a connector idempotently, read its status,
remove it, list the installed plugins. The only module that talks to Connect.

Errors come out as `ConnectError`: `retryable` says whether the same call may succeed later
(Connect unreachable, a rebalance in progress, a timeout), `status` is Connect's HTTP status
when it answered. Every call here is idempotent, so a retry after a timeout is safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_TIMEOUT_S = 30.0
#: statuses worth trying again: Connect is rebalancing (409), busy or restarting (5xx)
_RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class ConnectError(RuntimeError):
    """A Connect call failed; `retryable`: the same call may succeed later."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


@dataclass(frozen=True)
class TaskState:
    id: int
    state: str
    worker_id: str
    trace: str | None = None


@dataclass(frozen=True)
class ConnectorStatus:
    """A connector's state and its tasks' (`RUNNING`, `PAUSED`, `FAILED`, `UNASSIGNED`, ...)."""

    name: str
    state: str
    worker_id: str
    tasks: tuple[TaskState, ...]

    @property
    def running(self) -> bool:
        """The connector and every one of its tasks run (and it has at least one task)."""
        return (
            self.state == "RUNNING"
            and bool(self.tasks)
            and all(t.state == "RUNNING" for t in self.tasks)
        )

    @property
    def failures(self) -> list[str]:
        """The stack traces of failed tasks (Connect keeps the last one per task)."""
        return [t.trace or "(no trace)" for t in self.tasks if t.state == "FAILED"]


@dataclass(frozen=True)
class Registered:
    name: str
    created: bool  # False when a connector of that name existed (its config now is ours)


class ConnectClient:
    """One Kafka Connect cluster, reached at `url` (any worker's REST listener)."""

    def __init__(self, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout_s)

    async def __aenter__(self) -> ConnectClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def plugins(self) -> list[str]:
        """Classes of the connector plugins the workers have."""
        body = await self._call("GET", "/connector-plugins", what="list plugins")
        return [str(p["class"]) for p in body]

    async def connectors(self) -> list[str]:
        return [str(n) for n in await self._call("GET", "/connectors", what="list connectors")]

    async def validate(self, name: str, config: Mapping[str, str]) -> list[str]:
        """Connect's and the plugin's verdict on a configuration: one line per field error
        (Debezium also tries to reach the database), empty when it is accepted."""
        plugin = quote(str(config.get("connector.class", "")), safe="")
        body = await self._call(
            "PUT",
            f"/connector-plugins/{plugin}/config/validate",
            what=f"validate the config of connector {name}",
            json={**config, "name": name},
        )
        errors: list[str] = []
        for item in body.get("configs", []):
            value = item.get("value") or {}
            errors.extend(f"{value.get('name', '?')}: {err}" for err in value.get("errors", []))
        return errors

    async def put(self, name: str, config: Mapping[str, str]) -> Registered:
        """Create the connector or replace its configuration (idempotent: the same config twice
        leaves one connector with that config).

        The configuration is validated first: a refused one raises a non-retryable error naming
        the fields (Connect 4.3's own check on PUT answers 500 with a NullPointerException for
        some of Debezium's verdicts, such as an unreachable database)."""
        errors = await self.validate(name, config)
        if errors:
            raise ConnectError(
                f"register connector {name}: configuration refused: {'; '.join(errors)}",
                retryable=False,
                status=400,
            )
        response = await self._send(
            "PUT", f"/connectors/{quote(name, safe='')}/config", json=dict(config)
        )
        self._raise_for(response, f"register connector {name}")
        return Registered(name=name, created=response.status_code == httpx.codes.CREATED)

    async def config(self, name: str) -> dict[str, str] | None:
        """The connector's stored configuration, or None when there is no such connector."""
        response = await self._send("GET", f"/connectors/{quote(name, safe='')}/config")
        if response.status_code == httpx.codes.NOT_FOUND:
            return None
        self._raise_for(response, f"config of connector {name}")
        return {str(k): str(v) for k, v in response.json().items()}

    async def status(self, name: str) -> ConnectorStatus | None:
        """The connector's and its tasks' states, or None when there is no such connector."""
        response = await self._send("GET", f"/connectors/{quote(name, safe='')}/status")
        if response.status_code == httpx.codes.NOT_FOUND:
            return None
        self._raise_for(response, f"status of connector {name}")
        body = response.json()
        return ConnectorStatus(
            name=str(body["name"]),
            state=str(body["connector"]["state"]),
            worker_id=str(body["connector"].get("worker_id", "")),
            tasks=tuple(
                TaskState(
                    id=int(t["id"]),
                    state=str(t["state"]),
                    worker_id=str(t.get("worker_id", "")),
                    trace=t.get("trace"),
                )
                for t in body.get("tasks", [])
            ),
        )

    async def delete(self, name: str) -> bool:
        """Remove the connector; False when there was none. Its replication slot stays in the
        engine database (drop it there when the engine goes for good)."""
        response = await self._send("DELETE", f"/connectors/{quote(name, safe='')}")
        if response.status_code == httpx.codes.NOT_FOUND:
            return False
        self._raise_for(response, f"delete connector {name}")
        return True

    async def _call(self, method: str, path: str, *, what: str, **kwargs: Any) -> Any:
        response = await self._send(method, path, **kwargs)
        self._raise_for(response, what)
        return response.json()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.TransportError as err:  # refused, reset, timed out: Connect may come back
            detail = str(err) or type(err).__name__
            raise ConnectError(
                f"{method} {self.url}{path}: {type(err).__name__}: {detail}", retryable=True
            ) from err

    @staticmethod
    def _raise_for(response: httpx.Response, what: str) -> None:
        if response.is_success:
            return
        try:
            message = str(response.json().get("message", response.text))
        except ValueError:
            message = response.text
        raise ConnectError(
            f"{what}: Connect answered {response.status_code}: {message.strip()}",
            retryable=response.status_code in _RETRYABLE_STATUS,
            status=response.status_code,
        )
