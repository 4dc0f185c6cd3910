"""Job handlers of the payee processes (payee-party-lookup.bpmn, payee-quote-transfer.bpmn).

No `from __future__ import annotations`: pyzeebe finds the `Job` parameter by its annotation.
The payee side always answers the switch: a refusal becomes an error callback with its code,
never silence (PH-EE sends nothing when a payee quote fails).
"""

import logging
from typing import Any

from pyzeebe import Job, ZeebeWorker

from engine_workers.ams import AmsRefusal
from engine_workers.failures import Transient
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
from phee.fspiop import headers as fh
from phee.fspiop import ilp

log = logging.getLogger("engine_workers.payee")


def _refusal(code: str, description: str) -> dict[str, Any]:
    return {"ok": False, "errorCode": code, "errorDescription": description}


def _party_path(v: dict[str, Any]) -> str:
    path = f"/parties/{v['partyIdType']}/{v['partyIdentifier']}"
    return f"{path}/{v['partySubIdOrType']}" if v.get("partySubIdOrType") else path


def register(worker: ZeebeWorker, rt: Runtime) -> None:
    """Attach every payee task to `worker`."""
    s = rt.settings

    async def ams_or_refusal(job: Job, call: Any) -> Any:
        """Run an AMS call; a refusal or (on the last retry) an outage becomes an answer."""
        try:
            return await call
        except AmsRefusal as err:
            return _refusal(err.code, err.description)
        except Transient:
            if job.retries <= 1:
                return _refusal("2003", "the account system is not available")
            raise

    async def party_lookup(job: Job) -> dict[str, Any]:
        v = variables(job)
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
        v = variables(job)
        result = v["partyResult"]
        path = _party_path(v)
        version = v.get("fspiopVersion")
        if result.get("ok"):
            body = {"party": result["party"]}
            await rt.fspiop.send(
                "PUT", path, body=body, destination=v["requester"], version=version
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
        v = variables(job)
        req = v["quoteRequest"]
        await rt.store.create(
            v["transactionId"],
            tenant=v.get("tenant", "default"),
            correlation_id=None,
            direction="PAYEE",
            request=req,
        )
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
            return {"quoteResult": answer}
        return {"quoteResult": {"ok": True, **answer}}

    async def quote_response(job: Job) -> dict[str, Any]:
        v = variables(job)
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
        body: dict[str, Any] = {
            "transferAmount": transfer_amount,
            "expiration": expiration,
            "ilpPacket": packet.packet,
            "condition": packet.condition,
        }
        if ams.get("payeeReceiveAmount"):
            body["payeeReceiveAmount"] = ams["payeeReceiveAmount"]
        for fee in ("payeeFspFee", "payeeFspCommission"):
            if ams.get(fee) and ams[fee].get("amount") not in (None, "0"):
                body[fee] = ams[fee]
        await rt.send_and_remember(
            "quotes",
            v["quoteId"],
            f"/quotes/{v['quoteId']}",
            body=body,
            destination=v["requester"],
            version=v.get("fspiopVersion"),
        )
        await rt.store.set_status(v["transactionId"], "QUOTED")
        wait = (parse_iso(expiration) - parse_iso(now_iso())).total_seconds() + s.expiry_grace_s
        return {
            "ilpPacket": packet.packet,
            "condition": packet.condition,
            "quoteExpiration": expiration,
            "transferRequestWait": iso_duration(wait),
        }

    async def check_transfer(job: Job) -> dict[str, Any]:
        v = variables(job)
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
            return {"transferCheck": _refusal(code, text), "transferId": body.get("transferId")}
        return {
            "transferCheck": {"ok": True},
            "transferId": body["transferId"],
            "payerFsp": body.get("payerFsp"),
        }

    async def credit(job: Job) -> dict[str, Any]:
        v = variables(job)
        payee = v["quoteRequest"]["payee"]["partyIdInfo"]
        amount = money(v["transferRequest"]["body"]["amount"])
        await rt.ams.credit(
            v["transactionId"],
            {"partyIdType": payee["partyIdType"], "partyIdentifier": payee["partyIdentifier"]},
            amount,
        )
        return {}

    async def transfer_response(job: Job) -> dict[str, Any]:
        v = variables(job)
        body = {
            "fulfilment": ilp.fulfilment_for_packet(v["ilpPacket"], s.secret("ilp_secret")),
            "completedTimestamp": now_iso(),
            "transferState": "COMMITTED",
        }
        await rt.send_and_remember(
            "transfers",
            v["transferId"],
            f"/transfers/{v['transferId']}",
            body=body,
            destination=_transfer_requester(v),
            version=v.get("fspiopVersion"),
        )
        return {}

    async def error_callback(job: Job) -> dict[str, Any]:
        v = variables(job)
        resource = job.custom_headers["resource"]
        source = v.get(job.custom_headers["errorFrom"]) or {}
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

    for task_type, handler in (
        ("ams-party-lookup", party_lookup),
        ("fspiop-party-response", party_response),
        ("ams-quote", quote),
        ("fspiop-quote-response", quote_response),
        ("payee-check-transfer", check_transfer),
        ("ams-credit", credit),
        ("fspiop-transfer-response", transfer_response),
        ("fspiop-error-callback", error_callback),
    ):
        add_task(worker, task_type, handler, s.max_jobs)


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
