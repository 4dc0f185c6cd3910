"""The only FSPIOP calls the router makes itself: error callbacks to the switch (e.g. 3106).

Engines answer everything else; the router speaks only when no engine can, such as a POST that
reuses an id with other content. Sent with httpx, retried briefly with tenacity on network
errors and 5xx. Not signed yet (see README, known gaps).
"""

from __future__ import annotations

import logging

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from callback_router.metrics import RouterMetrics
from phee.fspiop import headers as fh
from phee.fspiop import jws
from phee.fspiop.errors import FspiopError
from phee.httpclient import async_client

log = logging.getLogger(__name__)


def _worth_retry(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code >= 500


class SwitchClient:
    """Sends `PUT /<resource>/<id>/error` to the switch on behalf of our DFSP."""

    def __init__(
        self,
        base_url: str | None,
        fsp_id: str,
        metrics: RouterMetrics,
        *,
        attempts: int = 3,
        timeout_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/") if base_url else None
        self.fsp_id = fsp_id
        self.metrics = metrics
        self.attempts = attempts
        self._client = async_client(timeout=timeout_s, transport=transport)
        del self._client.headers["accept"]  # FSPIOP callbacks carry no Accept

    async def error_callback(
        self, resource: str, id_value: str, error: FspiopError, *, destination: str, version: str
    ) -> bool:
        """Send the error; True once the switch accepted it. Failures are logged and counted."""
        if self.base_url is None:
            log.error(
                "cannot send %s error for %s/%s: PHEE_ROUTER_SWITCH_URL is not set",
                error.code,
                resource,
                id_value,
            )
            self.metrics.error_callbacks.labels(error.code, "no-switch-url").inc()
            return False
        path = f"/{resource}/{id_value}/error"
        headers = fh.request_headers(
            method="PUT", path=path, source=self.fsp_id, destination=destination, version=version
        )
        body = jws.canonical_body(error.body())
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=0.2, max=2.0),
                retry=retry_if_exception(_worth_retry),
                reraise=True,
            ):
                with attempt:
                    response = await self._client.put(
                        self.base_url + path, content=body, headers=headers
                    )
                    response.raise_for_status()
        except httpx.HTTPError as exc:
            log.error("error callback %s %s failed: %s", error.code, path, exc)
            self.metrics.error_callbacks.labels(error.code, "failed").inc()
            return False
        log.info("sent error %s to %s via the switch: PUT %s", error.code, destination, path)
        self.metrics.error_callbacks.labels(error.code, "sent").inc()
        return True

    async def close(self) -> None:
        await self._client.aclose()
