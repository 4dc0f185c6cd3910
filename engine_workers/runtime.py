"""What every task of one engine shares: settings, the adapters, the payment store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from engine_workers.ams import Ams, ReferenceAms
from engine_workers.failures import Transient
from engine_workers.fspiop_client import FspiopClient
from engine_workers.settings import EngineSettings
from engine_workers.store import PaymentStore, SentCallback
from phee.httpclient import async_client


@dataclass
class Runtime:
    settings: EngineSettings
    fspiop: FspiopClient
    ams: Ams
    store: PaymentStore
    router: httpx.AsyncClient

    @classmethod
    def from_settings(cls, settings: EngineSettings) -> Runtime:
        return cls(
            settings=settings,
            fspiop=FspiopClient(settings),
            ams=ReferenceAms(settings.ams_url, settings.http_timeout_s),
            store=PaymentStore(settings.store_dsn()),
            router=async_client(
                base_url=settings.router_url,
                timeout=settings.http_timeout_s,
                headers={"Authorization": f"Bearer {settings.secret('router_admin_token')}"},
            ),
        )

    async def close(self) -> None:
        await self.fspiop.close()
        await self.ams.close()
        await self.router.aclose()
        self.store.close()

    async def send_and_remember(
        self,
        resource: str,
        ident: str,
        path: str,
        *,
        body: dict[str, Any],
        destination: str,
        version: str | None,
    ) -> None:
        """Send a payee-side callback and keep it, so a duplicate request gets it again."""
        await self.fspiop.send("PUT", path, body=body, destination=destination, version=version)
        await self.store.remember_sent(
            resource, ident, SentCallback(path, body, destination, version)
        )

    async def register_party_wait(self, party: str, transaction_id: str, expires_in_s: int) -> None:
        """Tell the router this transaction waits for `party` (before the lookup is sent)."""
        body = {
            "party": party,
            "transactionId": transaction_id,
            "engine": self.settings.name,
            "expiresInS": expires_in_s,
        }
        try:
            resp = await self.router.post("/admin/party-waits", json=body)
        except httpx.HTTPError as err:
            raise Transient(f"router: {type(err).__name__}: {err}") from err
        if resp.status_code >= 300:
            raise Transient(f"router refused the party wait: {resp.status_code} {resp.text[:200]}")


def now_iso(delta_s: float = 0) -> str:
    """An FSPIOP DateTime (UTC, milliseconds) `delta_s` from now."""
    when = datetime.now(UTC) + timedelta(seconds=delta_s)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def iso_duration(seconds: float) -> str:
    """A BPMN timer duration (`PT12.5S`), never below one second."""
    return f"PT{max(seconds, 1.0):.3f}S"


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def dig(data: Any, *path: str) -> Any:
    """data[p0][p1]... or None when any step is missing."""
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def money(value: Any) -> dict[str, str]:
    """An FSPIOP Money object reduced to `{"amount", "currency"}`.

    Peers may add properties FSPIOP 1.x tolerates (the Testing Toolkit's mocked callbacks carry
    random extra fields); only these two are ever used, and forwarding the rest would make the
    AMS or the next FSPIOP request refuse the whole payment.
    """
    if not isinstance(value, dict) or "amount" not in value or "currency" not in value:
        raise ValueError(f"not an FSPIOP Money object: {value!r}")
    return {"amount": str(value["amount"]), "currency": str(value["currency"])}
