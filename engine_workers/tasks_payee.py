"""Task functions of the payee processes (payee-party-lookup.bpmn, payee-quote-transfer.bpmn).

The payee side always answers the switch: a refusal becomes an error callback with its code,
never silence (PH-EE sends nothing when a payee quote fails). Answers are built once and kept,
so a retried task resends the same bytes. By default the payee is credited only when the switch
says COMMITTED (answer RESERVED, credit on PATCH /transfers); see `EngineSettings.reserve_first`.
"""

from __future__ import annotations

import logging
from typing import Any

from engine_workers.ams import AmsRefusal
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
from phee.fspiop import headers as fh
from phee.fspiop import ilp

log = logging.getLogger("engine_workers.payee")


def _refusal(code: str, description: str) -> dict[str, Any]:
    return {"ok": False, "errorCode": code, "errorDescription": description}


def _party_path(v: dict[str, Any]) -> str:
    path = f"/parties/{v['partyIdType']}/{v['partyIdentifier']}"
    return f"{path}/{v['partySubIdOrType']}" if v.get("partySubIdOrType") else path


def register(tasks: Tasks, rt: Runtime) -> None:
    """Add every payee task to `tasks`."""
    s = rt.settings

    async def ams_or_refusal(job: Job, call: Any) -> Any:
        """Run an AMS call; a refusal or (on the last attempt) an outage becomes an answer."""
        try:
            return await call
        except AmsRefusal as err:
            return _refusal(err.code, err.description)
        except Transient:
            if job.last_attempt:
                return _refusal("2003", "the account system is not available")
            raise

    async def party_lookup(job: Job) -> dict[str, Any]:
        v = job.variables
        found = await ams_or_refusal(job, rt.ams.party(v["partyIdType"], v["partyIdentifier"]))
        if found.get("ok") is False:
            return {"partyResult": found}
        info = {
            "partyIdType": v["partyIdType"],
            "partyIdentifier": v["partyIdentifier"],
            "fspId": s.fsp_id,
        }
        if v.get("partySubIdOrType"):
            info["partySubIdOrType"] = v["partySubIdOrType"]
        party: dict[str, Any] = {"partyIdInfo": info}
        if found.get("name"):
            party["name"] = found["name"]
        if found.get("personalInfo"):
            party["personalInfo"] = found["personalInfo"]
        return {"partyResult": {"ok": True, "party": party}}

    async def party_response(job: Job) -> dict[str, Any]:
        v = job.variables
        result = v["partyResult"]
        path = _party_path(v)
        version = v.get("fspiopVersion")
        if result.get("ok"):
            await rt.fspiop.send(
                "PUT",
                path,
                body={"party": result["party"]},
                destination=v["requester"],
                version=version,
            )
        else:
            await rt.fspiop.send(
                "PUT",
                f"{path}/error",
                body=_error_body(result),
                destination=v["requester"],
                version=version,
            )
        return {}

    async def quote(job: Job) -> dict[str, Any]:
        v = job.variables
        req = v["quoteRequest"]
        await rt.store.ensure(
            v["transactionId"], tenant=v.get("tenant", "default"), direction="PAYEE", request=req
        )
        if not await rt.store.claim(v["transactionId"], job.instance_id):
            raise GiveUp("duplicate-instance", f"payment {v['transactionId']} has another instance")
        payee = req["payee"]["partyIdInfo"]
        ams_request = {
            "transactionId": v["transactionId"],
            "quoteId": v["quoteId"],
            "payee": {
                "partyIdType": payee["partyIdType"],
                "partyIdentifier": payee["partyIdentifier"],
            },
            "amount": money(req["amount"]),
            "amountType": req["amountType"],
        }
        answer = await ams_or_refusal(job, rt.ams.quote(ams_request))
        if answer.get("ok") is False:
            return {"quoteResult": answer, "quoteOk": False}
        return {"quoteResult": {"ok": True, **answer}, "quoteOk": True}

    async def quote_response(job: Job) -> dict[str, Any]:
        v = job.variables
        req = v["quoteRequest"]
        ams = v["quoteResult"]
        transfer_amount = money(ams.get("transferAmount") or req["amount"])
        expiration = req.get("expiration") or now_iso(s.transfer_expiry_s * 3)
        transaction = {
            "quoteId": v["quoteId"],
            "transactionId": v["transactionId"],
            "transactionType": req["transactionType"],
            "payee": req["payee"],
            "payer": req["payer"],
            "expiration": expiration,
            "amount": transfer_amount,
        }
        if req.get("note"):
            transaction["note"] = req["note"]
        packet = ilp.v1_response(transaction, s.secret("ilp_secret"))
        built: dict[str, Any] = {
            "transferAmount": transfer_amount,
            "expiration": expiration,
            "ilpPacket": packet.packet,
            "condition": packet.condition,
        }
        if ams.get("payeeReceiveAmount"):
            built["payeeReceiveAmount"] = ams["payeeReceiveAmount"]
        for fee in ("payeeFspFee", "payeeFspCommission"):
            if ams.get(fee) and ams[fee].get("amount") not in (None, "0"):
                built[fee] = ams[fee]
        body = await rt.store.keep_request(v["quoteId"], "put-quotes", built)
        await rt.send_and_remember(
            "quotes",
            v["quoteId"],
            f"/quotes/{v['quoteId']}",
            body=body,
            destination=v["requester"],
            version=v.get("fspiopVersion"),
        )
        await rt.store.set_status(v["transactionId"], "QUOTED")
        left = (parse_iso(str(body["expiration"])) - parse_iso(now_iso())).total_seconds()
        return {
            "ilpPacket": body["ilpPacket"],
            "condition": body["condition"],
            "quoteExpiration": body["expiration"],
            "transferRequestWait": iso_duration(left + s.expiry_grace_s),
        }

    async def check_transfer(job: Job) -> dict[str, Any]:
        v = job.variables
        body = dig(v, "transferRequest", "body") or {}
        req_amount = money(v["quoteResult"].get("transferAmount") or v["quoteRequest"]["amount"])
        problems = []
        if body.get("ilpPacket") != v["ilpPacket"]:
            problems.append(("3100", "ilpPacket differs from the quoted one"))
        if body.get("condition") != v["condition"]:
            problems.append(("3100", "condition differs from the quoted one"))
        if _money_or_none(body.get("amount")) != req_amount:
            problems.append(("3100", "amount differs from the quoted transfer amount"))
        expiration = body.get("expiration")
        if expiration and parse_iso(expiration) < parse_iso(now_iso()):
            problems.append(("3303", "transfer expired"))
        if problems:
            code, text = problems[0]
            return {
                "transferCheck": _refusal(code, text),
                "transferCheckOk": False,
                "transferId": body.get("transferId"),
            }
        left = (
            (parse_iso(expiration) - parse_iso(now_iso())).total_seconds()
            if expiration
            else float(s.transfer_expiry_s)
        )
        return {
            "transferCheck": {"ok": True},
            "transferCheckOk": True,
            "transferId": body["transferId"],
            "payerFsp": body.get("payerFsp"),
            "reserveFirst": s.reserve_first,
            "commitWait": iso_duration(left + s.expiry_grace_s),
        }

    async def credit(job: Job) -> dict[str, Any]:
        v = job.variables
        payee = v["quoteRequest"]["payee"]["partyIdInfo"]
        amount = money(v["transferRequest"]["body"]["amount"])
        await rt.ams.credit(
            v["transactionId"],
            {"partyIdType": payee["partyIdType"], "partyIdentifier": payee["partyIdentifier"]},
            amount,
        )
        return {}

    async def transfer_response(job: Job) -> dict[str, Any]:
        v = job.variables
        reserve = bool(v.get("reserveFirst"))
        built = {
            "fulfilment": ilp.fulfilment_for_packet(v["ilpPacket"], s.secret("ilp_secret")),
            "completedTimestamp": now_iso(),
            "transferState": "RESERVED" if reserve else "COMMITTED",
        }
        body = await rt.store.keep_request(v["transferId"], "put-transfers", built)
        try:
            await rt.send_and_remember(
                "transfers",
                v["transferId"],
                f"/transfers/{v['transferId']}",
                body=body,
                destination=_transfer_requester(v),
                version=v.get("fspiopVersion"),
            )
        except Transient as err:
            if not (reserve and job.last_attempt):
                raise
            # The switch may have our answer: wait for its verdict all the same.
            raise GiveUp("fspiop-unreachable", str(err), {"lastError": str(err)}) from err
        await rt.store.set_status(v["transactionId"], "RESERVED" if reserve else "FULFILLED")
        return {}

    async def commit(job: Job) -> dict[str, Any]:
        """The switch's verdict on a RESERVED transfer: credit on COMMITTED, else nothing."""
        v = job.variables
        patch = v.get("transferPatch") or {}
        callback = v.get("transferCallback") or {}
        state = dig(patch, "body", "transferState") if patch.get("ok") else None
        if state == "COMMITTED":
            try:
                await credit(job)
            except Transient:
                if not job.last_attempt:
                    raise
                status, reason = (
                    "FAILED",
                    (
                        "the switch committed but the credit did not reach the account system: "
                        "reconcile"
                    ),
                )
            else:
                status, reason = "COMMITTED", "payee credited on the switch's commit"
        else:
            detail = _error_text(callback) if callback else None
            status = "ABORTED"
            reason = f"the switch did not commit ({state or detail or 'error'}): payee not credited"
        await rt.store.set_status(v["transactionId"], status, reason)
        log.info("payment %s %s: %s", v["transactionId"], status, reason)
        return {"status": status, "reason": reason}

    async def error_callback(job: Job) -> dict[str, Any]:
        v = job.variables
        resource = job.properties["resource"]
        source = v.get(job.properties["errorFrom"]) or {}
        ident = v["quoteId"] if resource == "quotes" else v.get("transferId")
        requester = _transfer_requester(v)
        if not ident:
            raise ValueError(f"no id to address the {resource} error callback")
        await rt.send_and_remember(
            resource,
            ident,
            f"/{resource}/{ident}/error",
            body=_error_body(source),
            destination=requester,
            version=v.get("fspiopVersion"),
        )
        return {}

    tasks.add("ams-party-lookup", party_lookup)
    tasks.add("fspiop-party-response", party_response)
    tasks.add("ams-quote", quote)
    tasks.add("fspiop-quote-response", quote_response)
    tasks.add("payee-check-transfer", check_transfer)
    tasks.add("ams-credit", credit, None, s.settle_retries)
    tasks.add("fspiop-transfer-response", transfer_response)
    tasks.add("payee-commit", commit, None, s.settle_retries)
    tasks.add("fspiop-error-callback", error_callback)


def _error_text(callback: dict[str, Any]) -> str | None:
    info = dig(callback, "body", "errorInformation") or {}
    if not info:
        return None
    return f"{info.get('errorCode', '')} {info.get('errorDescription', '')}".strip()


def _transfer_requester(v: dict[str, Any]) -> str:
    """Who sent the POST /transfers (the payer DFSP); the quote's requester otherwise."""
    hdrs = dig(v, "transferRequest", "headers") or {}
    return str(fh.get(hdrs, "FSPIOP-Source") or v["requester"])


def _money_or_none(value: Any) -> dict[str, str] | None:
    try:
        return money(value)
    except ValueError:
        return None


def _error_body(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "errorInformation": {
            "errorCode": str(result.get("errorCode", "2001")),
            "errorDescription": str(result.get("errorDescription", "internal error")),
        }
    }
