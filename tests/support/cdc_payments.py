"""Real payments on a real Operaton engine, whose history Debezium streams to Kafka.

The payment processes (engine_workers/bpmn) are deployed and driven over REST the way the
workers and the router drive them: external tasks fetched and completed with the variables the
handlers return, callbacks correlated as messages with `contract.callback_variables`. No switch,
no account system: the handlers' results are given here. Used by the back-office importer's
integration test and by `PHEE_ENGINE_HISTORY_LEVEL=full python -m tests.support.cdc_payments`
(captures the unit tests' fixture `tests/resources/cdc/backoffice-records.jsonl` at Operaton's
level `full`: every history table the importer may meet, not only the ones level `phee` writes).
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine_workers import bpmn
from harness.components import Running, get
from harness.components.connect import engine_status, register_engine
from harness.components.operaton import RunningEngine, start_engine
from phee import cdc, contract
from phee.engine.client import EngineClient, ExternalTask, TopicRequest
from tests.support import poll

CAPTURE = Path(__file__).parents[1] / "resources" / "cdc" / "backoffice-records.jsonl"
#: a String variable near Operaton's limit: `text_` is varchar(4000); a longer String fails the
#: start with a persistence error (HTTP 500), so JSON documents must stay under 4000 characters
LONG_NOTE = "n" * 3990
WORKER = "capture"


def deployment_files() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in bpmn.paths()}


def payer_variables(tenant: str, amount: str, *, note: str | None = None) -> dict[str, Any]:
    """What the channel API starts a payer instance with (engine_workers/channel.py)."""
    tx = uuid.uuid4().hex[:20]
    variables: dict[str, Any] = {
        "payer": {"partyIdInfo": {"partyIdType": "MSISDN", "partyIdentifier": "27710101999"}},
        "payee": {"partyIdInfo": {"partyIdType": "MSISDN", "partyIdentifier": "27710203999"}},
        "amount": {"amount": amount, "currency": "USD"},
        "transactionId": tx,
        "quoteId": f"q-{tx}",
        "transferId": f"t-{tx}",
        "tenant": tenant,
        "payerFsp": "simpayer",
        "correlationId": f"c-{tx}",
        "partyWait": "PT1H",
        "quoteWait": "PT1H",
        "statusWait": "PT1H",
        "transferWait": "PT1H",
    }
    if note is not None:
        variables["note"] = note
    return variables


async def _one(client: EngineClient, topic: str, business_key: str) -> ExternalTask:
    """The external task of `topic` that belongs to the payment `business_key`."""
    request = TopicRequest(topic, lock_duration_ms=30_000, business_key=business_key)
    for _ in range(30):
        tasks = await client.fetch_and_lock(
            WORKER, [request], max_tasks=1, async_response_timeout_ms=1000
        )
        if tasks:
            return tasks[0]
    raise AssertionError(f"no {topic} task for {business_key}")


async def _callback(client: EngineClient, message: str, business_key: str, body: Any) -> None:
    variables = contract.callback_variables(message, ok=True, body=body, headers={})
    await client.correlate(message, business_key=business_key, variables=variables)


async def committed_payer(client: EngineClient, tenant: str, amount: str, **kw: Any) -> str:
    """A payer payment that the switch commits: every step, callbacks, `status` COMMITTED."""
    v = payer_variables(tenant, amount, **kw)
    bk = str(v["transactionId"])
    await client.start(contract.PAYER_TRANSFER, business_key=bk, variables=v)
    # As the workers do: lock the sending task, "send", and let the answer end the task.
    await _one(client, "fspiop-party-lookup", bk)
    payee = {"partyIdInfo": {**v["payee"]["partyIdInfo"], "fspId": "simpayee"}}
    await _callback(client, contract.MSG_PARTY_CALLBACK, bk, {"party": payee})
    await _one(client, "fspiop-quote", bk)
    quote = {"transferAmount": v["amount"], "payeeFspFee": {"amount": "0", "currency": "USD"}}
    await _callback(client, contract.MSG_QUOTE_CALLBACK, bk, quote)
    await _one(client, "fspiop-transfer", bk)
    await _callback(client, contract.MSG_TRANSFER_CALLBACK, bk, {"transferState": "COMMITTED"})
    await client.complete(
        await _one(client, "fspiop-settle", bk),
        {"transferOutcome": "COMMITTED", "status": "COMMITTED", "reason": "the switch committed"},
    )
    return bk


async def aborted_after_incident(client: EngineClient, tenant: str, amount: str) -> str:
    """A payer payment whose party lookup fails out of retries (an incident), is retried by
    an operator (the incident is resolved), then refused: `phee-outcome` records ABORTED."""
    v = payer_variables(tenant, amount)
    bk = str(v["transactionId"])
    await client.start(contract.PAYER_TRANSFER, business_key=bk, variables=v)
    task = await _one(client, "fspiop-party-lookup", bk)
    await client.failure(
        task, message="switch unreachable", details="connect refused", retries=0, retry_timeout_ms=0
    )
    await client._call(  # an operator sets retries again: the incident is resolved
        "PUT",
        f"/external-task/{task.id}/retries",
        what="set retries",
        json_body={"retries": 1},
    )
    task = await _one(client, "fspiop-party-lookup", bk)
    await client.bpmn_error(task, code="fspiop-refused", message="3200 generic payer error")
    await client.complete(
        await _one(client, "phee-outcome", bk),
        {"status": "ABORTED", "reason": "no party: the switch refused the lookup"},
    )
    return bk


async def payee_in_progress(client: EngineClient, tenant: str) -> str:
    """A payee quote-and-transfer instance the router started, still waiting for its quote."""
    tx = uuid.uuid4().hex[:20]
    request = {
        "quoteId": f"q-{tx}",
        "transactionId": tx,
        "payee": {"partyIdInfo": {"partyIdType": "MSISDN", "partyIdentifier": "27710203999",
                                  "fspId": "simpayee"}},
        "payer": {"partyIdInfo": {"partyIdType": "MSISDN", "partyIdentifier": "27710101999",
                                  "fspId": "simpayer"}},
        "amountType": "SEND",
        "amount": {"amount": "7.25", "currency": "USD"},
        "transactionType": {"scenario": "TRANSFER", "initiator": "PAYER",
                            "initiatorType": "CONSUMER"},
    }  # fmt: skip
    variables = {
        "tenant": tenant,
        "quoteRequest": request,
        "quoteId": request["quoteId"],
        "transactionId": tx,
        "requester": "simpayer",
        "fspiopVersion": "1.1",
    }
    await client.start(contract.PAYEE_QUOTE_TRANSFER, business_key=tx, variables=variables)
    return tx


async def run_payments(rest_url: str, tenant: str = "default") -> dict[str, str]:
    """Deploy the processes and run the sample payments; business key -> expected status."""
    async with EngineClient(rest_url) as client:
        await client.deploy("phee-capture", deployment_files())
        committed = await committed_payer(client, tenant, "1.50", note=LONG_NOTE)
        aborted = await aborted_after_incident(client, tenant, "2.50")
        payee = await payee_in_progress(client, tenant)
    return {committed: "COMMITTED", aborted: "ABORTED", payee: "IN_PROGRESS"}


def engine_database(engine: RunningEngine) -> cdc.EngineDatabase:
    return cdc.EngineDatabase("127.0.0.1", engine.sql_port, "engine", "postgres")


def connect_engine(connect: Running, name: str, engine: RunningEngine) -> None:
    """Register the engine's connector and wait until it runs."""
    register_engine(connect, name, engine_database(engine))

    def running() -> bool:
        status = engine_status(connect, name)
        assert status is not None, f"{name} has no connector"
        assert not status.failures, status.failures
        return status.running

    poll(running, what=f"{name}'s connector running", deadline_s=90)


@dataclass(frozen=True)
class CdcSite:
    kafka: Running
    connect: Running
    engine: RunningEngine


@contextmanager
def cdc_site(workdir: Path, kafka: Running | None = None) -> Iterator[CdcSite]:
    """Kafka (unless given), one engine and a Connect worker; stopped afterwards."""
    own_kafka = kafka is None
    kafka_run = kafka or get("kafka").start(workdir / "kafka")
    try:
        engine = start_engine(workdir, "engine")
        try:
            comp = get("kafka-connect")
            connect = comp.start(
                workdir / "connect",
                bootstrap=kafka_run.endpoint("bootstrap"),
                group_id=f"cdc-{uuid.uuid4().hex[:6]}",
            )
            try:
                yield CdcSite(kafka_run, connect, engine)
            finally:
                comp.stop(connect)
        finally:
            engine.stop()
    finally:
        if own_kafka:
            get("kafka").stop(kafka_run)


def capture(workdir: Path, engine_name: str = "engine-cap") -> int:
    """Run the sample payments with CDC and write every history record to CAPTURE."""
    from phee.kafka import Idle, read_from_start

    async def topics(bootstrap: str) -> list[str]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            return sorted(t for t in await consumer.topics() if t.startswith(f"{engine_name}."))
        finally:
            await consumer.stop()

    with cdc_site(workdir) as site:
        bootstrap = site.kafka.endpoint("bootstrap")
        connect_engine(site.connect, engine_name, site.engine)
        expected = asyncio.run(run_payments(site.engine.rest_urls[0]))
        lines: list[str] = []

        def ended() -> bool:
            found = asyncio.run(topics(bootstrap))
            return f"{engine_name}.public.act_hi_incident" in found

        poll(ended, what="the incident topic", deadline_s=60)
        for topic in asyncio.run(topics(bootstrap)):
            for rec in asyncio.run(read_from_start(bootstrap, topic, Idle(3.0))):
                lines.append(
                    json.dumps(
                        {
                            "topic": topic,
                            "key": (rec.key or b"").decode(),
                            "value": (rec.value or b"").decode(),
                        }
                    )
                )
    CAPTURE.write_text("\n".join(lines) + "\n")
    print(f"{len(lines)} records; payments {expected}", file=sys.stderr)
    return len(lines)


if __name__ == "__main__":  # pragma: no cover - a developer's tool
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        capture(Path(tmp))
