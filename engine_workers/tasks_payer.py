"""Task functions of the payer transfer (engine_workers/bpmn/payer-transfer.bpmn).

Every outbound FSPIOP request is built once and kept (`PaymentStore.keep_request`): a retried
task resends exactly the kept body, so the switch sees a resend, never a different request
under the same id (which it refuses with 3106 while the first may still commit).
"""

from __future__ import annotations

import logging
from typing import Any

from engine_workers.failures import GiveUp, Transient
from engine_workers.registration import Job, Tasks
from engine_workers.runtime import (
    Runtime,
    dig,
    iso_duration,
    money,
    now_iso,
    parse_iso,
)
from phee import contract
from phee.engine import Await
from phee.fspiop import ilp
from phee.fspiop.errors import code_of

log = logging.getLogger("engine_workers.payer")

#: what a task that sent a request returns: its answer or its timer ends it
AWAIT = Await()


def _party_path(info: dict[str, Any]) -> str:
    path = f"/parties/{info['partyIdType']}/{info['partyIdentifier']}"
    sub = info.get("partySubIdOrType")
    return f"{path}/{sub}" if sub else path


#: what identifies a party's account; all a quote needs to name the payee
_PARTY_ID_FIELDS = ("partyIdType", "partyIdentifier", "partySubIdOrType", "fspId")


def _party_for_quote(party: dict[str, Any]) -> dict[str, Any]:
    """The payee as our POST /quotes names it: its identifying fields, nothing else.

    The payee DFSP's name, personal info and extensions from PUT /parties are not echoed back:
    the payee DFSP owns that data, and content we cannot vouch for must not make our own request
    invalid (the Testing Toolkit's mocked party names break its own FSPIOP 1.1 `Name` pattern, so
    echoing them got our quotes refused with 3100).
    """
    info = party.get("partyIdInfo") or {}
    return {"partyIdInfo": {k: info[k] for k in _PARTY_ID_FIELDS if info.get(k) is not None}}


def register(tasks: Tasks, rt: Runtime) -> None:
    """Add every payer task to `tasks`."""
    s = rt.settings

    async def party_lookup(job: Job) -> dict[str, Any] | Await:
        v = job.variables
        # One instance per payment: a second one (an ambiguous start that was retried) ends here.
        if not await rt.store.claim(v["transactionId"], job.instance_id, "PARTY_LOOKUP"):
            raise GiveUp("duplicate-instance", f"payment {v['transactionId']} has another instance")
        info = v["payee"]["partyIdInfo"]
        key = contract.party_key(
            info["partyIdType"], info["partyIdentifier"], info.get("partySubIdOrType")
        )
        # Register first: a callback that overtakes our own request must find its waiter.
        await rt.register_party_wait(key, v["transactionId"], expires_in_s=120)
        await rt.fspiop.send("GET", _party_path(info), destination=None)
        return AWAIT

    async def quote(job: Job) -> dict[str, Any] | Await:
        v = job.variables
        party = dig(v, "partyCallback", "body", "party") or {}
        payee_fsp = payee_fsp_of(v)
        payer = {"partyIdInfo": {**v["payer"]["partyIdInfo"], "fspId": s.fsp_id}}
        built: dict[str, Any] = {
            "quoteId": v["quoteId"],
            "transactionId": v["transactionId"],
            "payee": _party_for_quote(party),
            "payer": payer,
            "amountType": "SEND",
            "amount": v["amount"],
            "transactionType": {
                "scenario": "TRANSFER",
                "initiator": "PAYER",
                "initiatorType": "CONSUMER",
            },
        }
        if v.get("note"):
            built["note"] = v["note"]
        # The status with the request: the answer may end this task (a boundary event) before
        # it returns, and a later step's status must not be overwritten by this one.
        body = await rt.store.keep_request(
            v["quoteId"], "post-quotes", built, status=(v["transactionId"], "QUOTE_REQUESTED")
        )
        await rt.fspiop.send("POST", "/quotes", body=body, destination=payee_fsp)
        return AWAIT

    async def transfer(job: Job) -> dict[str, Any] | Await:
        """Block the payer's funds, then send POST /transfers (built once, resent as kept).

        A kept request means an earlier attempt blocked the funds and may have sent it, so the AMS
        is not asked again (an AMS outage after the switch may have the transfer never ends as
        "nothing was sent"). A task handed out again because its holder died (its lock expired,
        no failure reported) is never resent: the holder may have sent it, and its answer or
        the timer (then GET /transfers) ends the task. A retry after a reported failure resends
        the kept request as it is.
        """
        v = job.variables
        txid = v["transactionId"]
        body = await rt.store.kept(v["transferId"], "post-transfers")
        if body is not None and job.task.retries is None:
            return AWAIT
        if body is None:
            quote_body = v["quoteCallback"]["body"]
            amount = money(quote_body.get("transferAmount") or v["amount"])
            try:
                await rt.ams.block(txid, v["payer"]["partyIdInfo"], amount)
            except Transient as err:
                if not job.last_attempt:
                    raise
                # Nothing was sent: the process releases (idempotent) and ends FAILED.
                raise GiveUp("ams-unavailable", str(err), {"lastError": str(err)}) from err
            built = {
                "transferId": v["transferId"],
                "payerFsp": s.fsp_id,
                "payeeFsp": payee_fsp_of(v),
                "amount": amount,
                "ilpPacket": quote_body["ilpPacket"],
                "condition": quote_body["condition"],
                "expiration": now_iso(s.transfer_expiry_s),
            }
            body = await rt.store.keep_request(
                v["transferId"], "post-transfers", built, status=(txid, "TRANSFER_SENT")
            )
        expiration = str(body["expiration"])
        try:
            await rt.fspiop.send("POST", "/transfers", body=body, destination=body["payeeFsp"])
        except Transient as err:
            if not job.last_attempt:
                raise
            # The switch may have it: wait for its answer, or ask after expiry plus grace.
            left = (parse_iso(expiration) - parse_iso(now_iso())).total_seconds()
            waits = {
                "lastError": str(err),
                "transferExpiration": expiration,
                "transferWait": iso_duration(left + s.expiry_grace_s),
            }
            raise GiveUp("fspiop-unreachable", str(err), waits) from err
        return AWAIT

    async def transfer_status(job: Job) -> dict[str, Any] | Await:
        v = job.variables
        await rt.store.set_status(v["transactionId"], "TRANSFER_STATUS_REQUESTED")
        await rt.fspiop.send("GET", f"/transfers/{v['transferId']}", destination=payee_fsp_of(v))
        return AWAIT

    async def settle(job: Job) -> dict[str, Any]:
        """Book or release (both idempotent in the AMS), then record the final state."""
        v = job.variables
        if not v.get("transferExpiration"):
            # The answer overtook the transfer task's completion: the expiration is in the
            # request kept before it was sent.
            kept = await rt.store.kept(v["transferId"], "post-transfers")
            if kept is not None:
                v = {**v, "transferExpiration": kept.get("expiration")}
        outcome, reason = decide(v)
        status = {"COMMITTED": "COMMITTED", "ABORTED": "ABORTED"}.get(outcome, "FAILED")
        if outcome == "COMMITTED":
            await rt.ams.book(v["transactionId"])
        elif outcome == "ABORTED":
            await rt.ams.release(v["transactionId"])
        await rt.store.set_status(v["transactionId"], status, reason)
        log.info("payment %s %s: %s", v["transactionId"], status, reason)
        return {"transferOutcome": outcome, "status": status, "reason": reason}

    async def outcome(job: Job) -> dict[str, Any]:
        v = job.variables
        status = job.properties["status"]
        reason = job.properties.get("reason", "")
        source = job.properties.get("errorFrom")
        detail = _error_detail(v.get(source)) if source else None
        if detail:
            reason = f"{reason}: {detail}"
        elif v.get("lastError"):
            reason = f"{reason}: {v['lastError']}"
        if job.properties.get("release") == "true":
            try:
                await rt.ams.release(v["transactionId"])
            except Transient:
                if not job.last_attempt:
                    raise
                reason += "; the release did not reach the account system: reconcile"
        await rt.store.set_status(v["transactionId"], status, reason)
        log.info("payment %s %s: %s", v["transactionId"], status, reason)
        return {"status": status, "reason": reason}

    # The sending tasks await their answer (a boundary event ends them). Party lookups, quotes
    # and status requests are resent as they were when unanswered for `resend_after_ms`; a
    # transfer is sent by a later holder only if no request was kept (its holder died before
    # building it), never resent: unanswered, its timer leads to GET /transfers.
    resend = s.resend_after_ms
    tasks.add("fspiop-party-lookup", party_lookup, ["payee", "transactionId"], lock_ms=resend)
    tasks.add(
        "fspiop-quote",
        quote,
        ["partyCallback", "payer", "quoteId", "transactionId", "amount", "note"],
        lock_ms=resend,
    )
    tasks.add(
        "fspiop-transfer",
        transfer,
        ["quoteCallback", "partyCallback", "transferId", "amount", "transactionId", "payer"],
        lock_ms=resend,
    )
    tasks.add(
        "fspiop-transfer-status",
        transfer_status,
        ["transferId", "partyCallback", "transactionId"],
        lock_ms=resend,
    )
    settle_fetch = ["transferCallback", "quoteCallback", "transferId", "transactionId"]
    tasks.add("fspiop-settle", settle, [*settle_fetch, "transferExpiration"], s.settle_retries)
    tasks.add(
        "phee-outcome",
        outcome,
        [
            "transactionId",
            "partyCallback",
            "quoteCallback",
            "amsError",
            "lastError",
            "quoteResult",
            "transferCheck",
        ],
        s.settle_retries,
    )


def payee_fsp_of(v: dict[str, Any]) -> str:
    """The payee's FSP, from the party answer (kept on the instance by its callback)."""
    fsp = dig(v, "partyCallback", "body", "party", "partyIdInfo", "fspId")
    if not fsp:
        raise ValueError("the party answer names no fspId")
    return str(fsp)


def decide(v: dict[str, Any]) -> tuple[str, str]:
    """(outcome, reason) of the transfer answer: COMMITTED, ABORTED or UNKNOWN (held, FAILED)."""
    cb = v.get("transferCallback") or {}
    body = cb.get("body") or {}
    if not cb.get("ok"):
        detail = _error_detail(cb)
        return "ABORTED", "transfer not committed" + (f": {detail}" if detail else "")
    state = body.get("transferState")
    if state == "ABORTED":
        return "ABORTED", "transfer not committed: the switch reported it ABORTED"
    if state != "COMMITTED":
        # RECEIVED/RESERVED (or nonsense): not final. The funds stay blocked and the payment
        # ends FAILED for reconciliation; an incident would leave it with no final state.
        return "UNKNOWN", (
            f"the transfer was reported {state}, neither committed nor aborted; "
            "funds stay blocked for reconciliation"
        )
    condition = v["quoteCallback"]["body"]["condition"]
    if not ilp.fulfilment_matches(str(body.get("fulfilment", "")), condition):
        # COMMITTED with a wrong fulfilment breaks the protocol: hold the funds for an operator.
        return "UNKNOWN", (
            "the switch reported COMMITTED with a fulfilment that does not match the condition; "
            "funds stay blocked for reconciliation"
        )
    reason = "transfer committed"
    expiration = v.get("transferExpiration")
    if expiration and parse_iso(now_iso()) > parse_iso(str(expiration)):
        reason += " (after expiry: flagged for reconciliation)"
    return "COMMITTED", reason


def _error_detail(source: Any) -> str | None:
    """`<code> <description>` from a callback (`{"body": ErrorInformationObject}`), an
    ErrorInformationObject, or an AMS error (`{"errorCode", "errorDescription"}`)."""
    if not isinstance(source, dict):
        return None
    body = source.get("body")
    for candidate in (body, source):
        if isinstance(candidate, dict) and code_of(candidate):
            info = candidate["errorInformation"]
            return f"{info['errorCode']} {info.get('errorDescription', '')}".strip()
    if source.get("errorCode"):
        return f"{source['errorCode']} {source.get('errorDescription', '')}".strip()
    return None
