"""Job handlers of the payer transfer (engine_workers/bpmn/payer-transfer.bpmn).

No `from __future__ import annotations` here: pyzeebe recognises the `Job` parameter by its
annotation object, which postponed annotations would turn into a string.
"""

import logging
from typing import Any

from pyzeebe import Job, ZeebeWorker

from engine_workers.registration import add_task
from engine_workers.runtime import (
    Runtime,
    dig,
    iso_duration,
    money,
    now_iso,
    parse_iso,
    variables,
)
from phee import contract
from phee.fspiop import ilp
from phee.fspiop.errors import code_of

log = logging.getLogger("engine_workers.payer")


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


def register(worker: ZeebeWorker, rt: Runtime) -> None:
    """Attach every payer task to `worker`."""
    s = rt.settings

    async def party_lookup(job: Job) -> dict[str, Any]:
        v = variables(job)
        info = v["payee"]["partyIdInfo"]
        key = contract.party_key(
            info["partyIdType"], info["partyIdentifier"], info.get("partySubIdOrType")
        )
        # Register first: a callback that overtakes our own request must find its waiter.
        await rt.register_party_wait(key, v["transactionId"], expires_in_s=120)
        await rt.fspiop.send("GET", _party_path(info), destination=None)
        await rt.store.set_status(v["transactionId"], "PARTY_LOOKUP")
        return {}

    async def quote(job: Job) -> dict[str, Any]:
        v = variables(job)
        party = dig(v, "partyCallback", "body", "party") or {}
        payee_fsp = dig(party, "partyIdInfo", "fspId")
        if not payee_fsp:
            raise ValueError("the party answer names no fspId")
        payer = {"partyIdInfo": {**v["payer"]["partyIdInfo"], "fspId": s.fsp_id}}
        body: dict[str, Any] = {
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
            body["note"] = v["note"]
        await rt.fspiop.send("POST", "/quotes", body=body, destination=payee_fsp)
        await rt.store.set_status(v["transactionId"], "QUOTE_REQUESTED")
        return {"payeeFsp": payee_fsp}

    async def block(job: Job) -> dict[str, Any]:
        v = variables(job)
        amount = money(dig(v, "quoteCallback", "body", "transferAmount") or v["amount"])
        await rt.ams.block(v["transactionId"], v["payer"]["partyIdInfo"], amount)
        await rt.store.set_status(v["transactionId"], "FUNDS_BLOCKED")
        return {"transferAmount": amount}

    async def transfer(job: Job) -> dict[str, Any]:
        v = variables(job)
        quote_body = v["quoteCallback"]["body"]
        expiration = now_iso(s.transfer_expiry_s)
        body = {
            "transferId": v["transferId"],
            "payerFsp": s.fsp_id,
            "payeeFsp": v["payeeFsp"],
            "amount": v["transferAmount"],
            "ilpPacket": quote_body["ilpPacket"],
            "condition": quote_body["condition"],
            "expiration": expiration,
        }
        await rt.fspiop.send("POST", "/transfers", body=body, destination=v["payeeFsp"])
        await rt.store.set_status(v["transactionId"], "TRANSFER_SENT")
        # After expiry plus grace the process asks GET /transfers/{id} (never guesses).
        return {
            "transferExpiration": expiration,
            "transferWait": iso_duration(s.transfer_expiry_s + s.expiry_grace_s),
        }

    async def transfer_status(job: Job) -> dict[str, Any]:
        v = variables(job)
        await rt.fspiop.send("GET", f"/transfers/{v['transferId']}", destination=v["payeeFsp"])
        await rt.store.set_status(v["transactionId"], "TRANSFER_STATUS_REQUESTED")
        return {}

    def decide(v: dict[str, Any]) -> tuple[str, str]:
        """(outcome, reason) of the transfer answer: COMMITTED, ABORTED or UNKNOWN."""
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
            # COMMITTED with a wrong fulfilment breaks the protocol: an operator decides.
            raise RuntimeError(f"transfer {v['transferId']}: fulfilment does not match condition")
        reason = "transfer committed"
        if parse_iso(now_iso()) > parse_iso(v["transferExpiration"]):
            reason += " (after expiry: flagged for reconciliation)"
        return "COMMITTED", reason

    async def settle(job: Job) -> dict[str, Any]:
        """Book or release (both idempotent in the AMS), then record the final state."""
        v = variables(job)
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
        v = variables(job)
        status = job.custom_headers["status"]
        reason = job.custom_headers.get("reason", "")
        source = job.custom_headers.get("errorFrom")
        detail = _error_detail(v.get(source)) if source else None
        if detail:
            reason = f"{reason}: {detail}"
        elif v.get("lastError"):
            reason = f"{reason}: {v['lastError']}"
        await rt.store.set_status(v["transactionId"], status, reason)
        log.info("payment %s %s: %s", v["transactionId"], status, reason)
        return {"status": status, "reason": reason}

    # Each job fetches only what it reads: activation otherwise ships every callback body.
    for task_type, handler, fetch in (
        ("fspiop-party-lookup", party_lookup, ["payee", "transactionId"]),
        (
            "fspiop-quote",
            quote,
            ["partyCallback", "payer", "quoteId", "transactionId", "amount", "note"],
        ),
        ("ams-block", block, ["quoteCallback", "amount", "transactionId", "payer"]),
        (
            "fspiop-transfer",
            transfer,
            ["quoteCallback", "transferId", "payeeFsp", "transferAmount", "transactionId"],
        ),
        ("fspiop-transfer-status", transfer_status, ["transferId", "payeeFsp", "transactionId"]),
        (
            "fspiop-settle",
            settle,
            [
                "transferCallback",
                "quoteCallback",
                "transferId",
                "transactionId",
                "transferExpiration",
            ],
        ),
        (
            "phee-outcome",
            outcome,
            ["transactionId", "partyCallback", "quoteCallback", "amsError", "lastError"],
        ),
    ):
        add_task(worker, task_type, handler, s.max_jobs, fetch)


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
