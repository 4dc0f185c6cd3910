"""The CDC connector configuration and record positions (phee.cdc): pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from phee import cdc

pytestmark = pytest.mark.timeout(10)

DB = cdc.EngineDatabase("db.engine-a", 5432, "operaton", "cdc", "secret")


def test_one_engine_names_its_topics_slot_publication_and_connector() -> None:
    config = cdc.connector_config("engine-a", DB)
    assert config["topic.prefix"] == "engine-a"
    assert config["slot.name"] == config["publication.name"] == "phee_cdc_engine_a"
    assert cdc.connector_name("engine-a") == "phee-cdc-engine-a"
    assert cdc.topic_for("engine-a", "ACT_HI_PROCINST") == "engine-a.public.act_hi_procinst"
    assert config["plugin.name"] == "pgoutput"
    assert config["table.include.list"] == r"public\.act_hi_.*"
    assert config["snapshot.mode"] == "initial"
    assert config["database.hostname"] == "db.engine-a"
    assert config["database.port"] == "5432"
    assert config["database.password"] == "secret"
    assert config["value.converter.schemas.enable"] == "false"
    assert config["key.converter.schemas.enable"] == "false"
    assert config["topic.creation.default.partitions"] == "1"
    assert all(isinstance(v, str) for v in config.values())  # Connect wants strings


def test_two_engines_share_nothing() -> None:
    a, b = cdc.connector_config("engine-a", DB), cdc.connector_config("engine-b", DB)
    for key in ("topic.prefix", "slot.name", "publication.name"):
        assert a[key] != b[key]


@pytest.mark.parametrize("bad", ["", "Engine-A", "engine_a", "1engine", "engine a", "e" * 41])
def test_names_that_cannot_name_a_slot_or_topic_are_refused(bad: str) -> None:
    with pytest.raises(cdc.EngineNameError):
        cdc.connector_config(bad, DB)


def _event(lsn: int, snapshot: str, key_id: str, op: str = "c") -> tuple[dict[str, Any], ...]:
    value: dict[str, Any] = {
        "op": op,
        "source": {"name": "engine-a", "lsn": lsn, "snapshot": snapshot, "table": "t"},
    }
    return value, {"id_": key_id}


def test_a_snapshot_row_and_the_first_streamed_change_share_an_lsn_not_a_position() -> None:
    snap = cdc.position(*_event(100, "last", "p1", "r"))
    first = cdc.position(*_event(100, "false", "p1", "u"))
    again = cdc.position(*_event(100, "false", "p1", "u"))
    assert snap.lsn == first.lsn
    assert snap != first
    assert first == again  # a repeat after a restart is recognised
    assert first.engine == "engine-a"
    assert first.key == "id_=p1"
