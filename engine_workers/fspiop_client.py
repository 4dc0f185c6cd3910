"""The Mojaloop connector's adapter: outbound FSPIOP requests to the switch.

Bodies are serialised once as canonical JSON (sorted keys, compact) and exactly those bytes are
signed (JWS) and sent. Failures are mapped for the job policy (engine_workers.failures): no
answer or 5xx is `Transient` (retry), a 4xx is `Rejected` (retrying cannot help; the process ends
the payment with the switch's reason). A 202/200 only means "accepted": results come as callbacks.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

import httpx

from engine_workers.failures import Rejected, Transient
from engine_workers.settings import EngineSettings
from phee.fspiop import headers as fh
from phee.fspiop import jws
from phee.fspiop.errors import code_of
from phee.httpclient import async_client

log = logging.getLogger("engine_workers.fspiop")


class FspiopClient:
    """Sends FSPIOP requests and callbacks to the switch for one engine."""

    def __init__(self, settings: EngineSettings, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        # jws.sign caches the parsed key, so keeping the PEM bytes costs nothing per call.
        self._key = settings.jws_private_key.read_bytes() if settings.jws_private_key else None
        self._http = http or async_client(
            base_url=settings.switch_url,
            timeout=settings.http_timeout_s,
            ssl_context=_tls_context(settings),
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def send(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        destination: str | None,
        version: str | None = None,
    ) -> None:
        """Send one request; raise Transient or Rejected unless the switch accepted it."""
        content = jws.canonical_body(body) if body is not None else None
        hdrs = fh.request_headers(
            method=method,
            path=path,
            source=self.settings.fsp_id,
            destination=destination,
            version=version or self.settings.fspiop_version,
        )
        if self._key is not None and content and jws.signature_required(method, path):
            hdrs["FSPIOP-URI"] = jws.fspiop_uri(path)
            hdrs["FSPIOP-HTTP-Method"] = method.upper()
            hdrs["FSPIOP-Signature"] = jws.sign(
                method=method, uri=path, headers=hdrs, body=content, private_key_pem=self._key
            )
        try:
            resp = await self._http.request(method, path, content=content, headers=hdrs)
        except httpx.HTTPError as err:
            raise Transient(f"{method} {path}: {type(err).__name__}: {err}") from err
        if resp.status_code in (200, 202):
            return
        detail = _error_detail(resp)
        if resp.status_code >= 500 or resp.status_code == 429:
            raise Transient(f"{method} {path}: switch answered {resp.status_code} {detail}")
        raise Rejected(
            "fspiop-refused",
            f"{method} {path}: switch refused with {resp.status_code} {detail}",
            {"lastError": f"switch refused {method} {path}: {resp.status_code} {detail}"},
        )


def _error_detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    code = code_of(body)
    if code:
        return f"{code} {body['errorInformation'].get('errorDescription', '')}".strip()
    return str(body)[:200]


def _tls_context(settings: EngineSettings) -> ssl.SSLContext | None:
    """The switch's CA and our client certificate (mTLS); None: the system's defaults."""
    if settings.tls_ca is None and not (settings.tls_client_cert and settings.tls_client_key):
        return None
    context = ssl.create_default_context(
        cafile=str(settings.tls_ca) if settings.tls_ca is not None else None
    )
    if settings.tls_client_cert and settings.tls_client_key:
        context.load_cert_chain(str(settings.tls_client_cert), str(settings.tls_client_key))
    return context
