"""The importer's core without Kafka: decoding, the status mapping, and exactly-once batches.

The records are a real capture (tests/resources/cdc/backoffice-records.jsonl, made by
`python -m tests.support.cdc_payments`): Operaton 1.0.3's history of three payments, streamed by
Debezium 3.6.1 through Kafka Connect: a payer payment committed, a payer payment whose incident
was resolved before it was aborted, and a payee instance still running. Batches are applied to a
SQLite file, the back office's default database.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from backoffice import audit, mapping, schema
from backoffice.batch import Applier
from backoffice.db import Database, now
from backoffice.outcome import Dead, Step, unwatched
from backoffice.records import BadRecord, CdcRecord, decode, position_text, split_topic
from phee import cdc

pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]

CAPTURE = Path(__file__).parents[1] / "resources" / "cdc" / "backoffice-records.jsonl"
KEY = b"unit-audit-key"
CAPTURED_ENGINE = "engine-cap"
#: what the capture holds (history tables the back office keeps, and the rest)
STEPS, VARIABLES, INCIDENTS, TOTAL = 77, 86, 3, 297


def captured() -> list[dict[str, Any]]:
    """Each record as {"topic", "key": dict, "value": dict}."""
    out = []
    for line in CAPTURE.read_text().splitlines():
        doc = json.loads(line)
        out.append({"topic": doc["topic"], "key": json.loads(doc["key"]),
                    "value": json.loads(doc["value"])})  # fmt: skip
    return out


def encode(docs: list[dict[str, Any]], engine: str = "east") -> list[CdcRecord]:
    """The records as `engine` would have sent them (its name in topic and source)."""
    out = []
    for d in docs:
        split = split_topic(d["topic"])
        assert split is not None
        value = copy.deepcopy(d["value"])
        value["source"]["name"] = engine
        out.append(decode(engine, split[1], json.dumps(d["key"]).encode(),
                          json.dumps(value).encode()))  # fmt: skip
    return out


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


def transfers(db: Database, tenant: str = "default") -> dict[str, dict[str, Any]]:
    with db.begin() as conn:
        rows = db.tenant(conn, tenant).execute(select(schema.transfers)).mappings().all()
        return {r["transaction_id"]: dict(r) for r in rows}


# -- decoding -------------------------------------------------------------------------------------

GOOD = captured()[0]


def _raw(change: dict[str, Any]) -> bytes:
    return json.dumps(change).encode()


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (b"", b'{"id_":"1"}', "empty"),
        (b"{not json", b'{"id_":"1"}', "malformed"),
        (b"[1, 2]", b'{"id_":"1"}', "malformed"),
        (_raw({**GOOD["value"], "op": "t"}), b'{"id_":"1"}', "unknown-op"),
        (_raw({**GOOD["value"], "source": None}), b'{"id_":"1"}', "malformed"),
        (_raw({**GOOD["value"], "after": None}), b'{"id_":"1"}', "malformed"),
        (_raw({**GOOD["value"], "source": {**GOOD["value"]["source"], "lsn": "soon"}}),
         b'{"id_":"1"}', "malformed"),
        (_raw({**GOOD["value"], "source": {**GOOD["value"]["source"], "name": "west"}}),
         b'{"id_":"1"}', "wrong-topic"),
        (_raw(GOOD["value"]), b"", "empty"),
    ],
)  # fmt: skip
def test_bad_records_are_refused_with_a_reason(value: bytes, key: bytes, reason: str) -> None:
    split = split_topic(GOOD["topic"])
    assert split is not None
    with pytest.raises(BadRecord) as info:
        decode(split[0], split[1], key, value)
    assert info.value.reason == reason


def test_topics_name_their_engine_and_history_table() -> None:
    assert split_topic("engine-a.public.act_hi_varinst") == ("engine-a", "act_hi_varinst")
    assert split_topic("engine-a.public.act_ru_task") is None
    assert split_topic("__debezium-heartbeat.engine-a") is None


def test_every_captured_record_decodes_with_a_unique_position() -> None:
    records = encode(captured())
    assert len(records) == TOTAL
    assert len({r.position for r in records}) == TOTAL
    # a position is phee.cdc.position's, as text
    first = records[0]
    raw = captured()[0]
    source = {**raw["value"]["source"], "name": "east"}
    assert first.position == position_text(
        cdc.position({**raw["value"], "source": source}, raw["key"])
    )
    kinds = {mapping.classify(r) for r in records}
    assert kinds == {"step", "variable", "incident", "ignored"}
    assert all(r.process_instance_id for r in records if mapping.classify(r) != "ignored")


def test_a_long_activity_instance_key_gets_a_bounded_position() -> None:
    pos = cdc.Position("east", False, 1, "act_hi_actinst", "id_=" + "x" * 400)
    other = cdc.Position("east", False, 1, "act_hi_actinst", "id_=" + "x" * 399 + "y")
    assert len(position_text(pos)) <= 200
    assert position_text(pos) != position_text(other)


# -- status mapping -------------------------------------------------------------------------------


def _payment(docs: list[dict[str, Any]], outcome: str) -> list[dict[str, Any]]:
    """The captured records of the payment whose `status` variable is `outcome`."""
    pid = next(
        d["value"]["after"]["proc_inst_id_"]
        for d in docs
        if d["topic"].endswith("act_hi_varinst")
        and d["value"]["after"]["name_"] == "status"
        and d["value"]["after"]["text_"] == outcome
    )
    return [d for d in docs if (d["value"]["after"] or {}).get("proc_inst_id_") == pid]


def _fold(records: list[CdcRecord]) -> dict[str, Any]:
    row: dict[str, Any] | None = None
    for rec in records:
        if mapping.is_payment(rec):
            row = row or mapping.new_transfer(rec)
            mapping.fold(row, rec)
    assert row is not None
    return row


def _with_status(docs: list[dict[str, Any]], value: str | None) -> list[dict[str, Any]]:
    out = copy.deepcopy(docs)
    for d in out:
        after = d["value"]["after"]
        if d["topic"].endswith("act_hi_varinst") and after["name_"] == "status":
            if value is None:
                after["name_"] = "notStatus"
            else:
                after["text_"] = value
    return out


@pytest.mark.parametrize(
    ("status", "end_state", "expected"),
    [
        ("COMMITTED", "COMPLETED", "COMMITTED"),
        ("ABORTED", "COMPLETED", "ABORTED"),
        ("FAILED", "COMPLETED", "FAILED"),
        ("EXPIRED", "COMPLETED", "EXPIRED"),
        ("BOGUS", "COMPLETED", "FAILED"),
        (None, "COMPLETED", "FAILED"),
        ("COMMITTED", "EXTERNALLY_TERMINATED", "TERMINATED"),
    ],
)
def test_status_comes_from_the_recorded_outcome_and_the_end_in_any_order(
    status: str | None, end_state: str, expected: str
) -> None:
    docs = _with_status(_payment(captured(), "COMMITTED"), status)
    for d in docs:
        if d["topic"].endswith("act_hi_procinst") and d["value"]["after"]["end_time_"]:
            d["value"]["after"]["state_"] = end_state
    records = encode(docs)
    rows = [_fold(records), _fold(list(reversed(records)))]
    shuffled = list(records)
    random.Random(3).shuffle(shuffled)
    rows.append(_fold(shuffled))
    for row in rows:
        assert row["status"] == expected
        assert row["completed_at"] is not None
        if status is None:
            assert row["reason"] == "the process ended without a recorded outcome"
    assert {k: v for k, v in rows[0].items() if k != "updated_at"} == {
        k: v for k, v in rows[1].items() if k != "updated_at"
    }


def test_an_open_incident_marks_the_payment_exception_until_resolved() -> None:
    records = encode(_payment(captured(), "ABORTED"))
    incident = [r for r in records if r.table == "act_hi_incident"]
    assert [r.row["incident_state_"] for r in incident] == [0, 1, 1]
    opened = records.index(incident[0])
    row = _fold(records[: opened + 1])
    assert (row["status"], row["error_code"], row["error_message"]) == (
        "EXCEPTION",
        "failedExternalTask",
        "switch unreachable",
    )
    row = _fold([r for r in records if not mapping.ended(r)])
    assert row["status"] == "IN_PROGRESS"  # resolved, not ended
    assert _fold(records)["status"] == "ABORTED"


def test_captured_payments_map_to_transfers_with_parties_and_amounts(db: Database) -> None:
    Applier(db, None, ["default"], KEY).apply(encode(captured()), lambda dead: None)
    rows = sorted(transfers(db).values(), key=lambda r: str(r["amount"]))
    assert [(r["direction"], r["status"], str(r["amount"])) for r in rows] == [
        ("PAYER", "COMMITTED", "1.5000"),
        ("PAYER", "ABORTED", "2.5000"),
        ("PAYEE", "IN_PROGRESS", "7.2500"),
    ]
    for row in rows:
        assert row["payer_id"] == "27710101999"
        assert row["payee_id"] == "27710203999"
        assert row["currency"] == "USD"
        assert row["quote_id"] == f"q-{row['transaction_id']}"
    assert rows[0]["payee_dfsp"] == "simpayee"
    assert rows[0]["reason"] == "the switch committed"
    assert rows[1]["reason"] == "no party: the switch refused the lookup"
    assert rows[0]["started_at"] < rows[0]["completed_at"]
    assert rows[2]["completed_at"] is None


def test_variables_keep_operatons_text_and_types(db: Database) -> None:
    Applier(db, None, ["default"], KEY).apply(encode(captured()), lambda dead: None)
    with db.begin() as conn:
        t = db.tenant(conn, "default")
        rows = t.execute(select(schema.variables)).mappings().all()
    by_name = {(r["name"], r["op"]): r for r in rows}
    amounts = {r["value"] for r in rows if r["name"] == "amount"}
    assert '{"amount":"1.50","currency":"USD"}' in amounts
    assert by_name[("partyCallbackOk", "c")]["value"] == "true"
    assert by_name[("partyCallbackOk", "c")]["value_type"] == "boolean"
    assert len(by_name[("note", "c")]["value"]) == 3990  # near the engine's 4000 limit


# -- exactly once ---------------------------------------------------------------------------------


def test_any_batch_cut_any_order_and_any_replay_give_the_same_tables(tmp_path: Path) -> None:
    records = encode(captured())
    results: list[dict[str, Any]] = []
    rng = random.Random(7)
    by_topic: dict[str, list[CdcRecord]] = {}
    for rec in records:
        by_topic.setdefault(rec.table, []).append(rec)
    interleaved: list[CdcRecord] = []  # topics read in another order, each still in order
    for table in sorted(by_topic, reverse=True):
        interleaved.extend(by_topic[table])
    for name, batches in (
        ("one batch", [records]),
        ("record by record", [[r] for r in records]),
        ("other topic order", [interleaved[i : i + 40] for i in range(0, len(records), 40)]),
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
        snap = snapshot(database)
        # when a row was last touched depends on the order seen; nothing else may
        snap["transfers"] = [
            tuple(kv for kv in row if kv[0] != "updated_at") for row in snap["transfers"]
        ]
        results.append(snap)
        assert audit.verify(database, "default", KEY) == []
        database.close()
    assert results[0]["pending"] == 0
    assert len(results[0]["transfers"]) == 3
    assert len(results[0]["steps"]) == STEPS
    assert len(results[0]["variables"]) == VARIABLES
    assert len(results[0]["incidents"]) == INCIDENTS
    for other in results[1:]:
        assert other == results[0]


def test_a_record_delivered_twice_in_one_batch_is_imported_once(db: Database) -> None:
    records = encode(captured())
    result = Applier(db, None, ["default"], KEY).apply(records + records[:50], lambda d: None)
    assert result.imported == STEPS + VARIABLES + INCIDENTS
    assert result.duplicates == sum(1 for r in records[:50] if mapping.classify(r) != "ignored")


def test_records_wait_for_their_tenant_then_move_into_its_schema(db: Database) -> None:
    records = encode(captured())
    applier = Applier(db, None, ["default", "acme"], KEY)
    # the variables topic is read last: every other record waits for the tenant
    early = [r for r in records if r.table != "act_hi_varinst"]
    result = applier.apply(early, lambda dead: None)
    assert result.pending == STEPS + INCIDENTS
    assert result.imported == 0
    assert snapshot(db)["pending"] == result.pending
    applier.apply(records, lambda dead: None)
    after = snapshot(db)
    assert after["pending"] == 0
    assert len(after["steps"]) == STEPS
    assert len(after["variables"]) == VARIABLES
    assert {r["status"] for r in transfers(db).values()} == {"COMMITTED", "ABORTED", "IN_PROGRESS"}


def test_a_tenant_not_served_and_an_instance_ended_without_tenant_go_to_dead_letters(
    db: Database,
) -> None:
    docs = captured()
    committed = {d["value"]["after"]["proc_inst_id_"] for d in _payment(docs, "COMMITTED")}
    for d in docs:  # the committed payment names a tenant we do not serve, the others none
        after = d["value"]["after"]
        if d["topic"].endswith(("act_hi_varinst", "act_hi_detail")) and after["name_"] == "tenant":
            if after["proc_inst_id_"] in committed:
                after["text_"] = "stranger"
            else:
                after["name_"] = "not-the-tenant"
    applier = Applier(db, None, ["default", "acme"], KEY)
    dead: list[Dead] = []
    result = applier.apply(encode(docs), dead.extend)
    assert {d.reason for d in dead} == {"unknown-tenant"}
    assert result.pending > 0  # the others wait: their tenant may still come
    # an instance that ended without a tenant is dead-lettered after the grace, one still
    # running waits on
    assert applier.expire_orphans(now() - timedelta(hours=1), dead.extend) == 0
    expired = applier.expire_orphans(now() + timedelta(seconds=1), dead.extend)
    aborted = [d for d in dead if d.reason == "no-tenant"]
    assert expired == len(aborted) > 0
    kept = [r for r in encode(docs) if mapping.classify(r) != "ignored"]
    payee = sum(1 for r in kept if r.row.get("proc_def_key_") == "phee-payee-quote-transfer")
    assert result.dead + expired + payee == len(kept)  # every kept record: none lost
    assert snapshot(db)["transfers"] == []
    assert snapshot(db)["pending"] == payee
    assert all(d.source.startswith("east/w") for d in dead)
    # a replay sends nothing again
    again: list[Dead] = []
    assert applier.apply(encode(docs), again.extend).dead == 0
    assert again == []


def test_outcomes_are_counted_per_engine_when_a_batch_spans_engines(db: Database) -> None:
    docs = captured()
    applier = Applier(db, None, ["default"], KEY)
    result = applier.apply(encode(docs, "east") + encode(docs, "west"), lambda dead: None)
    for engine in ("east", "west"):
        assert result.by_engine[(engine, "imported")] == STEPS + VARIABLES + INCIDENTS
        assert result.by_engine[(engine, "ignored")] == TOTAL - STEPS - VARIABLES - INCIDENTS
    replay = applier.apply(encode(docs, "west"), lambda dead: None)
    assert replay.by_engine == {
        ("west", "duplicate"): STEPS + VARIABLES + INCIDENTS,
        ("west", "ignored"): TOTAL - STEPS - VARIABLES - INCIDENTS,
    }
    assert len(transfers(db)) == 3  # transaction ids repeat across engines: keyed by instance


def test_audit_entries_are_steps_not_history_cleanup_stamps(db: Database) -> None:
    Applier(db, None, ["default"], KEY).apply(encode(captured()), lambda dead: None)
    with db.begin() as conn:
        t = db.tenant(conn, "default")
        actions = [r.action for r in t.execute(select(schema.audit_log.c.action))]
    assert actions.count("payment-started") == 3
    assert actions.count("payment-completed") == 2
    assert actions.count("incident-open") == actions.count("incident-resolved") == 1
    assert all(a.startswith(("payment-", "step-", "incident-")) for a in actions)


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
    assert result.imported == STEPS + VARIABLES + INCIDENTS
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
    assert log.events[0] == ("begin", Step.TRANSACTION)
    assert log.events[-1] == ("end", Step.TRANSACTION)
    write = log.events.index(("begin", Step.WRITE)), log.events.index(("end", Step.WRITE))
    assert write[0] < log.events.index(("begin", Step.AUDIT)) < write[1]
    assert write[0] < log.events.index(("end", Step.UPSERT_TRANSFERS)) < write[1]


def test_without_an_observer_the_steps_are_one_shared_no_op() -> None:
    assert unwatched(Step.CLAIM) is unwatched(Step.WRITE)


def test_the_payer_flows_payee_dfsp_is_the_party_answers_fspid() -> None:
    answered: dict[str, Any] = {}
    party = {"partyIdInfo": {"partyIdType": "MSISDN", "fspId": "payeefsp"}}
    mapping._fold_variable(answered, "partyCallback", {"ok": True, "body": {"party": party}})
    assert answered["payee_dfsp"] == "payeefsp"
    refused: dict[str, Any] = {}
    error = {"errorInformation": {"errorCode": "3204", "errorDescription": "not found"}}
    mapping._fold_variable(refused, "partyCallback", {"ok": False, "body": error})
    assert "payee_dfsp" not in refused
