"""kill -9 of an engine's worker processes under load: every payment final, the money agrees.

One engine, two worker processes (each serves the channel API and works external tasks; they
share the engine's payment store). 160 payments are offered at 8/s, alternating between the two
processes; three times during the load one process is killed with SIGKILL and started again on
its port. A client whose request fails (connection refused or reset, 5xx) retries on the other
process with the same `X-CorrelationID`, as PH-EE channel clients are told to.

Afterwards, payment by payment (from the engine's store, the AMS and the switch double):
- every payment the client was told about is final;
- each correlation id got exactly one payment, the same one on every answer;
- COMMITTED at the channel <=> BOOKED in the AMS <=> COMMITTED at the switch;
- funds still held in the AMS only for FAILED payments;
- no money moved for a payment the client was never told about;
- the switch's committed count equals the AMS's booked count, and the ledger balances.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from harness import stack
from harness.components.operaton import RunningEngine
from harness.stack import PaymentStack
from phee.sql import make_engine
from tests.support import poll

pytestmark = pytest.mark.timeout(900)

PAYMENTS = 160
RATE = 8.0
KILLS_AT_S = (4.0, 9.0, 14.0)
ENGINE = "engine-a"
HEADERS = {"Platform-TenantId": stack.TENANT}


@pytest.fixture(scope="module")
def two_workers(
    tmp_path_factory: pytest.TempPathFactory, engine_a: RunningEngine
) -> Iterator[PaymentStack]:
    workdir: Path = tmp_path_factory.mktemp("kills")
    running = stack.start(
        workdir,
        {ENGINE: engine_a},
        workers_per_engine=2,
        payers=20,
        payees=20,
        extra_engine_env={
            "PHEE_ENGINE_TRANSFER_EXPIRY_S": "8",
            "PHEE_ENGINE_EXPIRY_GRACE_S": "2",
            "PHEE_ENGINE_STATUS_WAIT": "PT8S",
            "PHEE_ENGINE_PARTY_WAIT": "PT15S",
            "PHEE_ENGINE_QUOTE_WAIT": "PT15S",
            # a killed process's tasks are taken over once their lock runs out (a request it
            # sent and got no answer to is resent by the taker)
            "PHEE_ENGINE_LOCK_MS": "5000",
            "PHEE_ENGINE_RESEND_AFTER_MS": "5000",
        },
    )
    try:
        yield running
    finally:
        running.stop()


@dataclass
class Client:
    """What the channel client was told: correlation id -> transaction id."""

    told: dict[str, str] = field(default_factory=dict)
    conflicting: list[str] = field(default_factory=list)
    retries: int = 0
    gave_up: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    async def pay(self, http: httpx.AsyncClient, urls: list[str], i: int) -> None:
        correlation = f"kill-{i}-{uuid.uuid4()}"
        body = stack.transfer_request(
            stack.payer_party(i % 20), stack.payee_party((i + 3) % 20), f"{1 + i % 7}.25"
        )
        deadline = time.monotonic() + 120
        attempt = 0
        while time.monotonic() < deadline:
            url = urls[(i + attempt) % len(urls)]
            attempt += 1
            try:
                resp = await http.post(
                    f"{url}/channel/transfer",
                    json=body,
                    headers={**HEADERS, "X-CorrelationID": correlation},
                )
            except httpx.TransportError:
                resp = None
            if resp is not None and resp.status_code in (200, 202):
                tx = str(resp.json()["transactionId"])
                if self.told.setdefault(correlation, tx) != tx:
                    self.conflicting.append(correlation)
                return
            if resp is not None and 400 <= resp.status_code < 500:  # a definite no: not retried
                self.rejected.append(f"{correlation}: {resp.status_code} {resp.text[:200]}")
                return
            self.retries += 1  # refused: the same request again, on the other process
            await asyncio.sleep(0.5)
        self.gave_up.append(correlation)


async def offer(running: PaymentStack, client: Client, kills: list[float]) -> None:
    urls = [running.channel(ENGINE, r) for r in range(2)]
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        t0 = time.monotonic()
        killer = asyncio.create_task(asyncio.to_thread(kill_and_restart, running, t0, kills))
        payments = []
        for i in range(PAYMENTS):
            await asyncio.sleep(max(0.0, t0 + i / RATE - time.monotonic()))
            payments.append(asyncio.create_task(client.pay(http, urls, i)))
        await asyncio.gather(*payments)
        await killer


def kill_and_restart(running: PaymentStack, t0: float, kills: list[float]) -> None:
    """Kill replicas 0, 1, 0 at the planned times, each started again before the next kill."""
    for n, at in enumerate(KILLS_AT_S):
        time.sleep(max(0.0, t0 + at - time.monotonic()))
        replica = n % 2
        running.kill_worker(ENGINE, replica)
        kills.append(time.monotonic() - t0)
        running.restart_worker(ENGINE, replica)


def final_status(running: PaymentStack, tx: str) -> dict[str, Any] | None:
    for replica in range(2):
        try:
            resp = httpx.get(
                f"{running.channel(ENGINE, replica)}/channel/transfer/{tx}",
                headers=HEADERS,
                timeout=10,
            )
        except httpx.TransportError:
            continue
        body: dict[str, Any] = resp.json()
        return body if body.get("final") else None
    return None


def test_kill_9_of_workers_three_times_loses_no_money(
    two_workers: PaymentStack, engine_a: RunningEngine
) -> None:
    client = Client()
    kills: list[float] = []
    asyncio.run(offer(two_workers, client, kills))
    assert len(kills) == 3, kills
    assert client.rejected == []
    assert client.gave_up == [], "the client never got an answer for these"
    assert client.conflicting == [], "a correlation id got two different payments"
    assert len(client.told) == PAYMENTS

    outcomes: dict[str, dict[str, Any]] = {}
    for tx in client.told.values():
        outcomes[tx] = poll(
            functools.partial(final_status, two_workers, tx), what=f"{tx} final", deadline_s=180
        )

    # Every payment the engine ever recorded for this test (also those nobody was told about).
    store = make_engine(engine_a.payments_url)
    try:
        with store.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT transaction_id, correlation_id, status FROM payments "
                    "WHERE correlation_id LIKE 'kill-%'"
                )
            ).all()
    finally:
        store.dispose()
    recorded = {row.transaction_id: row for row in rows}
    per_correlation: dict[str, int] = {}
    for row in rows:
        per_correlation[row.correlation_id] = per_correlation.get(row.correlation_id, 0) + 1
    assert all(n == 1 for n in per_correlation.values())
    told = set(client.told.values())
    assert told <= set(recorded)

    ams = two_workers.ams.endpoint("http")
    switch = two_workers.switch.endpoint("http")
    booked, committed_at_switch = set(), set()
    with httpx.Client(timeout=10) as http:
        for tx in recorded:
            hold = http.get(f"{ams}/transfers/{tx}")
            state = hold.json().get("state") if hold.status_code == 200 else None
            if state is not None:
                assert tx in told, f"money moved for {tx}, a payment the client was never told of"
            status = outcomes[tx]["status"] if tx in outcomes else recorded[tx].status
            if state == "BOOKED":
                booked.add(tx)
            if state == "BLOCKED":
                assert status == "FAILED", f"{tx} holds funds but is {status}"
            transfer_id = outcomes.get(tx, {}).get("transferId")
            if transfer_id:
                seen = http.get(f"{switch}/admin/transfers/{transfer_id}")
                if seen.status_code == 200 and seen.json()["transferState"] == "COMMITTED":
                    committed_at_switch.add(tx)
        metrics = http.get(f"{switch}/metrics").text
        balanced = http.get(f"{ams}/ledger/check").json()["balanced"]
    committed = {tx for tx, o in outcomes.items() if o["status"] == "COMMITTED"}
    switch_total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("phee_switch_transfers_total{") and 'state="COMMITTED"' in line
    )
    counts = {
        s: sum(1 for o in outcomes.values() if o["status"] == s)
        for s in ("COMMITTED", "ABORTED", "FAILED")
    }
    print(
        f"kills at {[round(k, 1) for k in kills]} s; client retries {client.retries}; "
        f"final {counts}; booked {len(booked)}; switch committed {int(switch_total)}"
    )
    reasons: dict[str, int] = {}
    for o in outcomes.values():
        if o["status"] != "COMMITTED":
            reasons[str(o["reason"])] = reasons.get(str(o["reason"]), 0) + 1
    print(f"not committed, by reason: {reasons}")
    assert committed == booked == committed_at_switch
    assert int(switch_total) == len(booked)
    assert balanced
