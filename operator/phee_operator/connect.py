"""The Kafka Connect adapter: registers an engine's Debezium connector through Connect's REST API.

`PUT /connectors/<name>/config` creates or updates a connector (idempotent: the same config again
changes nothing); `DELETE /connectors/<name>` removes one. Errors are mapped to ours:
`ConnectUnreachable` (no answer: DNS, refused, timeout; worth another try later),
`ConnectBusy` (a rebalance in progress or a server error; worth another try), and
`ConnectRejected` (the config itself was refused; retrying the same config cannot help).
"""

from __future__ import annotations

from typing import Protocol

import httpx


class ConnectError(RuntimeError):
    """A call to Kafka Connect failed; `reason` is a CamelCase word for status conditions."""

    reason = "ConnectError"
    retryable = True


class ConnectUnreachable(ConnectError):
    reason = "ConnectUnreachable"


class ConnectBusy(ConnectError):
    reason = "ConnectBusy"


class ConnectRejected(ConnectError):
    reason = "ConnectorRejected"
    retryable = False


class ConnectorRegistry(Protocol):
    """Where connectors are registered (the Connect REST API, or anything that behaves like it)."""

    async def put_config(self, base_url: str, name: str, config: dict[str, str]) -> bool:
        """Create or update connector `name`; True when it was created."""
        ...

    async def delete(self, base_url: str, name: str) -> bool:
        """Remove connector `name`; False when there was none."""
        ...


def _mapped(err: Exception, what: str) -> ConnectError:
    if isinstance(err, httpx.HTTPStatusError):
        code = err.response.status_code
        body = err.response.text[:300]
        if code == 409 or code >= 500:
            return ConnectBusy(f"{what}: {code} {body}")
        return ConnectRejected(f"{what}: {code} {body}")
    return ConnectUnreachable(f"{what}: connect unreachable ({type(err).__name__}: {err})")


class HttpConnect:
    """The real Connect REST API over HTTP (one short-lived call each; reconciles are rare)."""

    def __init__(self, timeout_s: float = 3.0) -> None:
        self.timeout = httpx.Timeout(timeout_s)

    async def put_config(self, base_url: str, name: str, config: dict[str, str]) -> bool:
        what = f"PUT {base_url}/connectors/{name}/config"
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=self.timeout) as client:
                response = await client.put(f"/connectors/{name}/config", json=config)
                response.raise_for_status()
        except httpx.HTTPError as err:
            raise _mapped(err, what) from err
        return response.status_code == httpx.codes.CREATED

    async def delete(self, base_url: str, name: str) -> bool:
        what = f"DELETE {base_url}/connectors/{name}"
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=self.timeout) as client:
                response = await client.delete(f"/connectors/{name}")
                if response.status_code == httpx.codes.NOT_FOUND:
                    return False
                response.raise_for_status()
        except httpx.HTTPError as err:
            raise _mapped(err, what) from err
        return True
