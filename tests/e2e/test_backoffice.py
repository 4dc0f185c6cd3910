"""The back office against two real engines: two Operaton engines (each over its own
PostgreSQL) whose history Debezium streams through one Kafka Connect worker into the session's
Kafka, real OpenSearch, payments through the whole stack, imported into SQLite, MariaDB and
PostgreSQL; then the importer killed, joined by a second one, and stopped during 500 payments.

What the back office must hold is computed from the engines' history topics themselves (every
change event of a process instance, once per CDC position, filed under the tenant its `tenant`
variable names, counted as decision 0018 and backoffice/mapping.py document) and from what the
channel API told the client, never from the importer's own counters.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from backoffice import audit, schema
from backoffice.db import Database
from backoffice.search import Search
from backoffice.settings import BackofficeSettings
from harness import stack
from harness.components import Running, get
from harness.components.operaton import RunningEngine, start_engine
from harness.services import start_service, stop_service
from harness.stack import PaymentStack
from phee import cdc, contract
from phee.kafka import Record
from tests.conftest import STARTED, start_component
from tests.support import poll
from tests.support.backoffice import (
    fresh_database_url,
    history_topics,
    read_topics,
    run_importer_until,
)
from tests.support.cdc_payments import connect_engine

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

ENGINES = ("bo-east", "bo-west")
TENANTS = ("acme", "globex")
AUDIT_KEY = "e2e-audit-key"
UNKNOWN_PAYEE = "27729999999"


@dataclass(frozen=True)
class Sent:
    engine: str
    tenant: str
    transaction_id: str
    status: str
    reason: str
    amount: str
    payer: str
    payee: str


@pytest.fixture(scope="module")
def bo_engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RunningEngine]]:
    """Two engines of their own (each its own PostgreSQL), so their history topics hold only
    this module's payments."""
    workdir = tmp_path_factory.mktemp("bo-engines")
    runs: dict[str, RunningEngine] = {}
    try:
        for name in ENGINES:
            runs[name] = start_engine(workdir, name)
            STARTED.append(runs[name].running())
        yield runs
    finally:
        for engine in runs.values():
            engine.stop()


@pytest.fixture(scope="module")
def bo_connect(
    tmp_path_factory: pytest.TempPathFactory,
    kafka: Running,
    bo_engines: dict[str, RunningEngine],
) -> Iterator[Running]:
    """One Connect worker over the session's Kafka, with each engine's Debezium connector
    registered and running (stopped before the engines it reads)."""
    run = start_component(
        "kafka-connect",
        tmp_path_factory.mktemp("bo-connect"),
        bootstrap=kafka.endpoint("bootstrap"),
        group_id=f"bo-cdc-{uuid.uuid4().hex[:6]}",
    )
    try:
        for name, engine in bo_engines.items():
            connect_engine(run, name, engine)
        yield run
    finally:
        get("kafka-connect").stop(run)


@pytest.fixture(scope="module")
def bo_stack(
    tmp_path_factory: pytest.TempPathFactory,
    bo_engines: dict[str, RunningEngine],
    bo_connect: Running,
) -> Iterator[PaymentStack]:
    running = stack.start(tmp_path_factory.mktemp("bo-stack"), bo_engines, payers=20, payees=20)
    try:
        yield running
    finally:
        running.stop()


def send_payments(payments: PaymentStack, count: int, *, failing_every: int = 0) -> list[Sent]:
    """Payments round robin over engines and tenants; every `failing_every`-th goes to a payee
    the switch does not know (it ends ABORTED). Returns each with its final status and reason,
    as the channel API told them."""
    clients = {e: httpx.Client(base_url=payments.channel(e), timeout=10) for e in ENGINES}
    pending: list[tuple[str, str, str, str, str, str]] = []
    try:
        for i in range(count):
            engine, tenant = ENGINES[i % 2], TENANTS[(i // 2) % 2]
            payer = stack.payer_party(i % 20)
            fails = failing_every and i % failing_every == failing_every - 1
            payee = UNKNOWN_PAYEE if fails else stack.payee_party((i + 3) % 20)
            amount = f"{1 + i % 9}.{i % 10}5"
            resp = clients[engine].post(
                "/channel/transfer",
                json=stack.transfer_request(payer, payee, amount),
                headers={"Platform-TenantId": tenant},
            )
            assert resp.status_code == 202, resp.text
            pending.append((engine, tenant, resp.json()["transactionId"], amount, payer, payee))
        sent = []
        for engine, tenant, tx, amount, payer, payee in pending:
            final = stack.wait_final(clients[engine], tx, 180, tenant=tenant)
            sent.append(
                Sent(
                    engine,
                    tenant,
                    tx,
                    final["status"],
                    final.get("reason") or "",
                    amount,
                    payer,
                    payee,
                )
            )
        return sent
    finally:
        for client in clients.values():
            client.close()


@pytest.fixture(scope="module")
def first_wave(bo_stack: PaymentStack) -> list[Sent]:
    sent = send_payments(bo_stack, 12, failing_every=6)
    assert Counter(s.status for s in sent) == {"COMMITTED": 10, "ABORTED": 2}
    return sent


@dataclass
class Expected:
    """What the topics say each tenant must hold."""

    steps: Counter[str]
    variables: Counter[str]
    incidents: Counter[str]
    audit: Counter[str]
    instances: Counter[str]


#: history table -> the tenant table its changes land in (decision 0018, mapping.KINDS)
KEPT = {
    "act_hi_procinst": "steps",
    "act_hi_actinst": "steps",
    "act_hi_varinst": "variables",
    "act_hi_incident": "incidents",
}


#: the processes that are payments (one transfers row each): the payer and payee flows
PAYMENT_PROCESSES = frozenset({contract.PAYER_TRANSFER, contract.PAYEE_QUOTE_TRANSFER})


@dataclass(frozen=True)
class Change:
    """One change event of an engine's history, as the topic holds it."""

    engine: str
    table: str
    op: str
    row: dict[str, Any]

    @property
    def instance(self) -> str | None:
        pid = self.row.get("proc_inst_id_")
        return pid if isinstance(pid, str) and pid else None


def changes_on_topics(bootstrap: str) -> list[Change]:
    """Every change event on the engines' `<engine>.public.act_hi_*` topics, each CDC position
    once (Connect delivers at least once)."""
    seen: set[cdc.Position] = set()
    found: list[Change] = []
    for engine in ENGINES:
        topics = asyncio.run(history_topics(bootstrap, engine))
        assert cdc.topic_for(engine, "act_hi_procinst") in topics, topics
        records: list[Record] = asyncio.run(read_topics(bootstrap, topics))
        for m in records:
            if m.value is None:
                continue
            value = orjson.loads(m.value)
            pos = cdc.position(value, orjson.loads(m.key) if m.key else None)
            assert pos.engine == engine
            if pos in seen:
                continue
            seen.add(pos)
            row = value["before"] if value["op"] == "d" else value["after"]
            found.append(Change(engine, pos.table, value["op"], row))
    return found


def _audited(c: Change) -> bool:
    """Whether a kept change is an audit entry: payment started or ended, an activity ended
    (completed or cancelled), an incident opened or resolved; the `removal_time_` stamps
    Operaton puts on every row of an ended instance are not."""
    if c.op == "u" and c.row.get("removal_time_") is not None:
        return False
    ended = c.row.get("end_time_") is not None
    if c.table == "act_hi_procinst":
        return ended or c.op in ("c", "r")
    if c.table == "act_hi_actinst":
        return ended
    return c.table == "act_hi_incident"


def expectation(changes: list[Change]) -> Expected:
    tenant_of: dict[tuple[str, str], str] = {}
    for c in changes:
        r = c.row
        if (
            c.table == "act_hi_varinst"
            and c.op != "d"
            and r.get("name_") == "tenant"
            and r.get("var_type_") == "string"
            and r.get("state_") != "DELETED"
            and c.instance is not None
            and r.get("execution_id_") == c.instance
            and r.get("text_")
        ):
            tenant_of.setdefault((c.engine, c.instance), r["text_"])
    exp = Expected(Counter(), Counter(), Counter(), Counter(), Counter())
    payments: set[tuple[str, str, str]] = set()
    for c in changes:
        if c.op == "d" or c.instance is None or c.table not in KEPT:
            continue  # history clean-up, rows of no instance, tables the back office ignores
        tenant = tenant_of.get((c.engine, c.instance))
        assert tenant is not None, f"{c.engine}/{c.instance} names no tenant on the topics"
        counter: Counter[str] = getattr(exp, KEPT[c.table])
        counter[tenant] += 1
        if _audited(c):
            exp.audit[tenant] += 1
        if c.row.get("proc_def_key_") in PAYMENT_PROCESSES:
            payments.add((c.engine, c.instance, tenant))
    exp.instances.update(tenant for _, _, tenant in payments)
    return exp


def ended_business_keys(changes: list[Change]) -> set[str]:
    return {
        str(c.row.get("business_key_"))
        for c in changes
        if c.table == "act_hi_procinst" and c.row.get("end_time_") is not None
    }


def expected_from_topics(bootstrap: str, sent: list[Sent]) -> Expected:
    """The expectation once the topics are complete: every payment's end is on them, and two
    reads some seconds apart agree (Connect writes each table's topic on its own, so one topic
    may be a moment behind another)."""
    last: list[Expected] = []

    def settled() -> Expected | None:
        changes = changes_on_topics(bootstrap)
        if {s.transaction_id for s in sent} - ended_business_keys(changes):
            last.clear()
            return None
        exp = expectation(changes)
        agreed = bool(last) and last[-1] == exp
        last[:] = [exp]
        return exp if agreed else None

    result: Expected = poll(
        settled, what="the history topics to settle", deadline_s=180, interval_s=3
    )
    return result


def held(db: Database) -> Expected:
    got = Expected(Counter(), Counter(), Counter(), Counter(), Counter())
    with db.begin() as conn:
        for tenant in TENANTS:
            t = db.tenant(conn, tenant)
            for table, into in (
                (schema.steps, got.steps),
                (schema.variables, got.variables),
                (schema.incidents, got.incidents),
                (schema.audit_log, got.audit),
                (schema.transfers, got.instances),
            ):
                n = t.execute(select(func.count()).select_from(table)).scalar_one()
                if n:
                    into[tenant] = int(n)
    return got


def settings_for(
    kafka: Running, url: str, search: Running | None, **extra: Any
) -> BackofficeSettings:
    tag = uuid.uuid4().hex[:8]
    return BackofficeSettings(
        database_url=url,
        kafka_bootstrap=kafka.endpoint("bootstrap"),
        engines=list(ENGINES),
        tenants=list(TENANTS),
        group_id=f"bo-{tag}",
        dead_letter_topic=f"bo-dead-{tag}",
        opensearch_url=search.endpoint("http") if search else None,
        index_prefix=f"bo-{tag}",
        audit_key=SecretStr(AUDIT_KEY),
        **extra,
    )


def check_transfers(db: Database, sent: list[Sent], *, only_these: bool = True) -> None:
    """One row per payment, in its own tenant only, with the engine's outcome and the request
    (`only_these`: and no other rows)."""
    by_tx: dict[str, tuple[str, dict[str, Any]]] = {}
    with db.begin() as conn:
        for tenant in TENANTS:
            for found in db.tenant(conn, tenant).execute(select(schema.transfers)).mappings():
                assert found["transaction_id"] not in by_tx, "a payment imported twice"
                by_tx[found["transaction_id"]] = (tenant, dict(found))
    if only_these:
        assert sorted(by_tx) == sorted(s.transaction_id for s in sent)
    for s in sent:
        tenant, row = by_tx[s.transaction_id]
        assert tenant == s.tenant
        assert (row["engine"], row["status"], row["direction"]) == (s.engine, s.status, "PAYER")
        assert row["amount"] == Decimal(s.amount)
        assert row["currency"] == "USD"
        assert (row["payer_id"], row["payee_id"]) == (s.payer, s.payee)
        assert row["payer_dfsp"] == "phee-dfsp"
        assert row["started_at"] is not None
        assert row["completed_at"] is not None
        assert row["transaction_id"] == s.transaction_id
        # the reason the back office shows is the one the channel API told the client
        assert row["reason"] == s.reason
        if s.status == "COMMITTED":
            assert row["payee_dfsp"] == "simpayee"
            assert row["reason"] == "transfer committed"
        else:
            assert row["reason"].startswith("party lookup failed"), row["reason"]


@pytest.mark.parametrize("kind", ["sqlite", "mariadb", "postgresql"])
def test_two_engines_import_exactly_into_sql_and_opensearch(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    kafka: Running,
    opensearch: Running,
    first_wave: list[Sent],
) -> None:
    expected = expected_from_topics(kafka.endpoint("bootstrap"), first_wave)
    assert expected.instances == Counter(s.tenant for s in first_wave)
    settings = settings_for(kafka, fresh_database_url(request, kind, tmp_path), opensearch)
    db = Database(settings.database_url)
    asyncio.run(run_importer_until(settings, lambda _: held(db) == expected, deadline_s=120))
    got = held(db)
    print(f"\n[{kind}] topics say {expected}\n[{kind}] back office holds {got}")
    assert got.steps == expected.steps
    assert got.variables == expected.variables
    assert got.audit == expected.audit
    assert got.instances == expected.instances
    check_transfers(db, first_wave)
    for tenant in TENANTS:
        assert audit.verify(db, tenant, AUDIT_KEY.encode()) == []
    search = Search(opensearch.endpoint("http"), settings.index_prefix)
    try:
        for tenant in TENANTS:
            search.refresh(tenant)
            docs = search.find(tenant, size=100)
            mine = {s.transaction_id: s for s in first_wave if s.tenant == tenant}
            assert sorted(d["transaction_id"] for d in docs) == sorted(mine)
            for doc in docs:
                s = mine[doc["transaction_id"]]
                assert (doc["tenant"], doc["engine"], doc["status"]) == (tenant, s.engine, s.status)
                assert Decimal(doc["amount"]) == Decimal(s.amount)
    finally:
        search.close()
    db.close()


def test_500_payments_while_the_importer_is_stopped_are_all_imported_once(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    kafka: Running,
    opensearch: Running,
    bo_stack: PaymentStack,
    first_wave: list[Sent],
) -> None:
    settings = settings_for(kafka, fresh_database_url(request, "postgresql", tmp_path), opensearch)
    db = Database(settings.database_url)
    before = expected_from_topics(kafka.endpoint("bootstrap"), first_wave)
    asyncio.run(run_importer_until(settings, lambda _: held(db) == before, deadline_s=120))
    # the importer is stopped (it left the group cleanly); 500 payments run meanwhile
    second_wave = send_payments(bo_stack, 500)
    assert Counter(s.status for s in second_wave) == {"COMMITTED": 500}
    after = expected_from_topics(kafka.endpoint("bootstrap"), first_wave + second_wave)
    assert sum(after.instances.values()) == len(first_wave) + 500
    assert held(db) == before  # nothing imported while it was stopped
    asyncio.run(run_importer_until(settings, lambda _: held(db) == after, deadline_s=300))
    check_transfers(db, first_wave + second_wave)
    assert held(db) == after
    print(f"\nbefore the 500: {before.instances}; after: {held(db).instances}")
    for tenant in TENANTS:
        assert audit.verify(db, tenant, AUDIT_KEY.encode()) == []
    db.close()


def importer_env(settings: BackofficeSettings) -> dict[str, str]:
    return {
        "PHEE_BACKOFFICE_DATABASE_URL": settings.database_url,
        "PHEE_BACKOFFICE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "PHEE_BACKOFFICE_ENGINES": orjson.dumps(settings.engines).decode(),
        "PHEE_BACKOFFICE_TENANTS": orjson.dumps(settings.tenants).decode(),
        "PHEE_BACKOFFICE_GROUP_ID": settings.group_id,
        "PHEE_BACKOFFICE_DEAD_LETTER_TOPIC": settings.dead_letter_topic,
        "PHEE_BACKOFFICE_AUDIT_KEY": AUDIT_KEY,
        "PHEE_BACKOFFICE_BATCH_MAX": str(settings.batch_max),
        "PHEE_BACKOFFICE_METADATA_MAX_AGE_MS": "1000",
    }


def imported_by(run: Running) -> float:
    """Records one importer process stored, from its own /metrics."""
    text = httpx.get(f"{run.endpoint('http')}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("phee_backoffice_records_total{") and 'outcome="imported"' in line
    )


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_kill_9_in_the_middle_then_restart_leaves_no_duplicate_and_no_gap(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    kafka: Running,
    first_wave: list[Sent],
) -> None:
    expected = expected_from_topics(kafka.endpoint("bootstrap"), first_wave)
    settings = settings_for(kafka, fresh_database_url(request, kind, tmp_path), None, batch_max=300)
    db = Database(settings.database_url)
    env = importer_env(settings)
    first = start_service("bo-importer", "backoffice", tmp_path / "a", env=env, args=["importer"])
    total = sum(expected.steps.values())
    try:
        # kill once a part, not all, is in: batches are small, so this lands inside one
        at_kill = poll(
            lambda: n if 0 < (n := sum(held(db).steps.values())) < total // 2 else None,
            what="a partial import",
            deadline_s=60,
            interval_s=0.02,
        )
        os.kill(first.pid, signal.SIGKILL)
    finally:
        stop_service(first, grace_s=1)
    assert 0 < at_kill < total
    partial = held(db)
    print(f"\n[{kind}] killed with {at_kill} of {total} steps imported")
    assert partial != expected
    second = start_service("bo-importer", "backoffice", tmp_path / "b", env=env, args=["importer"])
    try:
        poll(lambda: True if held(db) == expected else None, what="the full import", deadline_s=180)
    finally:
        stop_service(second)
    assert held(db) == expected
    check_transfers(db, first_wave, only_these=False)
    for tenant in TENANTS:
        assert audit.verify(db, tenant, AUDIT_KEY.encode()) == []
    db.close()


def test_a_second_importer_joins_and_partitions_move_without_duplicate_or_gap(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    kafka: Running,
    first_wave: list[Sent],
) -> None:
    expected = expected_from_topics(kafka.endpoint("bootstrap"), first_wave)
    total = sum(expected.steps.values())
    url = fresh_database_url(request, "postgresql", tmp_path)
    # small batches: the first importer is still importing when it leaves, even with few records
    settings = settings_for(kafka, url, None, batch_max=20)
    db = Database(settings.database_url)
    env = importer_env(settings)
    first = start_service("bo-importer-a", "backoffice", tmp_path / "a", env=env, args=["importer"])
    second: Running | None = None
    try:
        poll(
            lambda: True if 0 < sum(held(db).steps.values()) < total // 2 else None,
            what="a partial import by the first importer",
            deadline_s=60,
            interval_s=0.02,
        )
        # The first is paused mid-import while the second starts: an importer imports faster than
        # a Python process starts, so without the pause the first could finish before the second
        # joins. The pause is short of the group's session timeout (10 s): the first stays a member.
        os.kill(first.pid, signal.SIGSTOP)
        by_first = sum(held(db).steps.values())
        print(f"\nfirst importer paused after {by_first} of {total} steps")
        assert by_first < total
        try:
            # the second member joins: the group rebalances while the first is importing
            second = start_service(
                "bo-importer-b", "backoffice", tmp_path / "b", env=env, args=["importer"]
            )
        finally:
            os.kill(first.pid, signal.SIGCONT)
        # the first leaves mid-import: its partitions (the ones with records) move to the second
        stop_service(first)
        poll(lambda: True if held(db) == expected else None, what="the full import", deadline_s=180)
        moved = imported_by(second)
        print(f"second importer stored {moved:.0f} records")
        assert moved > 0, "no partition moved to the second importer"
    finally:
        stop_service(first, grace_s=1)
        if second is not None:
            stop_service(second)
    assert held(db) == expected
    check_transfers(db, first_wave, only_these=False)
    for tenant in TENANTS:
        assert audit.verify(db, tenant, AUDIT_KEY.encode()) == []
    db.close()
