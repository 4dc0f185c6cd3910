"""Channel API: PH-EE request shape, tenant header, idempotency by X-CorrelationID, bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from engine_workers.admission import Admission
from engine_workers.channel import create_app
from engine_workers.runtime import Runtime
from engine_workers.settings import EngineSettings
from phee.fspiop import ids

GOOD: dict[str, Any] = {
    "payer": {"partyIdInfo": {"partyIdType": "MSISDN", "partyIdentifier": "27710101010"}},
    "payee": {"partyIdInfo": {"partyIdType": "MSISDN", "partyIdentifier": "27720202020"}},
    "amount": {"amount": "12.5", "currency": "USD"},
}


class Started:
    """Records the payer instances the channel asked to start (the engine side of
    `engine_workers.starting.PayerStarts`; tests/e2e run the real engine)."""

    def __init__(self) -> None:
        self.variables: list[dict[str, Any]] = []

    async def start(self, business_key: str, variables: dict[str, Any]) -> None:
        assert business_key == variables["transactionId"]
        self.variables.append(variables)

    async def known(self, business_key: str) -> bool:
        return any(v["transactionId"] == business_key for v in self.variables)


@pytest.fixture
def started() -> Started:
    return Started()


def engine_settings(tmp_path: Path, **extra: Any) -> EngineSettings:
    """engine-b's settings over a SQLite store in `tmp_path`, with `extra` on top."""
    return EngineSettings(
        name="engine-b",
        slot=7,
        store_url=f"sqlite:///{tmp_path}/e.db",
        ilp_secret=SecretStr("ilp-secret-for-tests"),
        router_admin_token=SecretStr("router-token-for-tests"),
        **extra,
    )


@pytest.fixture
async def client(tmp_path: Path, started: Started) -> Any:
    settings = engine_settings(tmp_path)
    rt = Runtime.from_settings(settings)
    app = create_app(rt, started, ready=lambda: True)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://engine"
    ) as http:
        yield http
    await rt.close()


async def test_transfer_starts_one_payer_instance_with_engine_ids(
    client: httpx.AsyncClient, started: Started
) -> None:
    resp = await client.post(
        "/channel/transfer", json=GOOD, headers={"Platform-TenantId": "bank-a"}
    )
    assert resp.status_code == 202
    tx = resp.json()["transactionId"]
    (variables,) = started.variables
    assert variables["transactionId"] == tx
    for key in ("transactionId", "quoteId", "transferId"):
        assert ids.slot_of(variables[key]) == 7  # the router can route every callback here
    assert variables["tenant"] == "bank-a"
    # Nothing an instance does not need: no empty correlation id, no waits the deployed
    # definition already fixes (engine_workers.bpmn); the transfer's wait depends on its expiry.
    assert "correlationId" not in variables
    assert not set(variables) & {"partyWait", "quoteWait", "statusWait"}
    assert variables["transferWait"] == "PT40.000S"
    status = await client.get(f"/channel/transfer/{tx}", headers={"Platform-TenantId": "bank-a"})
    assert status.json()["status"] == "RECEIVED"
    assert status.json()["final"] is False


async def test_same_correlation_id_is_one_payment(
    client: httpx.AsyncClient, started: Started
) -> None:
    headers = {"Platform-TenantId": "bank-a", "X-CorrelationID": "order-42"}
    first = await client.post("/channel/transfer", json=GOOD, headers=headers)
    second = await client.post("/channel/transfer", json=GOOD, headers=headers)
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json()["transactionId"] == first.json()["transactionId"]
    assert len(started.variables) == 1
    assert started.variables[0]["correlationId"] == "order-42"
    # The same correlation id in another tenant is another payment.
    other = await client.post(
        "/channel/transfer", json=GOOD, headers={**headers, "Platform-TenantId": "bank-b"}
    )
    assert other.json()["transactionId"] != first.json()["transactionId"]
    assert len(started.variables) == 2


async def test_other_tenants_payment_is_not_found(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/channel/transfer", json=GOOD, headers={"Platform-TenantId": "bank-a"}
    )
    tx = resp.json()["transactionId"]
    other = await client.get(f"/channel/transfer/{tx}", headers={"Platform-TenantId": "bank-b"})
    assert other.status_code == 404
    assert other.json()["errorInformation"]["errorCode"] == "3208"


def _mutated(path: list[str], value: Any) -> dict[str, Any]:
    import copy

    body = copy.deepcopy(GOOD)
    node = body
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("body", "code", "named"),
    [
        (_mutated(["amount", "amount"], "12.50"), "3100", "amount/amount"),
        (_mutated(["amount", "amount"], "-3"), "3100", "amount/amount"),
        (_mutated(["amount", "currency"], "usd"), "3100", "amount/currency"),
        (_mutated(["payee", "partyIdInfo", "partyIdType"], "PHONE"), "3100", "partyIdType"),
        (_mutated(["payer", "partyIdInfo", "partyIdentifier"], None), "3102", "partyIdentifier"),
        (_mutated(["amount"], None), "3102", "amount"),
        ({**GOOD, "surprise": 1}, "3100", "surprise"),
    ],
)
async def test_bad_requests_are_refused_and_start_nothing(
    client: httpx.AsyncClient, started: Started, body: dict[str, Any], code: str, named: str
) -> None:
    resp = await client.post(
        "/channel/transfer", json=body, headers={"Platform-TenantId": "bank-a"}
    )
    assert resp.status_code == 400
    info = resp.json()["errorInformation"]
    assert info["errorCode"] == code
    assert named in info["errorDescription"]
    assert started.variables == []


async def test_missing_tenant_is_3102_naming_the_header(
    client: httpx.AsyncClient, started: Started
) -> None:
    resp = await client.post("/channel/transfer", json=GOOD)
    assert resp.status_code == 400
    assert resp.json()["errorInformation"]["errorCode"] == "3102"
    assert "Platform-TenantId" in resp.json()["errorInformation"]["errorDescription"]
    assert started.variables == []


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_full_engine_refuses_new_payments_and_stores_nothing(
    tmp_path: Path, started: Started
) -> None:
    settings = engine_settings(tmp_path, max_open_payments=2)
    rt = Runtime.from_settings(settings)
    clock = Clock()
    door = Admission(rt.store.count_open, settings.max_open_payments, refresh_s=1, clock=clock)
    app = create_app(rt, started, ready=lambda: True, admission=door)
    headers = {"Platform-TenantId": "bank-a"}
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://engine"
        ) as http:
            first, second, third = [
                await http.post("/channel/transfer", json=GOOD, headers=headers) for _ in range(3)
            ]
            assert [r.status_code for r in (first, second, third)] == [202, 202, 503]
            assert third.headers["Retry-After"] == "1"
            info = third.json()["errorInformation"]
            assert info["errorCode"] == "2003"
            assert "2 payments in flight, limit 2" in info["errorDescription"]
            assert len(started.variables) == 2  # the refused one started nothing
            assert await rt.store.count_open() == 2  # and stored nothing

            # one payment ends: at the next count there is room again
            await rt.store.set_status(first.json()["transactionId"], "COMMITTED")
            again = await http.post("/channel/transfer", json=GOOD, headers=headers)
            assert again.status_code == 503  # the count is not due yet
            clock.now += 1
            again = await http.post("/channel/transfer", json=GOOD, headers=headers)
            assert again.status_code == 202
            assert len(started.variables) == 3
            assert door.refused == 2
    finally:
        await rt.close()


async def test_no_limit_by_default(client: httpx.AsyncClient, started: Started) -> None:
    for _ in range(5):
        resp = await client.post(
            "/channel/transfer", json=GOOD, headers={"Platform-TenantId": "bank-a"}
        )
        assert resp.status_code == 202
    assert len(started.variables) == 5
