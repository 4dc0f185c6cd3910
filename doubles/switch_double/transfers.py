"""Transfers through the switch: prepare, fulfil (condition checked), abort, expire, query.

The switch keeps each transfer's condition and expiration from `POST /transfers`. A payee's
`PUT /transfers/{id}` commits it only if `sha256(fulfilment) == condition` and it has not
expired; otherwise both sides get an error. A transfer nobody fulfils before its expiration is
aborted: the payer gets `3303`, and so does the payee when the transfer was RESERVED (it had
been sent to the payee), as Mojaloop's timeout handler does. Finished transfers are kept
(bounded) to answer `GET` and duplicate `POST`s.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from doubles.switch_double.faults import Fault
from doubles.switch_double.state import BoundedMap, Sent, TransferRecord, TransferState
from doubles.switch_double.wire import (
    Message,
    callback,
    error_message,
    fingerprint,
    fspiop_time,
    now_utc,
    parse_time,
)
from phee.fspiop import ilp
from phee.fspiop.errors import code_of

if TYPE_CHECKING:
    from doubles.switch_double.core import Switch

log = logging.getLogger("doubles.switch_double.transfers")


class Transfers:
    """The switch's transfer book and the rules above."""

    def __init__(self, switch: Switch) -> None:
        self._sw = switch
        settings = switch.settings
        self._records: BoundedMap[str, TransferRecord] = BoundedMap(
            settings.max_records, settings.record_ttl_s, on_evict=lambda r: r.stop_timer()
        )

    def get(self, transfer_id: str) -> TransferRecord | None:
        return self._records.get(transfer_id)

    def __len__(self) -> int:
        return len(self._records)

    def stop_timers(self) -> None:
        for record in self._records.values():
            record.stop_timer()

    def clear(self) -> None:
        self._records.clear()

    async def handle(self, msg: Message, fault: Fault | None) -> None:
        route = msg.route
        if msg.method == "POST":
            await self._prepare(msg, fault)
        elif msg.method == "GET":
            await self._query(msg, fault)
        elif route.error:
            await self._payee_error(msg, fault)
        else:
            await self._fulfil(msg, fault)

    # --- prepare -------------------------------------------------------------------------

    def _new_record(self, msg: Message, payee: str) -> TransferRecord:
        body = msg.body or {}
        return TransferRecord(
            transfer_id=str(body["transferId"]),
            payer=msg.source,
            payee=payee,
            fingerprint=fingerprint(body),
            condition=str(body["condition"]),
            expiration=parse_time(body["expiration"], "expiration"),
            version=msg.version,
        )

    async def reject(self, msg: Message, fault: Fault) -> None:
        """An injected error on `POST /transfers`: the transfer is aborted before it starts."""
        error = self._sw.error(msg, fault.error_code, "injected fault")
        transfer_id = str((msg.body or {})["transferId"])
        if self.get(transfer_id) is None:
            record = self._new_record(msg, str(self._sw.destination_of(msg)))
            self._records.put(transfer_id, record)
            self._finish(record, TransferState.ABORTED, "fault", fault.error_code)
            record.result = Sent(error.path, error.body or {}, error.source)
        await self._sw.send(error, None)

    async def _prepare(self, msg: Message, fault: Fault | None) -> None:
        sw = self._sw
        body = msg.body or {}
        transfer_id = str(body["transferId"])
        existing = self.get(transfer_id)
        if existing is not None:
            same = existing.fingerprint == fingerprint(body)
            result = existing.result if existing.final else None
            await sw.duplicate(msg, same, result, fault)
            return
        payee = sw.destination_of(msg)
        if payee is None or not sw.known(payee):
            await sw.send(sw.error(msg, "3201", f"destination {payee} is unknown"), fault)
            return
        record = self._new_record(msg, payee)
        self._records.put(transfer_id, record)
        remaining = (record.expiration - now_utc()).total_seconds()
        if remaining <= 0:
            await self._abort(record, "3303", "expired", f"expired at {body['expiration']}", fault)
            return
        record.timer = asyncio.get_running_loop().call_later(
            remaining, lambda: sw.spawn(lambda: self._expire(transfer_id))
        )
        record.state = TransferState.RESERVED  # as the hub does before it notifies the payee
        if not await sw.send(msg.forward(payee), fault):
            await self._abort(record, "1001", "unreachable", f"{payee} could not be reached", None)

    async def _expire(self, transfer_id: str) -> None:
        record = self.get(transfer_id)
        if record is None or record.final:
            return
        reserved = record.state == TransferState.RESERVED
        await self._abort(
            record, "3303", "expired", "no fulfilment before expiration", None, payee=reserved
        )

    async def _abort(
        self,
        record: TransferRecord,
        code: str,
        reason: str,
        detail: str,
        fault: Fault | None,
        *,
        payee: bool = False,
    ) -> None:
        """Abort with an error callback from the switch to the payer (and the payee if asked)."""
        self._finish(record, TransferState.ABORTED, reason, code)
        sw = self._sw
        fsp = sw.settings.fsp_id
        to_payer = self._error_to(record, record.payer, code, detail)
        record.result = Sent(to_payer.path, to_payer.body or {}, fsp)
        log.info("transfer %s aborted (%s): %s", record.transfer_id, code, detail)
        await sw.send(to_payer, fault)
        if payee:
            await sw.send(self._error_to(record, record.payee, code, detail), fault)

    def _error_to(self, record: TransferRecord, to: str, code: str, detail: str) -> Message:
        return error_message(
            source=self._sw.settings.fsp_id,
            to=to,
            path=f"/transfers/{record.transfer_id}",
            code=code,
            detail=detail,
            version=record.version,
        )

    def _finish(
        self, record: TransferRecord, state: TransferState, reason: str, code: str | None = None
    ) -> None:
        record.state = state
        record.error_code = code
        record.completed = fspiop_time(now_utc())
        record.stop_timer()
        self._sw.metrics.transfers.labels(state.value, reason).inc()

    # --- payee answers -------------------------------------------------------------------

    async def _fulfil(self, msg: Message, fault: Fault | None) -> None:
        sw = self._sw
        transfer_id = msg.route.id or ""
        record = self.get(transfer_id)
        if record is None or msg.source != record.payee:
            await sw.send(sw.error(msg, "3208", f"transfer {transfer_id} is unknown"), fault)
            return
        body = msg.body or {}
        if record.final:
            if record.state == TransferState.ABORTED:
                code = record.error_code or "3100"
                await sw.send(sw.error(msg, code, "transfer was already aborted"), fault)
            else:
                log.info("repeated fulfilment of committed transfer %s ignored", transfer_id)
            return
        state = body.get("transferState")
        if state == "ABORTED":
            self._finish(record, TransferState.ABORTED, "payee")
            record.result = Sent(msg.path, body, msg.source)
            await sw.send(msg.forward(record.payer), fault)
            return
        if record.expiration <= now_utc():
            detail = "fulfilment arrived after expiration"
            await self._abort(record, "3303", "expired", detail, fault, payee=True)
            return
        fulfilment = body.get("fulfilment")
        if not isinstance(fulfilment, str) or not ilp.fulfilment_matches(
            fulfilment, record.condition
        ):
            detail = "invalid fulfilment: sha256(fulfilment) is not the condition"
            await self._abort(record, "3100", "invalid_fulfilment", detail, fault, payee=True)
            return
        self._finish(record, TransferState.COMMITTED, "fulfilled")
        record.fulfilment = fulfilment
        record.completed = str(body.get("completedTimestamp") or record.completed)
        if state == "RESERVED":  # the payee asked to be told of the commit (PATCH, FSPIOP 1.1)
            committed = self._state_body(record)
            to_payer = callback(
                source=msg.source,
                to=record.payer,
                path=msg.path,
                body=committed,
                version=msg.version,
            )
            patch = Message(
                "PATCH",
                msg.path,
                sw.settings.fsp_id,
                record.payee,
                {k: committed[k] for k in ("completedTimestamp", "transferState")},
                msg.version,
            )
        else:
            to_payer, patch = msg.forward(record.payer), None
        record.result = Sent(to_payer.path, to_payer.body or {}, to_payer.source)
        await sw.send(to_payer, fault)
        if patch is not None:
            await sw.send(patch, fault)

    async def _payee_error(self, msg: Message, fault: Fault | None) -> None:
        transfer_id = msg.route.id or ""
        record = self.get(transfer_id)
        if record is None or msg.source != record.payee:
            log.warning("error callback for unknown transfer %s from %s", transfer_id, msg.source)
            return
        if record.final:
            log.info("error callback for finished transfer %s ignored", transfer_id)
            return
        self._finish(record, TransferState.ABORTED, "payee_error", code_of(msg.body))
        record.result = Sent(msg.path, msg.body or {}, msg.source)
        await self._sw.send(msg.forward(record.payer), fault)

    # --- queries -------------------------------------------------------------------------

    def _state_body(self, record: TransferRecord) -> dict[str, Any]:
        body: dict[str, Any] = {"transferState": record.state.value}
        if record.state == TransferState.COMMITTED and record.fulfilment:
            body["fulfilment"] = record.fulfilment
        if record.final and record.completed:
            body["completedTimestamp"] = record.completed
        return body

    async def _query(self, msg: Message, fault: Fault | None) -> None:
        sw = self._sw
        transfer_id = msg.route.id or ""
        record = self.get(transfer_id)
        if record is None or msg.source not in (record.payer, record.payee):
            await sw.send(sw.error(msg, "3208", f"transfer {transfer_id} is unknown"), fault)
            return
        answer = callback(
            source=sw.settings.fsp_id,
            to=msg.source,
            path=f"/transfers/{transfer_id}",
            body=self._state_body(record),
            version=msg.version,
        )
        await sw.send(answer, fault)

    def snapshot(self, transfer_id: str) -> dict[str, Any] | None:
        """What the admin API shows of a transfer."""
        record = self.get(transfer_id)
        if record is None:
            return None
        return {
            "transferId": record.transfer_id,
            "payerFsp": record.payer,
            "payeeFsp": record.payee,
            "condition": record.condition,
            "expiration": fspiop_time(record.expiration),
            "errorCode": record.error_code,
            **self._state_body(record),
        }
