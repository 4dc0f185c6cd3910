"""The AMS connector: what an engine needs from the DFSP's core banking system.

`Ams` is the interface the tasks use; `ReferenceAms` is the adapter for the reference AMS
(doubles/reference_ams). A bank's own core system gets its own adapter behind the same interface.
Errors are mapped for the job policy: a refusal with an FSPIOP code is `Rejected`, no answer or
5xx is `Transient`. Every money operation is idempotent by transactionId on the AMS side, so a
retried job cannot debit or credit twice.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import httpx

from engine_workers.failures import Rejected, Transient
from phee.fspiop.errors import code_of
from phee.httpclient import async_client

log = logging.getLogger("engine_workers.ams")
#: the AMS's code for a transfer it holds nothing for ("Transfer ID not found")
NOTHING_BLOCKED = "3208"


class Ams(Protocol):
    async def party(self, id_type: str, id_value: str) -> dict[str, Any]: ...
    async def quote(self, request: dict[str, Any]) -> dict[str, Any]: ...
    async def block(
        self, transaction_id: str, payer: dict[str, Any], amount: dict[str, Any]
    ) -> None: ...
    async def book(self, transaction_id: str) -> None: ...
    async def release(self, transaction_id: str) -> None: ...
    async def credit(
        self, transaction_id: str, payee: dict[str, Any], amount: dict[str, Any]
    ) -> None: ...
    async def close(self) -> None: ...


class AmsRefusal(Rejected):
    """The AMS said no; `code` is the FSPIOP error code it gave (4001, 3204, 5106, ...)."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(
            "payer-rejected",
            f"AMS refused: {code} {description}",
            {"amsError": {"errorCode": code, "errorDescription": description}},
        )
        self.code = code
        self.description = description


class ReferenceAms:
    """HTTP adapter for doubles/reference_ams."""

    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        self._http = async_client(base_url=base_url, timeout=timeout_s)

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        try:
            resp = await self._http.request(method, path, json=body)
        except httpx.HTTPError as err:
            raise Transient(f"AMS {method} {path}: {type(err).__name__}: {err}") from err
        if resp.status_code >= 500:
            raise Transient(f"AMS {method} {path}: {resp.status_code} {resp.text[:200]}")
        data: dict[str, Any] = resp.json() if resp.content else {}
        if resp.status_code >= 400:
            code = code_of(data)
            if code is None:
                raise Transient(f"AMS {method} {path}: {resp.status_code} without an error code")
            raise AmsRefusal(code, str(data["errorInformation"].get("errorDescription", "")))
        return data

    async def party(self, id_type: str, id_value: str) -> dict[str, Any]:
        return await self._call("GET", f"/parties/{id_type}/{id_value}")

    async def quote(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/quotes", request)

    async def block(
        self, transaction_id: str, payer: dict[str, Any], amount: dict[str, Any]
    ) -> None:
        await self._call(
            "POST", f"/transfers/{transaction_id}/block", {"payer": payer, "amount": amount}
        )

    async def book(self, transaction_id: str) -> None:
        await self._call("POST", f"/transfers/{transaction_id}/book")

    async def release(self, transaction_id: str) -> None:
        """Release the payer's hold; a hold that was never made (3208: the payment ended before
        its funds were blocked, for example a transfer task whose timer fired first) leaves
        nothing to release, which is what a release asks for."""
        try:
            await self._call("POST", f"/transfers/{transaction_id}/release")
        except AmsRefusal as refusal:
            if refusal.code != NOTHING_BLOCKED:
                raise
            log.info("release of %s: nothing was blocked", transaction_id)

    async def credit(
        self, transaction_id: str, payee: dict[str, Any], amount: dict[str, Any]
    ) -> None:
        await self._call(
            "POST", f"/transfers/{transaction_id}/credit", {"payee": payee, "amount": amount}
        )
