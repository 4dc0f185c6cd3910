"""Python values <-> Operaton typed variables, and an external task's DTO decoded."""

from __future__ import annotations

from typing import Any

import pytest

from phee.engine.client import ExternalTask, TopicRequest, process_keys
from phee.engine.variables import canonical_json, decode, decode_all, encode, encode_all

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


@pytest.mark.parametrize(
    ("value", "typed"),
    [
        ("text", {"value": "text", "type": "String"}),
        (True, {"value": True, "type": "Boolean"}),
        (False, {"value": False, "type": "Boolean"}),
        (0, {"value": 0, "type": "Long"}),
        (2**63 - 1, {"value": 2**63 - 1, "type": "Long"}),
        (-(2**63), {"value": -(2**63), "type": "Long"}),
        (1.5, {"value": 1.5, "type": "Double"}),
        (None, {"value": None, "type": "Null"}),
        ({"b": 1, "a": [True, None]}, {"value": '{"a":[true,null],"b":1}', "type": "String"}),
        ([{"z": 1, "y": "é"}], {"value": '[{"y":"é","z":1}]', "type": "String"}),
    ],
)
def test_encode(value: Any, typed: dict[str, Any]) -> None:
    assert encode(value) == typed


def test_equal_structures_encode_to_one_text() -> None:
    assert encode({"a": 1, "b": {"d": 2, "c": 3}}) == encode({"b": {"c": 3, "d": 2}, "a": 1})
    assert canonical_json({"k": [1, 2]}) == '{"k":[1,2]}'


def test_encode_refuses_what_has_no_engine_type() -> None:
    with pytest.raises(ValueError, match="Long"):
        encode(2**63)
    with pytest.raises(TypeError, match="bytes"):
        encode(b"raw")
    with pytest.raises(TypeError, match="set"):
        encode({1, 2})


@pytest.mark.parametrize(
    ("typed", "value"),
    [
        ({"value": "s", "type": "String"}, "s"),
        ({"value": 7, "type": "Long"}, 7),
        ({"value": 7, "type": "Integer"}, 7),
        ({"value": 7, "type": "Short"}, 7),
        ({"value": 2, "type": "Double"}, 2.0),
        ({"value": True, "type": "Boolean"}, True),
        ({"value": None, "type": "Null"}, None),
        ({"value": None, "type": "String"}, None),
        ({"value": "2026-01-01T00:00:00.000+0000", "type": "Date"}, "2026-01-01T00:00:00.000+0000"),
    ],
)
def test_decode(typed: dict[str, Any], value: Any) -> None:
    decoded = decode(typed)
    assert decoded == value
    assert type(decoded) is type(value)


def test_round_trip_of_a_mapping() -> None:
    plain = {"s": "x", "n": 3, "f": 0.25, "b": False, "none": None}
    assert decode_all(encode_all(plain)) == plain
    assert encode_all(None) == {}
    assert decode_all(None) == {}


def test_external_task_from_the_engine_dto() -> None:
    task = ExternalTask.from_dto(
        {
            "id": "t1",
            "topicName": "quote",
            "workerId": "w",
            "processInstanceId": "p1",
            "processDefinitionKey": "payer",
            "executionId": "e1",
            "activityId": "sendQuote",
            "businessKey": "tx-1",
            "retries": None,
            "errorMessage": None,
            "variables": {
                "quote": {"value": '{"amount":"1.00"}', "type": "String", "valueInfo": {}},
                "n": {"value": 4, "type": "Long", "valueInfo": {}},
            },
            "extensionProperties": {"fspiop": "quotes"},
        }
    )
    assert task.topic == "quote"
    assert task.variables == {"quote": '{"amount":"1.00"}', "n": 4}
    assert task.json("quote") == {"amount": "1.00"}
    assert task.json("missing") is None
    assert task.extension_properties == {"fspiop": "quotes"}
    assert task.retries is None


def test_topic_request_asks_for_all_variables_by_default() -> None:
    assert "variables" not in TopicRequest("t", 1000).dto()
    assert TopicRequest("t", 1000, ["a"]).dto()["variables"] == ["a"]
    assert TopicRequest("t", 1000, [], business_key="k").dto()["businessKey"] == "k"


def test_process_keys_of_bpmn_files() -> None:
    model = (
        b'<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL">'
        b'<process id="a" isExecutable="true"/><process id="b" isExecutable="false"/>'
        b'<process id="c"/></definitions>'
    )
    assert process_keys({"x.bpmn": model, "notes.txt": b"not xml"}) == ["a", "c"]


def test_transient_names_are_marked_and_only_those() -> None:
    encoded = encode_all({"answerOk": True, "answer": {"ok": True}}, transient={"answerOk", "gone"})
    assert encoded["answerOk"] == {
        "value": True,
        "type": "Boolean",
        "valueInfo": {"transient": True},
    }
    assert encoded["answer"] == {"value": '{"ok":true}', "type": "String"}
    assert "gone" not in encoded  # a transient name without a value adds nothing
