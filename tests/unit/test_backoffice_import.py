"""The importer's core without Kafka: decoding, the status mapping, and exactly-once batches.

The records are a real capture: two payer payments run through Zeebe 8.5.8 and the Kafka exporter
(tests/resources/zeebe-payer-records.jsonl, deployments left out). Batches are applied to a
SQLite file, the back office's default database.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from backoffice import audit, mapping, schema
from backoffice.batch import Applier
from backoffice.db import Database
from backoffice.outcome import Dead, Step, unwatched
from backoffice.records import BadRecord, ZeebeRecord, decode

CAPTURE = Path(__file__).parents[1] / "resources" / "zeebe-payer-records.jsonl"
KEY = b"unit-audit-key"


def captured() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CAPTURE.read_text().splitlines()]


def encode(docs: list[dict[str, Any]], engine: str = "east") -> list[ZeebeRecord]:
    return [decode(engine, json.dumps(d).encode()) for d in docs]


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'bo.db'}")
    database.migrate_control()
    for tenant in ("default", "acme"):
        database.provision(tenant)
    return database


def snapshot(db: Database, tenant: str = "default") -> dict[str, Any]:
    """Every tenant table's rows (what must not depend on how batches were cut)."""
    out: dict[str, Any] = {}
    with db.begin() as conn:
        t = db.tenant(conn, tenant)
        for table in (schema.steps, schema.variables, schema.incidents, schema.transfers):
            rows = t.execute(select(table)).mappings().all()
            out[table.name] = sorted((tuple(sorted(r.items())) for r in rows), key=repr)
        out["audit"] = t.execute(select(func.count()).select_from(schema.audit_log)).scalar()
        out["pending"] = t.execute(
            select(func.count()).select_from(schema.pending_records)
        ).scalar()
    return out


# -- decoding -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"{not json", "malformed"),
        (b"[1, 2]", "malformed"),
        (b'{"partitionId": 1}', "malformed"),
        (
            b'{"partitionId":1,"position":2,"key":3,"timestamp":4,"recordType":"EVENT",'
            b'"valueType":"SOMETHING_NEW","intent":"X","value":{}}',
            "unknown-value-type",
        ),
        (
            b'{"partitionId":1,"position":2,"key":3,"timestamp":4,"recordType":"GOSSIP",'
            b'"valueType":"JOB","intent":"X","value":{}}',
            "unknown-record-type",
        ),
        (
            b'{"partitionId":1,"position":"2","key":3,"timestamp":4,"recordType":"EVENT",'
            b'"valueType":"JOB","intent":"X","value":{}}',
            "malformed",
        ),
    ],
)
def test_bad_records_are_refused_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(BadRecord) as info:
        decode("east", raw)
    assert info.value.reason == reason


def test_every_captured_record_decodes_with_its_coordinates() -> None:
    records = encode(captured())
    assert len(records) == 404
    positions = [r.position for r in records]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
    kinds = {mapping.classify(r) for r in records}
    assert kinds == {"step", "variable", "ignored"}


# -- status mapping -------------------------------------------------------------------------------


def instance_records(status: str | None, *, end: str = "ELEMENT_COMPLETED") -> list[ZeebeRecord]:
    """A minimal payment instance: started, a status variable (optional), then ended."""
    pik = 100
    base = {"partitionId": 1, "timestamp": 1_700_000_000_000, "recordType": "EVENT"}
    proc = {
        "processInstanceKey": pik,
        "bpmnProcessId": "phee-payer-transfer",
        "elementId": "phee-payer-transfer",
        "bpmnElementType": "PROCESS",
    }
    docs: list[dict[str, Any]] = [
        {**base, "position": 1, "key": 101, "valueType": "VARIABLE", "intent": "CREATED",
         "value": {**proc, "scopeKey": pik, "name": "tenant", "value": '"default"'}},
        {**base, "position": 2, "key": pik, "valueType": "PROCESS_INSTANCE",
         "intent": "ELEMENT_ACTIVATED", "value": proc},
    ]  # fmt: skip
    if status is not None:
        docs.append(
            {**base, "position": 3, "key": 102, "valueType": "VARIABLE", "intent": "CREATED",
             "value": {**proc, "scopeKey": pik, "name": "status", "value": json.dumps(status)}}
        )  # fmt: skip
    docs.append(
        {**base, "position": 4, "key": pik, "valueType": "PROCESS_INSTANCE", "intent": end,
         "value": proc}
    )  # fmt: skip
    return encode(docs)


@pytest.mark.parametrize(
    ("status", "end", "expected"),
    [
        ("COMMITTED", "ELEMENT_COMPLETED", "COMMITTED"),
        ("ABORTED", "ELEMENT_COMPLETED", "ABORTED"),
        ("FAILED", "ELEMENT_COMPLETED", "FAILED"),
        ("EXPIRED", "ELEMENT_COMPLETED", "EXPIRED"),
        ("BOGUS", "ELEMENT_COMPLETED", "FAILED"),
        (None, "ELEMENT_COMPLETED", "FAILED"),
        ("COMMITTED", "ELEMENT_TERMINATED", "TERMINATED"),
    ],
)
def test_status_comes_from_the_recorded_outcome_and_the_end_event(
    status: str | None, end: str, expected: str
) -> None:
    recs = instance_records(status, end=end)
    row = mapping.new_transfer(recs[0])
    for rec in recs:
        mapping.fold(row, rec)
    assert row["status"] == expected
    assert row["completed_at"] is not None
    if status is None:
        assert row["reason"] == "the process ended without a recorded outcome"
    # a replay of the same records changes nothing
    before = dict(row)
    assert not any(mapping.fold(row, rec) for rec in recs)
    assert row == before


def test_an_incident_marks_the_payment_exception_until_resolved() -> None:
    recs = instance_records("COMMITTED")[:2]
    row = mapping.new_transfer(recs[0])
    for rec in recs:
        mapping.fold(row, rec)
    incident = {
        "partitionId": 1, "timestamp": 1_700_000_000_500, "recordType": "EVENT",
        "valueType": "INCIDENT", "key": 900,
        "value": {"processInstanceKey": 100, "bpmnProcessId": "phee-payer-transfer",
                  "errorType": "JOB_NO_RETRIES", "errorMessage": "AMS down", "elementId": "settle"},
    }  # fmt: skip
    mapping.fold(row, encode([{**incident, "position": 10, "intent": "CREATED"}])[0])
    assert (row["status"], row["error_code"], row["error_message"]) == (
        "EXCEPTION",
        "JOB_NO_RETRIES",
        "AMS down",
    )
    mapping.fold(row, encode([{**incident, "position": 11, "intent": "RESOLVED"}])[0])
    assert row["status"] == "IN_PROGRESS"


def test_captured_payments_map_to_committed_transfers_with_parties_and_amounts() -> None:
    rows: dict[int, dict[str, Any]] = {}
    for rec in encode(captured()):
        if mapping.classify(rec) == "ignored" or not mapping.is_payment(rec):
            continue
        pik = rec.process_instance_key
        assert pik is not None
        row = rows.setdefault(pik, mapping.new_transfer(rec))
        mapping.fold(row, rec)
    assert len(rows) == 2
    amounts = sorted(str(r["amount"]) for r in rows.values())
    assert amounts == ["1.5", "2.5"]
    for row in rows.values():
        assert row["status"] == "COMMITTED"
        assert row["direction"] == "PAYER"
        assert row["payer_id"].startswith("2771")
        assert row["payee_id"].startswith("2772")
        assert row["payee_dfsp"] == "simpayee"
        assert row["currency"] == "USD"
        assert row["started_at"] < row["completed_at"]


# -- exactly once ---------------------------------------------------------------------------------


def test_any_batch_cut_and_any_replay_give_the_same_tables(tmp_path: Path) -> None:
    records = encode(captured())
    results: list[dict[str, Any]] = []
    rng = random.Random(7)
    for name, batches in (
        ("one batch", [records]),
        ("record by record", [[r] for r in records]),
        (
            "random cuts with replays",
            [records[: rng.randrange(len(records))] for _ in range(8)] + [records, records],
        ),
    ):
        database = Database(f"sqlite:///{tmp_path / name.replace(' ', '-')}.db")
        database.migrate_control()
        database.provision("default")
        applier = Applier(database, None, ["default"], KEY)
        dead: list[Dead] = []
        for batch in batches:
            applier.apply(batch, dead.extend)
        assert dead == []
        results.append(snapshot(database))
        assert audit.verify(database, "default", KEY) == []
        database.close()
    assert results[0]["pending"] == 0
    assert len(results[0]["transfers"]) == 2
    assert len(results[0]["steps"]) == 146
    assert len(results[0]["variables"]) == 44
    assert results[1] == results[0]
    assert results[2] == results[0]


def test_records_wait_for_their_tenant_then_move_into_its_schema(db: Database) -> None:
    records = encode(captured())
    first_tenant = next(i for i, r in enumerate(records) if mapping.tenant_of(r))
    applier = Applier(db, None, ["default", "acme"], KEY)
    # Zeebe writes some variables before `tenant`: a batch can end before the tenant is known.
    early = records[:first_tenant]
    result = applier.apply(early, lambda dead: None)
    assert result.pending > 0
    assert result.imported == 0
    assert snapshot(db)["pending"] == result.pending
    applier.apply(records, lambda dead: None)
    after = snapshot(db)
    assert after["pending"] == 0
    assert len(after["steps"]) == 146
    assert len(after["variables"]) == 44


def test_a_tenant_not_served_and_an_instance_without_tenant_go_to_dead_letters(
    db: Database,
) -> None:
    docs = captured()
    pik_a = docs[[d["valueType"] for d in docs].index("VARIABLE")]["value"]["processInstanceKey"]
    for d in docs:  # the first payment names a tenant we do not serve, the second none at all
        if d["valueType"] == "VARIABLE" and d["value"]["name"] == "tenant":
            if d["value"]["processInstanceKey"] == pik_a:
                d["value"]["value"] = '"stranger"'
            else:
                d["value"]["name"] = "not-the-tenant"
    applier = Applier(db, None, ["default", "acme"], KEY)
    dead: list[Dead] = []
    result = applier.apply(encode(docs), dead.extend)
    reasons = {d.reason for d in dead}
    assert reasons == {"unknown-tenant", "no-tenant"}
    kept = [r for r in encode(docs) if mapping.classify(r) != "ignored"]
    assert result.dead == len(dead) == len(kept)  # every stored kind of record, none lost
    assert snapshot(db)["transfers"] == []
    assert snapshot(db)["pending"] == 0
    assert all(d.source.startswith("east/1/") for d in dead)


def test_outcomes_are_counted_per_engine_when_a_batch_spans_engines(db: Database) -> None:
    docs = captured()
    applier = Applier(db, None, ["default"], KEY)
    result = applier.apply(encode(docs, "east") + encode(docs, "west"), lambda dead: None)
    for engine in ("east", "west"):
        assert result.by_engine[(engine, "imported")] == 146 + 44
        assert result.by_engine[(engine, "ignored")] == 404 - 146 - 44
    replay = applier.apply(encode(docs, "west"), lambda dead: None)
    assert replay.by_engine == {("west", "duplicate"): 404}


# -- the step observer ----------------------------------------------------------------------------


class StepLog:
    """A step observer that notes when each step begins and ends."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Step]] = []

    @contextmanager
    def step(self, name: Step) -> Iterator[None]:
        self.events.append(("begin", name))
        yield
        self.events.append(("end", name))


def test_an_observer_sees_every_step_of_the_transaction_nested_in_order(db: Database) -> None:
    log = StepLog()
    applier = Applier(db, None, ["default"], KEY, observer=log)
    result = applier.apply(encode(captured()), lambda dead: None)
    assert result.imported == 146 + 44
    begun = [name for event, name in log.events if event == "begin"]
    assert begun == [
        Step.TRANSACTION,
        Step.CLAIM,
        Step.RESOLVE,
        Step.MAP,
        Step.FOLD,
        Step.WRITE,
        Step.UPSERT_TRANSFERS,
        Step.AUDIT,
    ]
    # the transaction holds every step, and the write holds the transfers and the audit chain
    assert log.events[0] == ("begin", Step.TRANSACTION)
    assert log.events[-1] == ("end", Step.TRANSACTION)
    write = log.events.index(("begin", Step.WRITE)), log.events.index(("end", Step.WRITE))
    assert write[0] < log.events.index(("begin", Step.AUDIT)) < write[1]
    assert write[0] < log.events.index(("end", Step.UPSERT_TRANSFERS)) < write[1]


def test_without_an_observer_the_steps_are_one_shared_no_op() -> None:
    assert unwatched(Step.CLAIM) is unwatched(Step.WRITE)
