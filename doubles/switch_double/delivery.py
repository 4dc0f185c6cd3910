"""Sending FSPIOP messages to DFSPs over HTTP: one pooled client, retries, metrics, a JWS hook.

A DFSP that does not take a message (connection error, 5xx, 429) is retried a few times with
exponential backoff; any other 4xx will not get better and is given up at once. Every message
given up is logged and counted: a switch double that loses callbacks silently would hide bugs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from doubles.switch_double.metrics import SwitchMetrics
from doubles.switch_double.settings import SwitchSettings
from doubles.switch_double.wire import PASSTHROUGH, Message
from phee.fspiop.headers import request_headers
from phee.httpclient import async_client

log = logging.getLogger("doubles.switch_double.delivery")

#: (method, path, headers, body) -> extra headers (FSPIOP-Signature, FSPIOP-URI, ...)
Signer = Callable[[str, str, Mapping[str, str], bytes | None], Mapping[str, str]]


class RejectedError(Exception):
    """The DFSP answered with a status that is not 2xx."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text[:200]}")
        self.status = status


def _worth_retry(err: BaseException) -> bool:
    if isinstance(err, RejectedError):
        return err.status >= 500 or err.status == 429
    return isinstance(err, httpx.TransportError)


class Delivery:
    """The HTTP side of the switch; `signer` signs messages the switch itself writes."""

    def __init__(
        self,
        settings: SwitchSettings,
        metrics: SwitchMetrics,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        signer: Signer | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._signer = signer
        self._client = async_client(
            transport=transport,
            max_connections=settings.max_connections,
            timeout=settings.callback_timeout_s,
        )
        del self._client.headers["Accept"]  # httpx's default; FSPIOP callbacks carry none

    def headers(self, msg: Message, body: bytes | None) -> dict[str, str]:
        passthrough = {k: v for k, v in msg.passthrough.items() if k in PASSTHROUGH}
        headers = request_headers(
            method=msg.method,
            path=msg.path,
            source=msg.source,
            destination=msg.destination,
            version=msg.version,
            date=passthrough.pop("Date", None),
        )
        headers.update(passthrough)
        if self._signer is not None and "FSPIOP-Signature" not in headers:
            headers.update(self._signer(msg.method, msg.path, headers, body))
        return headers

    async def deliver(self, base_url: str, msg: Message) -> bool:
        """Send `msg` to the DFSP at `base_url`; False (logged and counted) when given up."""
        resource = msg.route.resource
        body = msg.content()
        headers = self.headers(msg, body)
        url = base_url.rstrip("/") + msg.path
        start = time.monotonic()
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._settings.callback_attempts),
            wait=wait_exponential(multiplier=self._settings.callback_backoff_s, max=2.0),
            retry=retry_if_exception(_worth_retry),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    resp = await self._client.request(
                        msg.method, url, content=body, headers=headers
                    )
                    if not 200 <= resp.status_code < 300:
                        raise RejectedError(resp.status_code, resp.text)
        except (httpx.HTTPError, RejectedError) as err:
            self._metrics.callbacks.labels(resource, msg.method, "failed").inc()
            log.warning(
                "gave up %s %s to %s after %d attempt(s): %s",
                msg.method,
                url,
                msg.destination,
                retrying.statistics.get("attempt_number", 1),
                err,
            )
            return False
        finally:
            self._metrics.delivery_seconds.observe(time.monotonic() - start)
        self._metrics.callbacks.labels(resource, msg.method, "sent").inc()
        return True

    async def aclose(self) -> None:
        await self._client.aclose()
