"""Bodies validated against Mojaloop's official OpenAPI (api-snippets, fetched by version)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from phee.fspiop.errors import FspiopError
from phee.fspiop.schemas import schemas

QUOTE: dict[str, Any] = {
    "quoteId": "b51ec534-ee48-4575-b6a9-ead2955b8069",
    "transactionId": "a8323bc6-c228-4df2-ae82-e5a997baf898",
    "payee": {"partyIdInfo": {"partyIdType": "MSISDN", "partyIdentifier": "16135551212"}},
    "payer": {"partyIdInfo": {"partyIdType": "MSISDN", "partyIdentifier": "16135551213"}},
    "amountType": "SEND",
    "amount": {"amount": "10.5", "currency": "USD"},
    "transactionType": {"scenario": "TRANSFER", "initiator": "PAYER", "initiatorType": "CONSUMER"},
}


@pytest.mark.parametrize("version", ["1.1", "2.0"])
def test_a_valid_quote_passes(version: str) -> None:
    schemas(version).validate("POST", "/quotes", QUOTE)


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("POST", "/quotes", "QuotesPostRequest"),
        ("PUT", "/quotes/b51ec534-ee48-4575-b6a9-ead2955b8069", "QuotesIDPutResponse"),
        ("PUT", "/quotes/X/error", "ErrorInformationObject"),
        ("POST", "/transfers", "TransfersPostRequest"),
        ("PUT", "/transfers/X", "TransfersIDPutResponse"),
        ("PATCH", "/transfers/X", "TransfersIDPatchResponse"),
        ("PUT", "/parties/MSISDN/123", "PartiesTypeIDPutResponse"),
        ("PUT", "/parties/MSISDN/123/error", "ErrorInformationObject"),
        ("PUT", "/parties/MSISDN/123/SUB", "PartiesTypeIDPutResponse"),
        ("GET", "/parties/MSISDN/123", None),
    ],
)
def test_operations_map_to_the_official_schemas(method: str, path: str, name: str | None) -> None:
    assert schemas("1.1").schema_name(method, path) == name


def _without(path: list[str]) -> dict[str, Any]:
    body = copy.deepcopy(QUOTE)
    node = body
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return body


@pytest.mark.parametrize(
    ("field", "named"),
    [
        (["quoteId"], "/quoteId is required"),
        (["amount", "currency"], "/amount/currency is required"),
        (["payee", "partyIdInfo", "partyIdentifier"], "/payee/partyIdInfo/partyIdentifier"),
    ],
)
def test_missing_fields_are_3102_naming_the_field(field: list[str], named: str) -> None:
    with pytest.raises(FspiopError) as info:
        schemas("1.1").validate("POST", "/quotes", _without(field))
    assert info.value.code == "3102"
    assert named in info.value.description


@pytest.mark.parametrize(
    ("mutate", "named"),
    [
        (lambda b: b["amount"].update(amount="10.50"), "/amount/amount"),  # trailing zero
        (lambda b: b["amount"].update(amount="-1"), "/amount/amount"),
        (lambda b: b.update(quoteId="B51EC534-EE48-4575-B6A9-EAD2955B8069"), "/quoteId"),
        (lambda b: b.update(amountType="GIVE"), "/amountType"),
        (lambda b: b["payee"]["partyIdInfo"].update(partyIdType="PHONE"), "/payee/partyIdInfo"),
    ],
)
def test_malformed_fields_are_3100_naming_the_field(mutate: Any, named: str) -> None:
    body = copy.deepcopy(QUOTE)
    mutate(body)
    with pytest.raises(FspiopError) as info:
        schemas("1.1").validate("POST", "/quotes", body)
    assert info.value.code == "3100"
    assert named in info.value.description


def test_extra_properties_are_refused_in_2_0() -> None:
    body = copy.deepcopy(QUOTE)
    body["surprise"] = 1
    with pytest.raises(FspiopError) as info:
        schemas("2.0").validate("POST", "/quotes", body)
    assert info.value.code == "3100"
    assert "/surprise is not allowed" in info.value.description


def test_unknown_operation_is_3002() -> None:
    with pytest.raises(FspiopError) as info:
        schemas("1.1").validate("DELETE", "/quotes/x", None)
    assert info.value.code == "3002"


PARTY: dict[str, Any] = {
    "party": {
        "partyIdInfo": {"partyIdType": "MSISDN", "partyIdentifier": "27713803912", "fspId": "dfsp"},
        "name": "Zoë Ångström-Nkosi",
        "personalInfo": {"complexName": {"firstName": "Zoë", "lastName": "Ångström"}},
    }
}


@pytest.mark.parametrize("version", ["1.1", "2.0"])
def test_unicode_names_use_the_official_ecmascript_patterns(version: str) -> None:
    """The name patterns use \\p{L} (ECMAScript); Python's `re` cannot compile them."""
    schemas(version).validate("PUT", "/parties/MSISDN/27713803912", PARTY)
    blank = copy.deepcopy(PARTY)
    blank["party"]["personalInfo"]["complexName"]["firstName"] = "   "
    with pytest.raises(FspiopError) as info:
        schemas(version).validate("PUT", "/parties/MSISDN/27713803912", blank)
    assert info.value.code == "3100"
    assert "/party/personalInfo/complexName/firstName" in info.value.description
