"""mTLS to the switch: the engine's FSPIOP client over a real TLS server that demands a client
certificate (the switch's side of a Mojaloop connection).

The client's TLS settings reach aiohttp through one `ssl.SSLContext` (phee.httpclient), so this
checks what a wrong wiring would break: the switch is verified against the configured CA, and
our certificate is presented.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from engine_workers.failures import Transient
from engine_workers.fspiop_client import FspiopClient
from engine_workers.settings import EngineSettings
from harness.components.kubecerts import Issued, issue, make_ca

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@dataclass
class Switch:
    url: str
    ca: Issued
    client: Issued
    directory: Path
    #: common name of each client certificate the switch saw, one per request
    peers: list[str] = field(default_factory=list)


@pytest.fixture
async def switch(tmp_path: Path) -> AsyncIterator[Switch]:
    ca = make_ca(tmp_path, cn="test-switch-ca")
    server = issue(ca, tmp_path, "switch", cn="switch", ips=["127.0.0.1"], server=True)
    client = issue(ca, tmp_path, "engine", cn="phee-engine-a")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca.cert_path))
    context.load_cert_chain(str(server.cert_path), str(server.key_path))
    context.verify_mode = ssl.CERT_REQUIRED
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            peer = writer.get_extra_info("peercert") or {}
            names = [v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"]
            seen.extend(names)
            writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    tls = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = tls.sockets[0].getsockname()[1]
    found = Switch(f"https://127.0.0.1:{port}", ca, client, tmp_path, seen)
    async with tls:
        yield found


def _settings(switch: Switch, *, ca: bool = True, cert: bool = True) -> EngineSettings:
    return EngineSettings(
        name="engine-a",
        switch_url=switch.url,
        ilp_secret=SecretStr("ilp-secret-for-tests"),
        router_admin_token=SecretStr("router-token-for-tests"),
        tls_ca=switch.ca.cert_path if ca else None,
        tls_client_cert=switch.client.cert_path if cert else None,
        tls_client_key=switch.client.key_path if cert else None,
        http_timeout_s=5,
    )


async def test_our_certificate_reaches_a_switch_that_demands_one(switch: Switch) -> None:
    fspiop = FspiopClient(_settings(switch))
    try:
        await fspiop.send("GET", "/parties/MSISDN/27710101010", destination=None)
    finally:
        await fspiop.close()
    assert switch.peers == ["phee-engine-a"]
    assert switch.client.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "phee-engine-a"
    )


@pytest.mark.parametrize(
    ("ca", "cert"),
    [(True, False), (False, True)],
    ids=["no-client-certificate", "switch-not-trusted"],
)
async def test_without_our_certificate_or_the_switchs_ca_nothing_is_accepted(
    switch: Switch, ca: bool, cert: bool
) -> None:
    fspiop = FspiopClient(_settings(switch, ca=ca, cert=cert))
    try:
        with pytest.raises(Transient):
            await fspiop.send("GET", "/parties/MSISDN/27710101010", destination=None)
    finally:
        await fspiop.close()
    assert switch.peers == []
