"""Payer-side FSPIOP requests for driving the switch double (tests, load scripts, demos).

Builds the bodies and headers a payer DFSP sends for lookup, quote and transfer, so callers
need not repeat the field lists. Not a DFSP: sending and receiving callbacks is the caller's.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from doubles.switch_double.wire import fspiop_time, now_utc
from phee.fspiop.headers import request_headers


def headers(
    method: str, path: str, source: str, destination: str | None = None, version: str = "1.1"
) -> dict[str, str]:
    """FSPIOP headers for a request from `source` (Accept on GET/POST, none on PUT)."""
    return request_headers(
        method=method, path=path, source=source, destination=destination, version=version
    )


def party_path(id_type: str, identifier: str, sub_id: str | None = None) -> str:
    return f"/parties/{id_type}/{identifier}" + (f"/{sub_id}" if sub_id else "")


def quote_request(
    *,
    payer_fsp: str,
    payee_fsp: str,
    payee_id: tuple[str, str],
    amount: str = "100",
    currency: str = "USD",
    payer_id: tuple[str, str] = ("MSISDN", "16135551212"),
    quote_id: str | None = None,
) -> dict[str, Any]:
    """A `POST /quotes` body for a plain payer-initiated transfer of `amount`."""
    return {
        "quoteId": quote_id or str(uuid.uuid4()),
        "transactionId": str(uuid.uuid4()),
        "payee": {
            "partyIdInfo": {
                "partyIdType": payee_id[0],
                "partyIdentifier": payee_id[1],
                "fspId": payee_fsp,
            }
        },
        "payer": {
            "partyIdInfo": {
                "partyIdType": payer_id[0],
                "partyIdentifier": payer_id[1],
                "fspId": payer_fsp,
            }
        },
        "amountType": "SEND",
        "amount": {"amount": amount, "currency": currency},
        "transactionType": {
            "scenario": "TRANSFER",
            "initiator": "PAYER",
            "initiatorType": "CONSUMER",
        },
    }


def transfer_request(
    quote: dict[str, Any],
    quote_answer: dict[str, Any],
    *,
    expires_in_s: float = 30.0,
    transfer_id: str | None = None,
) -> dict[str, Any]:
    """A `POST /transfers` body from a quote request and the payee's `PUT /quotes` answer."""
    return {
        "transferId": transfer_id or str(uuid.uuid4()),
        "payerFsp": quote["payer"]["partyIdInfo"]["fspId"],
        "payeeFsp": quote["payee"]["partyIdInfo"]["fspId"],
        "amount": quote_answer["transferAmount"],
        "ilpPacket": quote_answer["ilpPacket"],
        "condition": quote_answer["condition"],
        "expiration": fspiop_time(now_utc() + timedelta(seconds=expires_in_s)),
    }
