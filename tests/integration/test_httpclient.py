"""`phee.httpclient`: httpx's API over aiohttp, against real sockets on 127.0.0.1.

What callers decide on is the exception type: a connect failure means "not sent", anything after
the request left (a reset, a closed connection, a read timeout) means "may have happened".
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from phee.httpclient import async_client

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip()] = value.strip()
    body = await reader.readexactly(int(headers.get("Content-Length", "0")))
    return lines[0], headers, body


async def _serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture
async def echo() -> AsyncIterator[str]:
    """Answers every request with its request line, headers and body as JSON (keep-alive)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line, headers, body = await _read_request(reader)
                out = json.dumps({"line": line, "headers": headers, "body": body.decode()}).encode()
                writer.write(
                    b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(out)}\r\n\r\n".encode()
                    + out
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server, url = await _serve(handle)
    async with server:
        yield url


@pytest.mark.timeout(30)
async def test_request_goes_out_as_httpx_built_it(echo: str) -> None:
    async with async_client(base_url=echo, timeout=5) as client:
        del client.headers["Accept"]  # as the FSPIOP clients do
        answer = await client.put(
            "/transfers/abc?x=1",
            content=b'{"transferState":"COMMITTED"}',
            headers={"FSPIOP-Source": "payerfsp", "Content-Type": "application/vnd.x+json"},
        )
        again = await client.get("/parties/MSISDN/1")
    assert answer.status_code == 201
    seen = answer.json()
    assert seen["line"] == "PUT /transfers/abc?x=1 HTTP/1.1"
    assert seen["body"] == '{"transferState":"COMMITTED"}'
    assert seen["headers"]["FSPIOP-Source"] == "payerfsp"
    assert seen["headers"]["Content-Type"] == "application/vnd.x+json"
    assert seen["headers"]["Content-Length"] == "29"
    # nothing added behind the caller's back: FSPIOP callbacks carry no Accept
    assert "accept" not in {name.lower() for name in seen["headers"]}
    assert again.json()["line"] == "GET /parties/MSISDN/1 HTTP/1.1"
    assert "Content-Type" not in again.json()["headers"]


@pytest.mark.timeout(30)
async def test_nothing_listening_is_a_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        async with async_client(timeout=5) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{port}/")


@pytest.mark.timeout(30)
async def test_connection_closed_after_the_request_is_ambiguous() -> None:
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _line, _headers, body = await _read_request(reader)
        received.append(body)
        writer.close()  # the request arrived; no answer

    server, url = await _serve(handle)
    async with server, async_client(timeout=5) as client:
        with pytest.raises(httpx.TransportError) as caught:
            await client.post(url + "/transfers", content=b"{}")
    assert received == [b"{}"]
    # the server had it: must not read as "not sent"
    assert not isinstance(caught.value, httpx.ConnectError | httpx.ConnectTimeout)
    assert isinstance(caught.value, httpx.ReadError)


@pytest.mark.timeout(30)
async def test_no_answer_in_time_is_a_read_timeout() -> None:
    release = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await release.wait()
        writer.close()

    server, url = await _serve(handle)
    async with server, async_client(timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(url + "/quotes", content=b"{}")
        release.set()


@pytest.mark.timeout(30)
async def test_test_seams_still_work() -> None:
    """An injected transport (as unit tests pass) replaces the wire entirely."""

    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(418, json={"path": request.url.path})

    async with async_client(transport=httpx.MockTransport(respond)) as client:
        answer = await client.get("http://engine/engine-rest/engine")
    assert answer.status_code == 418
    assert answer.json() == {"path": "/engine-rest/engine"}


@pytest.mark.timeout(30)
async def test_a_cookie_set_by_a_server_is_never_sent_back() -> None:
    """The services keep no cookies: a `Set-Cookie` answer changes nothing in later requests."""
    seen: list[dict[str, str]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                _line, headers, _body = await _read_request(reader)
                seen.append(headers)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nSet-Cookie: session=abc; Path=/\r\n"
                    b"Content-Length: 2\r\n\r\n{}"
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server, url = await _serve(handle)
    async with server, async_client(base_url=url, timeout=5) as client:
        first = await client.get("/a")
        second = await client.get("/b")
        with pytest.raises(ValueError, match="no cookies"):
            client.cookies = {"session": "abc"}
    assert first.headers["Set-Cookie"] == "session=abc; Path=/"
    assert second.status_code == 200
    assert len(seen) == 2
    assert all("Cookie" not in headers for headers in seen)
    assert len(client.cookies) == 0
    with pytest.raises(ValueError, match="no cookies"):
        async_client(cookies={"session": "abc"})
