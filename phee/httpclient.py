"""HTTP clients of the services: httpx's API over aiohttp's connection handling.

Every request a payment makes (engine calls, FSPIOP requests and callbacks, the AMS) goes
through an `httpx.AsyncClient`. httpx's own transport (httpcore over anyio) costs 1.3-3.5 ms of
CPU per request on this machine, aiohttp's about 0.4 ms (docs/benchmarks.md, decision 0022),
and a payment makes some twenty of them on two cores. `AiohttpTransport` keeps httpx's API,
its test seams (`httpx.ASGITransport`, `httpx.MockTransport`) and its exception types, and
hands the wire to aiohttp.

The exception mapping is ours, not a library's, because callers decide on it whether a failed
request may have reached the server: only a failure before anything was sent becomes a
`ConnectError` / `ConnectTimeout` (not sent); every other failure becomes a read error or a read
timeout (ambiguous: it may have happened).
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp
import httpx

#: headers aiohttp would add by itself; httpx has already set the ones a request needs
_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


def _timeout(extensions: dict[str, Any]) -> aiohttp.ClientTimeout:
    """httpx's per-request timeouts (connect, read, write, pool) in aiohttp's terms."""
    t = extensions.get("timeout") or {}
    connect, pool = t.get("connect"), t.get("pool")
    # aiohttp's `connect` covers waiting for a pooled connection and opening it.
    waiting = None if connect is None and pool is None else (connect or 0.0) + (pool or 0.0)
    return aiohttp.ClientTimeout(
        total=None, connect=waiting, sock_connect=connect, sock_read=t.get("read")
    )


def _mapped(err: BaseException, request: httpx.Request) -> httpx.TransportError:
    """aiohttp's failure as httpx's: not-sent only when the connection was never made."""
    text = f"{type(err).__name__}: {err}"
    if isinstance(err, aiohttp.ClientConnectorError):
        return httpx.ConnectError(text, request=request)
    if isinstance(err, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(text, request=request)
    if isinstance(err, TimeoutError | aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(text, request=request)
    if isinstance(err, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(text, request=request)
    # A connection closed or reset mid-request, a malformed answer: it may have been handled.
    return httpx.ReadError(text, request=request)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport over one aiohttp session (created in the loop of the first request).

    `ssl_context`: the TLS settings for https URLs (a CA, a client certificate); None uses the
    system's defaults. Answers are read whole: the services exchange small JSON documents.
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_s: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._session: aiohttp.ClientSession | None = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                keepalive_timeout=self._keepalive_s,
                ssl=self._ssl,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx decodes by Content-Encoding
                skip_auto_headers=_SKIP_AUTO_HEADERS,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._ensure_session()
        body = await request.aread()
        # The body is sent whole, with its length, never chunked.
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in request.headers.raw
            if k.lower() != b"transfer-encoding"
        ]
        try:
            async with session.request(
                request.method,
                str(request.url),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                compress=False,
                timeout=_timeout(request.extensions),
            ) as answer:
                content = await answer.read()
        except (TimeoutError, aiohttp.ClientError) as err:
            raise _mapped(err, request) from err
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if answer.reason:
            extensions["reason_phrase"] = answer.reason.encode("latin-1", "replace")
        return httpx.Response(
            status_code=answer.status,
            headers=list(answer.raw_headers),
            content=content,
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing: the services exchange no cookies."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class ServiceClient(httpx.AsyncClient):
    """httpx's client without cookie handling.

    httpx reads every answer for cookies (it builds a urllib request per answer to do so):
    3.5% of a worker's CPU under load, for cookies nobody sends. A jar set on this client is
    refused rather than silently ignored.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._jar = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._jar

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        if cookies:
            raise ValueError("this client keeps no cookies")


def async_client(
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    max_connections: int = 100,
    ssl_context: ssl.SSLContext | None = None,
    **options: Any,
) -> ServiceClient:
    """A `ServiceClient` (httpx's, without cookies) over `AiohttpTransport` (or over
    `transport`, for tests).

    `options` are httpx's (`base_url`, `timeout`, `headers`); TLS goes in `ssl_context`, since
    httpx's `verify` and `cert` belong to its own transport.
    """
    wire = transport or AiohttpTransport(max_connections=max_connections, ssl_context=ssl_context)
    if options.get("cookies"):
        raise ValueError("the services' clients keep no cookies")
    return ServiceClient(transport=wire, **options)
