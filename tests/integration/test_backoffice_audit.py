"""The audit log against real SQLite, MariaDB and PostgreSQL: append, replay, tamper, verify."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import Connection, delete, event, func, select, text, update

from backoffice import audit
from backoffice.audit import AuditEntry, AuditError, append, check, verify
from backoffice.audit_chain import chain, head_mac
from backoffice.audit_cli import main
from backoffice.db import Database
from backoffice.schema import audit_head, audit_log, tenants

KEY = b"integration-audit-key"
T0 = datetime(2026, 3, 1, 12, 0, 0, 654321, tzinfo=UTC)


def database_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'backoffice.db'}"
    url: str = request.getfixturevalue(kind).endpoint("url")
    return url


@pytest.fixture(params=["sqlite", "mariadb", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request.param, request, tmp_path)


@pytest.fixture(params=["mariadb", "postgresql"])
def server_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request.param, request, tmp_path)


def open_tenant(url: str) -> Iterator[tuple[Database, str]]:
    db = Database(url)
    db.migrate_control()
    name = f"aud{uuid4().hex[:8]}"
    db.provision(name)
    try:
        yield db, name
    finally:
        if db.dialect != "sqlite":  # SQLite lives under tmp_path
            namespace = db.namespace(name)
            with db.begin() as conn:
                if db.dialect == "postgresql":
                    conn.execute(text(f'DROP SCHEMA "{namespace}" CASCADE'))
                else:
                    conn.execute(text(f"DROP DATABASE `{namespace}`"))
                conn.execute(delete(tenants).where(tenants.c.name == name))
        db.close()


@pytest.fixture
def tenant(url: str) -> Iterator[tuple[Database, str]]:
    yield from open_tenant(url)


@pytest.fixture
def server_tenant(server_url: str) -> Iterator[tuple[Database, str]]:
    yield from open_tenant(server_url)


@pytest.fixture(autouse=True)
def audit_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHEE_BACKOFFICE_AUDIT_KEY", KEY.decode())


def entries(n: int, start: int = 0, prefix: str = "engine-a/1") -> list[AuditEntry]:
    return [
        AuditEntry(
            at=T0 + timedelta(seconds=i, microseconds=i),
            actor="importer",
            action="step",
            subject=f"transfer-{i} Zoë €",
            detail={"position": i, "amount": "10.50", "payee": "Zoë Ünal €"},
            source=f"{prefix}/{i}",
        )
        for i in range(start, start + n)
    ]


def add(db: Database, name: str, batch: list[AuditEntry]) -> int:
    with db.begin() as conn:
        return append(db.tenant(conn, name), KEY, batch, lock=db.lock_rows())


def tamper(db: Database, name: str, *statements: Any) -> None:
    """Change the tables directly, as someone with database access but without the key would."""
    with db.begin() as conn:
        tenant_conn = db.tenant(conn, name)
        for statement in statements:
            tenant_conn.execute(statement)


def cli(db: Database, name: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    status = main(["verify", "--tenant", name, "--database-url", db.url])
    return status, capsys.readouterr().out.splitlines()


def filled(db: Database, name: str) -> int:
    """Ten entries in three appends; returns the last seq."""
    assert add(db, name, entries(4)) == 4
    assert add(db, name, entries(6, start=4)) == 6
    return 10


def test_appends_chain_replays_append_nothing_and_the_cli_finds_it_intact(
    tenant: tuple[Database, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, name = tenant
    assert add(db, name, entries(5)) == 5
    manual = [
        AuditEntry(at=T0, actor="alice", action="export", subject="transfers", detail={"n": 2})
    ]
    assert add(db, name, manual) == 1
    assert add(db, name, manual) == 1  # no source: every call is a new event
    assert add(db, name, entries(5)) == 0  # a replay of the first batch
    assert add(db, name, entries(5, start=3)) == 3  # 3 and 4 are known, 5..7 are new
    assert add(db, name, [*entries(2, start=20), *entries(2, start=20)]) == 2  # repeated in batch
    assert add(db, name, []) == 0
    status, out = cli(db, name, capsys)
    assert out == [f"audit log of tenant {name}: 12 entries, 0 problems"]
    assert status == 0
    with db.begin() as conn:
        tenant_conn = db.tenant(conn, name)
        seqs = tenant_conn.execute(select(audit_log.c.seq).order_by(audit_log.c.seq)).scalars()
        head = tenant_conn.execute(select(audit_head)).one()
        first = tenant_conn.execute(select(audit_log).where(audit_log.c.seq == 1)).one()
    assert list(seqs) == list(range(1, 13))
    assert (head.id, head.seq) == (1, 12)
    assert first.subject == "transfer-0 Zoë €"  # the database kept non-ASCII text as written


def test_the_cli_reads_the_url_from_the_settings(
    tenant: tuple[Database, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db, name = tenant
    filled(db, name)
    monkeypatch.setenv("PHEE_BACKOFFICE_DATABASE_URL", db.url)
    assert main(["verify", "--tenant", name]) == 0
    assert capsys.readouterr().out == f"audit log of tenant {name}: 10 entries, 0 problems\n"


def test_an_edited_detail_is_found(
    tenant: tuple[Database, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, name = tenant
    filled(db, name)
    tamper(db, name, update(audit_log).where(audit_log.c.seq == 3).values(detail='{"amount":"1"}'))
    status, out = cli(db, name, capsys)
    assert status == 1
    assert out[0].startswith("EDITED seq 3: ")
    assert out[1:] == [f"audit log of tenant {name}: 10 entries, 1 problem"]


def test_a_deleted_middle_entry_is_found(
    tenant: tuple[Database, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, name = tenant
    filled(db, name)
    tamper(db, name, delete(audit_log).where(audit_log.c.seq == 4))
    status, out = cli(db, name, capsys)
    assert (status, out[0]) == (1, "DELETED seq 4: entry is missing")
    assert out[1:] == [f"audit log of tenant {name}: 9 entries, 1 problem"]


def test_a_forged_entry_beyond_the_end_is_found(
    tenant: tuple[Database, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, name = tenant
    last = filled(db, name)
    with db.begin() as conn:
        tip = db.tenant(conn, name).execute(select(audit_head.c.hash)).scalar_one()
    forged = chain(b"a guess", tip, last + 1, entries(1, start=99))
    tamper(db, name, audit_log.insert().values(forged))
    status, out = cli(db, name, capsys)
    assert status == 1
    assert out[0].startswith(f"INSERTED seq {last + 1}: ")
    assert out[1:] == [f"audit log of tenant {name}: 11 entries, 1 problem"]


def test_a_deleted_tail_is_found(
    tenant: tuple[Database, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, name = tenant
    last = filled(db, name)
    tamper(db, name, delete(audit_log).where(audit_log.c.seq == last))
    status, out = cli(db, name, capsys)
    assert (status, out[0]) == (1, f"DELETED seq {last}: entry is missing")
    assert out[1:] == [f"audit log of tenant {name}: 9 entries, 1 problem"]


def test_a_cut_tail_with_a_moved_head_is_found_and_blocks_appends(
    tenant: tuple[Database, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, name = tenant
    last = filled(db, name)
    with db.begin() as conn:
        hash_9 = db.tenant(conn, name).execute(
            select(audit_log.c.hash).where(audit_log.c.seq == last - 1)
        )
        moved = {"seq": last - 1, "hash": hash_9.scalar_one()}
    tamper(
        db,
        name,
        delete(audit_log).where(audit_log.c.seq == last),
        update(audit_head).values(**moved, mac=head_mac(b"a guess", last - 1, moved["hash"])),
    )
    status, out = cli(db, name, capsys)
    assert (status, out[0]) == (1, f"HEAD seq {last - 1}: the head's seal is not valid")
    with pytest.raises(AuditError, match="seal"):
        add(db, name, entries(1, start=50))
    assert len(verify(db, name, KEY)) == 1  # the refused append left no trace


def test_a_source_logged_after_the_callers_snapshot_is_still_skipped(
    tenant: tuple[Database, str],
) -> None:
    """The caller's transaction read first (MariaDB fixes its snapshot then); another writer
    logs a source meanwhile: appending it again must skip it, not fail on the unique key."""
    db, name = tenant
    filled(db, name)
    with db.begin() as conn:
        tenant_conn = db.tenant(conn, name)
        assert tenant_conn.execute(select(func.count()).select_from(audit_log)).scalar_one() == 10
        assert add(db, name, entries(2, start=50)) == 2  # another connection, committed
        batch = entries(3, start=50)
        assert append(tenant_conn, KEY, batch, lock=db.lock_rows()) == 1
    report = check(db, name, KEY)
    assert (report.entries, report.findings) == (13, [])


def test_the_wrong_key_finds_every_entry(tenant: tuple[Database, str]) -> None:
    db, name = tenant
    filled(db, name)
    report = check(db, name, b"not the key")
    assert report.entries == 10
    assert [f.kind for f in report.findings] == ["head"] + ["edited"] * 10


def test_a_big_batch_takes_a_constant_number_of_statements(tenant: tuple[Database, str]) -> None:
    db, name = tenant
    calls: list[str] = []
    with db.begin() as conn:
        event.listen(conn, "before_execute", lambda _c, clause, *_a: calls.append(str(clause)))
        added = append(db.tenant(conn, name), KEY, entries(3000), lock=db.lock_rows())
    assert added == 3000
    assert len(calls) == 5  # create head, read head, look up sources, insert, move head
    report = check(db, name, KEY)
    assert (report.entries, report.findings) == (3000, [])


def test_concurrent_appenders_make_one_chain(server_tenant: tuple[Database, str]) -> None:
    """Two writers, each in its own transactions, start together on a log with no head yet."""
    db, name = server_tenant
    start = threading.Barrier(2, timeout=60)

    def writer(prefix: str) -> int:
        start.wait()
        return sum(add(db, name, entries(25, start=b * 25, prefix=prefix)) for b in range(8))

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(writer, p) for p in ("engine-a/1", "engine-b/1")]
        assert [f.result(timeout=120) for f in futures] == [200, 200]
    report = check(db, name, KEY)
    assert (report.entries, report.findings) == (400, [])
    with db.begin() as conn:
        tenant_conn = db.tenant(conn, name)
        count = tenant_conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
        top = tenant_conn.execute(select(func.max(audit_log.c.seq))).scalar_one()
    assert (count, top) == (400, 400)


def test_verify_reads_one_snapshot_while_others_append(
    server_tenant: tuple[Database, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append committed between two pages is neither 'inserted' nor half-read."""
    db, name = server_tenant
    filled(db, name)
    monkeypatch.setattr(audit, "PAGE", 3)  # ten entries: four pages
    pages = audit._pages

    def pages_with_an_append_between(conn: Connection) -> Iterator[Mapping[str, Any]]:
        for index, row in enumerate(pages(conn)):
            if index == 3:  # the second page is about to be read
                assert add(db, name, entries(5, start=100)) == 5
            yield row

    monkeypatch.setattr(audit, "_pages", pages_with_an_append_between)
    report = check(db, name, KEY)
    assert (report.entries, report.findings) == (10, [])
    monkeypatch.setattr(audit, "_pages", pages)
    assert check(db, name, KEY) == audit.Report(name, 15, [])


def test_the_cli_refuses_an_unknown_tenant(
    tenant: tuple[Database, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = tenant
    assert main(["verify", "--tenant", "nobody", "--database-url", db.url]) == 2
    assert "unknown tenant 'nobody'" in capsys.readouterr().err


def test_the_cli_reports_an_unreachable_database(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql+psycopg://nobody:secret@127.0.0.1:1/none"
    assert main(["verify", "--tenant", "acme", "--database-url", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read the audit log from postgresql+psycopg://nobody:***@")
    assert "secret" not in err


def test_operator_actions_are_chained_after_the_importer_entries(
    tenant: tuple[Database, str],
) -> None:
    db, name = tenant
    filled(db, name)
    record = audit.operator_recorder(db, KEY)
    record(name, "alice", "view_transfer", "engine-a/101", {"roles": ["operator"]})
    record(name, "svc-recon", "view_transaction", "tx-1", {"kind": "service"})
    assert verify(db, name, KEY) == []
    with db.begin() as conn:
        rows = db.tenant(conn, name).execute(
            select(audit_log.c.seq, audit_log.c.actor, audit_log.c.action, audit_log.c.subject)
            .where(audit_log.c.seq > 10)
            .order_by(audit_log.c.seq)
        )
        assert [tuple(r) for r in rows] == [
            (11, "operator:alice", "view_transfer", "engine-a/101"),
            (12, "operator:svc-recon", "view_transaction", "tx-1"),
        ]
