"""Peer data is used field by field: what the Testing Toolkit's mocked callbacks taught us."""

from __future__ import annotations

import pytest

from engine_workers.runtime import money
from engine_workers.tasks_payer import _party_for_quote


def test_money_keeps_amount_and_currency_only() -> None:
    noisy = {"laboris_b30": False, "currency": "USD", "amount": "3", "et270": True}
    assert money(noisy) == {"amount": "3", "currency": "USD"}


@pytest.mark.parametrize("value", [None, "3", {"amount": "3"}, {"currency": "USD"}])
def test_money_refuses_what_is_not_money(value: object) -> None:
    with pytest.raises(ValueError, match="Money"):
        money(value)


def test_the_quote_names_the_payee_by_its_identifiers_only() -> None:
    party = {
        "partyIdInfo": {
            "partyIdType": "MSISDN",
            "partyIdentifier": "27720000001",
            "fspId": "testingtoolkitdfsp",
            "extensionList": {"extension": [{"key": "k", "value": "v", "junk": 1}]},
        },
        "name": "{kikuJk}aMJgoCL,Lo_}peP=r_a=",
        "personalInfo": {"complexName": {"firstName": "James"}},
        "merchantClassificationCode": "05",
    }
    assert _party_for_quote(party) == {
        "partyIdInfo": {
            "partyIdType": "MSISDN",
            "partyIdentifier": "27720000001",
            "fspId": "testingtoolkitdfsp",
        }
    }
