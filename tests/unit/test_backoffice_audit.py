"""The audit chain's pure core: sealing entries and telling edits, deletions and inserts apart."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from backoffice.audit_chain import (
    GENESIS,
    AuditEntry,
    Finding,
    canonical_json,
    chain,
    entry_hash,
    head_mac,
    verify_rows,
)
from backoffice.audit_cli import main

KEY = b"unit-test-key"
T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def entries(n: int, start: int = 0) -> list[AuditEntry]:
    return [
        AuditEntry(
            at=T0 + timedelta(seconds=i),
            actor="importer",
            action="step",
            subject=f"transfer-{i}",
            detail={"i": i, "amount": "10.00", "nested": {"b": 1, "a": [1, 2]}},
            source=f"engine-a/1/{i}",
        )
        for i in range(start, start + n)
    ]


def sealed(n: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = chain(KEY, GENESIS, 1, entries(n))
    return rows, head_of(rows[-1]["seq"], rows[-1]["hash"])


def head_of(seq: int, hash_: str, key: bytes = KEY) -> dict[str, Any]:
    return {"seq": seq, "hash": hash_, "mac": head_mac(key, seq, hash_)}


def kinds(findings: list[Finding]) -> list[tuple[str, int]]:
    return [(f.kind, f.seq) for f in findings]


def test_an_intact_chain_has_no_findings() -> None:
    rows, head = sealed(10)
    assert [r["seq"] for r in rows] == list(range(1, 11))
    assert rows[0]["prev_hash"] == GENESIS
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(rows))
    assert verify_rows(KEY, rows, head) == []


def test_an_empty_log_with_its_genesis_head_is_intact() -> None:
    assert verify_rows(KEY, [], head_of(0, GENESIS)) == []


def test_chaining_in_two_batches_equals_one_batch() -> None:
    whole = chain(KEY, GENESIS, 1, entries(6))
    first = chain(KEY, GENESIS, 1, entries(3))
    second = chain(KEY, first[-1]["hash"], 4, entries(3, start=3))
    assert first + second == whole


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("detail", '{"amount":"99.00"}'),
        ("actor", "mallory"),
        ("action", "refund"),
        ("subject", "transfer-x"),
        ("source", None),
        ("at", T0 + timedelta(microseconds=1)),
    ],
)
def test_editing_any_field_is_found_at_that_seq(column: str, value: object) -> None:
    rows, head = sealed(8)
    rows[4] = {**rows[4], column: value}
    assert kinds(verify_rows(KEY, rows, head)) == [("edited", 5)]


def test_an_edit_resealed_with_a_wrong_key_is_one_finding() -> None:
    rows, head = sealed(8)
    forged = {**rows[4], "detail": "{}"}
    forged["hash"] = entry_hash(b"guess", forged)
    rows[4] = forged
    assert kinds(verify_rows(KEY, rows, head)) == [("edited", 5)]


def test_a_deleted_middle_entry_is_found() -> None:
    rows, head = sealed(8)
    del rows[3]
    findings = verify_rows(KEY, rows, head)
    assert kinds(findings) == [("deleted", 4)]
    assert findings[0].message == "entry is missing"


def test_several_deleted_entries_are_one_finding_naming_the_range() -> None:
    rows, head = sealed(8)
    del rows[2:5]
    findings = verify_rows(KEY, rows, head)
    assert kinds(findings) == [("deleted", 3)]
    assert "3 to 5" in findings[0].message


def test_a_deleted_tail_is_found_through_the_head() -> None:
    rows, head = sealed(8)
    assert kinds(verify_rows(KEY, rows[:-1], head)) == [("deleted", 8)]
    assert kinds(verify_rows(KEY, rows[:-3], head)) == [("deleted", 6)]
    assert kinds(verify_rows(KEY, [], head)) == [("deleted", 1)]


def test_a_tail_cut_with_a_forged_head_is_found() -> None:
    rows, _ = sealed(8)
    forged = head_of(6, rows[5]["hash"], key=b"guess")
    assert kinds(verify_rows(KEY, rows[:6], forged)) == [("head", 6)]


def test_a_missing_head_is_found() -> None:
    rows, _ = sealed(3)
    assert kinds(verify_rows(KEY, rows, None)) == [("head", 0)]


def test_a_head_whose_hash_is_not_the_last_entry_is_found() -> None:
    rows, _ = sealed(3)
    head = head_of(3, rows[1]["hash"])
    assert kinds(verify_rows(KEY, rows, head)) == [("head", 3)]


def test_a_forged_entry_beyond_the_head_is_inserted() -> None:
    rows, head = sealed(5)
    forged = chain(b"guess", rows[-1]["hash"], 6, entries(1, start=50))
    assert kinds(verify_rows(KEY, rows + forged, head)) == [("inserted", 6)]


def test_a_forged_entry_in_the_middle_is_inserted() -> None:
    """A forged seq-3 entry linked to entry 2; the real entry 3 still links to entry 2."""
    rows, head = sealed(6)
    forged = chain(b"guess", rows[1]["hash"], 3, entries(1, start=50))
    findings = verify_rows(KEY, [*rows[:2], *forged, *rows[2:]], head)
    assert kinds(findings) == [("inserted", 3)]


def test_a_forged_entry_with_renumbered_successors_is_found() -> None:
    """Shifting the real entries up to make room breaks their own hashes (seq is sealed)."""
    rows, _ = sealed(5)
    forged = chain(b"guess", rows[1]["hash"], 3, entries(1, start=50))
    shifted = [{**r, "seq": r["seq"] + 1} for r in rows[2:]]
    head = head_of(6, shifted[-1]["hash"], key=b"guess")
    found = kinds(verify_rows(KEY, [*rows[:2], *forged, *shifted], head))
    assert found[0] == ("head", 6)
    assert ("inserted", 3) in found
    assert {("edited", 4), ("edited", 5), ("edited", 6)} <= set(found)


def test_a_sealed_entry_that_does_not_link_is_inserted() -> None:
    """An entry sealed with the right key but from another chain (e.g. another tenant's)."""
    rows, head = sealed(4)
    other = chain(KEY, "f" * 64, 3, entries(1, start=70))
    rows[2] = other[0]
    assert kinds(verify_rows(KEY, rows, head)) == [("inserted", 3)]


def test_a_repeated_seq_is_inserted() -> None:
    rows, head = sealed(4)
    assert kinds(verify_rows(KEY, [*rows[:3], rows[2], rows[3]], head)) == [("inserted", 3)]


def test_the_wrong_key_finds_everything_broken() -> None:
    rows, head = sealed(4)
    found = kinds(verify_rows(b"other-key", rows, head))
    assert found == [("head", 4), ("edited", 1), ("edited", 2), ("edited", 3), ("edited", 4)]


def test_naive_database_times_hash_like_utc_ones() -> None:
    """SQLite and MariaDB hand back naive UTC; PostgreSQL aware, maybe in another zone."""
    rows, head = sealed(3)
    naive = [{**r, "at": r["at"].replace(tzinfo=None)} for r in rows]
    plus2 = timezone(timedelta(hours=2))
    shifted = [{**r, "at": r["at"].astimezone(plus2)} for r in rows]
    assert verify_rows(KEY, naive, head) == []
    assert verify_rows(KEY, shifted, head) == []


def test_entries_are_stored_in_utc() -> None:
    entry = AuditEntry(
        at=datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
        actor="a",
        action="b",
        subject="c",
        detail={},
    )
    assert chain(KEY, GENESIS, 1, [entry])[0]["at"] == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_canonical_json_does_not_depend_on_dict_order() -> None:
    one = {"b": 1, "a": {"y": [1, 2], "x": "é"}}
    two = {"a": {"x": "é", "y": [1, 2]}, "b": 1}
    assert canonical_json(one) == canonical_json(two) == '{"a":{"x":"\\u00e9","y":[1,2]},"b":1}'
    first = AuditEntry(at=T0, actor="a", action="b", subject="c", detail=one)
    second = AuditEntry(at=T0, actor="a", action="b", subject="c", detail=two)
    assert chain(KEY, GENESIS, 1, [first]) == chain(KEY, GENESIS, 1, [second])


def test_canonical_json_writes_decimals_and_times_as_strings() -> None:
    assert canonical_json({"amount": Decimal("10.50"), "at": T0}) == (
        '{"amount":"10.50","at":"2026-03-01T12:00:00.123456+00:00"}'
    )
    with pytest.raises(TypeError, match="set"):
        canonical_json({"x": {1, 2}})


def test_field_boundaries_are_unambiguous() -> None:
    one = AuditEntry(at=T0, actor="ab", action="c", subject="d")
    two = AuditEntry(at=T0, actor="a", action="bc", subject="d")
    assert chain(KEY, GENESIS, 1, [one])[0]["hash"] != chain(KEY, GENESIS, 1, [two])[0]["hash"]


def test_entries_refuse_naive_times_and_overlong_fields() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        AuditEntry(at=datetime(2026, 1, 1), actor="a", action="b", subject="c")
    with pytest.raises(ValueError, match="action"):
        AuditEntry(at=T0, actor="a", action="x" * 65, subject="c")


@pytest.fixture
def audit_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHEE_BACKOFFICE_AUDIT_KEY", "audit-key-for-tests")


def test_the_cli_will_not_check_without_the_audit_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PHEE_BACKOFFICE_AUDIT_KEY", raising=False)
    monkeypatch.delenv("PHEE_DEV_MODE", raising=False)
    assert main(["verify", "--tenant", "acme", "--database-url", f"sqlite:///{tmp_path}/x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the back office settings are not valid: secret ")
    assert "PHEE_BACKOFFICE_AUDIT_KEY is not set" in err


@pytest.mark.usefixtures("audit_key")
def test_the_cli_refuses_a_bad_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--tenant", "acme", "--database-url", "no url at all"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: bad database URL 'no url at all': Could not parse SQLAlchemy URL from given URL"
        " string",
    ]
    assert main(["verify", "--tenant", "acme", "--database-url", "nosuchdb://host/x"]) == 2
    assert "bad database URL nosuchdb://host/x" in capsys.readouterr().err


@pytest.mark.usefixtures("audit_key")
def test_the_cli_does_not_create_a_missing_sqlite_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.db"
    assert main(["verify", "--tenant", "acme", "--database-url", f"sqlite:///{missing}"]) == 2
    assert "no SQLite database" in capsys.readouterr().err
    assert not missing.exists()


def test_the_cli_needs_a_command_and_a_tenant(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["verify"]) == 2
    assert "--tenant" in capsys.readouterr().err
