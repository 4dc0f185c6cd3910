"""The built-in counterpart DFSP: answers lookups, quotes and transfers inside the switch.

It behaves like a Mojaloop SDK payee that accepts everything: parties come from the oracle
(those registered for its fspId), quotes are free (transferAmount = amount), ILP packet and
condition come from `phee.fspiop.ilp` with the configured secret, and a transfer is fulfilled
when its condition is the one the secret gives for its packet (so, like the SDK, it keeps no
per-quote state) and it has not expired. No HTTP is involved: messages go in, answers come out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from doubles.switch_double.settings import SwitchSettings
from doubles.switch_double.state import Directory
from doubles.switch_double.wire import (
    Message,
    callback,
    error_message,
    fspiop_time,
    now_utc,
    parse_time,
)
from phee.fspiop import ilp
from phee.fspiop.errors import FspiopError


class SimulatedPayee:
    """`receive` turns a message addressed to the payee into the messages it answers with."""

    def __init__(
        self,
        settings: SwitchSettings,
        directory: Directory,
        *,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self.fsp_id = settings.simulated_payee
        self._secret = settings.ilp_secret
        self._quote_expiry = timedelta(seconds=settings.quote_expiry_s)
        self._directory = directory
        self._clock = clock

    def receive(self, msg: Message) -> list[Message]:
        route = msg.route
        try:
            if route.error or msg.method in ("PUT", "PATCH"):
                return []  # errors and notifications from the switch: nothing to answer
            if route.resource == "parties" and msg.method == "GET":
                return [self._party(msg)]
            if route.resource == "quotes" and msg.method == "POST":
                return [self._quote(msg)]
            if route.resource == "transfers" and msg.method == "POST":
                return [self._transfer(msg)]
            raise FspiopError("3002", f"the simulated payee does not serve {msg.method} {msg.path}")
        except (KeyError, TypeError) as err:  # a body the switch let through but cannot use
            return self._error(msg, FspiopError("3100", f"cannot read the request: {err}"))
        except FspiopError as err:
            return self._error(msg, err)

    def _error(self, msg: Message, err: FspiopError) -> list[Message]:
        """The payee's error callback for a request it cannot serve."""
        route = msg.route
        if route.id:
            base = route.base
        else:
            key = "quoteId" if route.resource == "quotes" else "transferId"
            base = f"/{route.resource}/{(msg.body or {}).get(key, '')}"
        return [
            error_message(
                source=self.fsp_id,
                to=msg.source,
                path=base,
                code=err.code,
                detail=err.detail,
                version=msg.version,
            )
        ]

    def _answer(self, msg: Message, path: str, body: dict[str, Any]) -> Message:
        return callback(
            source=self.fsp_id, to=msg.source, path=path, body=body, version=msg.version
        )

    def _party(self, msg: Message) -> Message:
        key = msg.route.party_key()
        party = self._directory.party(key)
        if party is None or self._directory.owner_of(key) != self.fsp_id:
            raise FspiopError("3204", f"{self.fsp_id} has no party {'/'.join(filter(None, key))}")
        id_info: dict[str, Any] = {
            "partyIdType": key[0],
            "partyIdentifier": key[1],
            "fspId": self.fsp_id,
        }
        if key[2]:
            id_info["partySubIdOrType"] = key[2]
        name = party.name or f"Sim Payee {key[1]}"
        first, _, last = name.partition(" ")
        complex_name = {"firstName": first, "lastName": last or first}
        body = {
            "party": {
                "partyIdInfo": id_info,
                "name": name,
                "personalInfo": {"complexName": complex_name},
            }
        }
        return self._answer(msg, msg.route.base, body)

    def _quote(self, msg: Message) -> Message:
        request = msg.body or {}
        quote_id = request["quoteId"]
        expiration = fspiop_time(self._clock() + self._quote_expiry)
        transaction: dict[str, Any] = {
            "quoteId": quote_id,
            "transactionId": request["transactionId"],
            "transactionType": request["transactionType"],
            "payee": request["payee"],
            "payer": request["payer"],
            "expiration": expiration,
            "amount": request["amount"],
        }
        if "note" in request:
            transaction["note"] = request["note"]
        try:
            made = ilp.v1_response(transaction, self._secret)
        except ilp.IlpError as err:
            raise FspiopError("5101", str(err)) from err
        body = {
            "transferAmount": request["amount"],
            "payeeReceiveAmount": request["amount"],
            "expiration": expiration,
            "ilpPacket": made.packet,
            "condition": made.condition,
        }
        return self._answer(msg, f"/quotes/{quote_id}", body)

    def _transfer(self, msg: Message) -> Message:
        request = msg.body or {}
        transfer_id = request["transferId"]
        packet, condition = request.get("ilpPacket"), request.get("condition")
        try:
            fulfilment = ilp.fulfilment_for_packet(str(packet), self._secret)
            decoded = ilp.decode(str(packet))
        except ilp.IlpError as err:
            raise FspiopError("5105", f"ILP packet not accepted: {err}") from err
        if ilp.condition_for(fulfilment) != condition:
            raise FspiopError("5105", "condition does not match the quote")
        if decoded.transaction.get("amount") != request.get("amount"):
            raise FspiopError("5105", "amount differs from the quoted transferAmount")
        if parse_time(request.get("expiration"), "expiration") <= self._clock():
            raise FspiopError("3303", f"transfer {transfer_id} has expired")
        body = {
            "fulfilment": fulfilment,
            "completedTimestamp": fspiop_time(self._clock()),
            "transferState": "COMMITTED",
        }
        return self._answer(msg, f"/transfers/{transfer_id}", body)
