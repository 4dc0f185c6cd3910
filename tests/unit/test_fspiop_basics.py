"""FSPIOP headers, error bodies and engine-carrying ids."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from phee.fspiop import headers, ids
from phee.fspiop.errors import FspiopError, code_of

# --- headers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/vnd.interoperability.quotes+json;version=1.1", "1.1"),
        ("application/vnd.interoperability.quotes+json;version=2.0", "2.0"),
        ("application/vnd.interoperability.quotes+json;version=1", "1.1"),
        ("application/vnd.interoperability.quotes+json", "2.0"),
        (
            "application/vnd.interoperability.quotes+json;version=3.0,"
            "application/vnd.interoperability.quotes+json;version=1.0",
            "1.0",
        ),
    ],
)
def test_negotiation_picks_a_served_version(accept: str, expected: str) -> None:
    assert headers.negotiate(accept, "/quotes") == expected


def test_unserved_version_is_406_with_3001_listing_what_we_serve() -> None:
    with pytest.raises(FspiopError) as info:
        headers.negotiate("application/vnd.interoperability.quotes+json;version=3.0", "/quotes")
    err = info.value
    assert err.code == "3001"
    assert err.http_status == 406
    body = err.body()["errorInformation"]
    assert body["errorCode"] == "3001"
    served = {e["key"]: e["value"] for e in body["extensionList"]["extension"]}
    assert served == {"v1": "1.1", "v2": "2.0"}


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("application/json", "3101"),
        ("application/vnd.interoperability.parties+json;version=1.1", "3101"),  # other resource
        ("application/vnd.interoperability.quotes+json", "3101"),  # no version
        ("application/vnd.interoperability.quotes+json;version=9.9", "3001"),
    ],
)
def test_content_type_problems_are_named(value: str, code: str) -> None:
    with pytest.raises(FspiopError) as info:
        headers.content_version({"content-type": value}, "/quotes")
    assert info.value.code == code
    assert "Content-Type" in info.value.description or code == "3001"


def test_missing_mandatory_headers_per_method() -> None:
    assert headers.missing_mandatory("POST", {}) == [
        "Accept",
        "Content-Type",
        "Date",
        "FSPIOP-Source",
    ]
    assert headers.missing_mandatory("PUT", {"date": "x", "fspiop-source": "a"}) == ["Content-Type"]
    assert (
        headers.missing_mandatory("GET", {"accept": "a", "date": "d", "fspiop-source": "s"}) == []
    )


def test_request_headers_have_no_accept_on_callbacks() -> None:
    put = headers.request_headers(
        method="PUT", path="/transfers/x", source="a", destination="b", version="1.1"
    )
    assert "Accept" not in put
    assert put["Content-Type"] == "application/vnd.interoperability.transfers+json;version=1.1"
    post = headers.request_headers(method="POST", path="/quotes", source="a", destination=None)
    assert post["Accept"] == post["Content-Type"]
    assert "FSPIOP-Destination" not in post


def test_imf_date_format() -> None:
    when = datetime(2026, 11, 21, 8, 0, 0, tzinfo=UTC)
    assert headers.imf_date(when) == "Sat, 21 Nov 2026 08:00:00 GMT"


def test_unknown_resource_is_3002() -> None:
    with pytest.raises(FspiopError) as info:
        headers.resource_of("/accounts/1")
    assert info.value.code == "3002"


# --- errors --------------------------------------------------------------------------------


def test_error_body_and_status() -> None:
    err = FspiopError("3102", "FSPIOP-Source header is missing")
    assert err.http_status == 400
    assert err.body() == {
        "errorInformation": {
            "errorCode": "3102",
            "errorDescription": "Missing mandatory element - FSPIOP-Source header is missing",
        }
    }
    assert code_of(err.body()) == "3102"
    assert code_of({"party": {}}) is None
    assert FspiopError("3104").http_status == 413


def test_unknown_error_code_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown FSPIOP error code '9999'"):
        FspiopError("9999")


# --- ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["uuid", "ulid"])
@pytest.mark.parametrize("slot", [0, 1, 31, 32, 517, ids.MAX_SLOT])
def test_ids_carry_their_engine_slot_and_match_fspiop(kind: str, slot: int) -> None:
    made = {ids.new_id(slot, kind) for _ in range(50)}
    assert len(made) == 50  # still random
    for value in made:
        assert ids.is_fspiop_id(value), value
        assert ids.slot_of(value) == slot


def test_uuid_ids_are_lowercase_v4_and_ulids_uppercase() -> None:
    u = ids.new_uuid(7)
    assert u == u.lower()
    assert u[14] == "4"
    v = ids.new_ulid(7)
    assert v == v.upper()
    assert len(v) == 26


def test_bad_slots_and_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match=r"outside 0\.\.1023"):
        ids.new_uuid(1024)
    with pytest.raises(ValueError, match="unknown id kind"):
        ids.new_id(1, "snowflake")
    assert ids.slot_of("not-an-id") is None
    assert ids.slot_of("F81D4FAE-7DEC-41D0-A765-00A0C91E6BF6") is None  # uppercase UUID
