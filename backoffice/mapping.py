"""From Operaton history change events to back-office rows: pure functions, no I/O.

The transfer status is derived from engine facts with an explicit table, never from BPMN
element names: the payment processes record their outcome in the process variable `status`
(with `reason`), set by the final tasks (`fspiop-settle`, `phee-outcome`, `payee-commit`); an
open incident marks the payment EXCEPTION; the process instance's end (`act_hi_procinst`
`state_`) makes the recorded outcome final. A process that completes without a recorded outcome
is FAILED with that reason, not guessed.

The history tables reach Kafka as separate topics, so a payment's changes come in no fixed
order across tables (only a row's own changes are in order). A transfer row therefore keeps the
facts it has seen (end state, recorded outcome and reason, open incidents) and its status is
recomputed from them after every change (`derive`): the same facts in any order give the same
row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import orjson

from backoffice.records import CdcRecord
from phee import contract

Kind = Literal["step", "variable", "incident", "ignored"]

#: processes that are payments (one transfers row each), and their direction
PAYMENT_PROCESSES = {
    contract.PAYER_TRANSFER: "PAYER",
    contract.PAYEE_QUOTE_TRANSFER: "PAYEE",
}
#: the engine's recorded outcome (variable `status`) -> the transfer's final status
OUTCOME_STATUS = {
    "COMMITTED": "COMMITTED",
    "ABORTED": "ABORTED",
    "EXPIRED": "EXPIRED",
    "FAILED": "FAILED",
}
#: `act_hi_procinst.state_` of an ended instance -> how it ended
COMPLETED_STATES = frozenset({"COMPLETED"})
TERMINATED_STATES = frozenset({"EXTERNALLY_TERMINATED", "INTERNALLY_TERMINATED"})
FINAL = frozenset({*OUTCOME_STATUS.values(), "TERMINATED"})
IN_PROGRESS = "IN_PROGRESS"
EXCEPTION = "EXCEPTION"
#: history tables whose changes the back office keeps, by kind
KINDS: dict[str, Kind] = {
    "act_hi_procinst": "step",
    "act_hi_actinst": "step",
    "act_hi_varinst": "variable",
    "act_hi_incident": "incident",
}
#: act_hi_incident.incident_state_: 0 open, 1 resolved, 2 deleted
INCIDENT_STATES = {0: "OPEN", 1: "RESOLVED", 2: "DELETED"}
_AMOUNT_MAX = Decimal("1e20")


def classify(rec: CdcRecord) -> Kind:
    """What the back office keeps of a record: changes (not deletes: those are history
    cleanup) of the process-instance, activity, variable and incident tables of an instance."""
    if rec.op == "d" or rec.process_instance_id is None:
        return "ignored"
    return KINDS.get(rec.table, "ignored")


def ended(rec: CdcRecord) -> bool:
    """The process instance's row, showing it ended."""
    return rec.table == "act_hi_procinst" and rec.row.get("end_time_") is not None


def _cleanup_mark(rec: CdcRecord) -> bool:
    """Operaton stamps `removal_time_` on every history row of an instance when it ends (its
    history time to live): an update that changes nothing a person acted on."""
    return rec.op == "u" and rec.row.get("removal_time_") is not None


def _process_scope(rec: CdcRecord) -> bool:
    return rec.table == "act_hi_varinst" and rec.row.get("execution_id_") == rec.process_instance_id


def variable_text(row: dict[str, Any]) -> str:
    """A variable's value as text (strings as stored, JSON documents are JSON text)."""
    kind = row.get("var_type_")
    if kind in ("boolean", "long", "integer", "short"):
        value = row.get("long_")
        if kind == "boolean" and value is not None:
            return "true" if value else "false"
        return "null" if value is None else str(value)
    if kind == "double":
        return "null" if row.get("double_") is None else repr(row["double_"])
    text = row.get("text_")
    return text if isinstance(text, str) else "null"


def variable_value(rec: CdcRecord) -> Any:
    """A variable's value: JSON documents (contract.JSON_VARIABLES) parsed, else as typed."""
    row = rec.row
    kind = row.get("var_type_")
    if kind in ("boolean", "long", "integer", "short"):
        value = row.get("long_")
        return bool(value) if kind == "boolean" and value is not None else value
    if kind == "double":
        return row.get("double_")
    text = row.get("text_")
    if not isinstance(text, str) or row.get("name_") not in contract.JSON_VARIABLES:
        return text
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def tenant_of(rec: CdcRecord) -> str | None:
    """The tenant a record names: the process-level String variable `tenant`."""
    if not _process_scope(rec) or rec.row.get("name_") != "tenant" or rec.op == "d":
        return None
    if rec.row.get("state_") == "DELETED" or rec.row.get("var_type_") != "string":
        return None
    value = rec.row.get("text_")
    return value if isinstance(value, str) and value else None


def _key_columns(rec: CdcRecord) -> dict[str, Any]:
    return {
        "engine": rec.engine,
        "position": rec.position,
        "lsn": rec.lsn,
        "process_instance_key": rec.process_instance_id,
        "op": rec.op,
        "at": rec.at,
    }


def step_row(rec: CdcRecord) -> dict[str, Any]:
    """A process instance's or an activity instance's change."""
    r = rec.row
    process = rec.table == "act_hi_procinst"
    return {
        **_key_columns(rec),
        "record_key": _str(r.get("id_"), 255) or "",
        "source_table": rec.table[:32],
        "element_id": _str(r.get("proc_def_key_" if process else "act_id_"), 255),
        "element_type": "process" if process else _str(r.get("act_type_"), 64),
        "element_name": None if process else _str(r.get("act_name_"), 255),
        "state": _str(r.get("state_"), 32) if process else _activity_state(r),
        "started_at": rec.timestamp("start_time_"),
        "ended_at": rec.timestamp("end_time_"),
    }


def _activity_state(row: dict[str, Any]) -> str:
    # act_inst_state_: 0 default (running or done), 1 scope complete, 2 canceled, ...
    if row.get("act_inst_state_") == 2:
        return "CANCELED"
    return "ACTIVE" if row.get("end_time_") is None else "COMPLETED"


def variable_row(rec: CdcRecord) -> dict[str, Any]:
    r = rec.row
    return {
        **_key_columns(rec),
        "record_key": _str(r.get("id_"), 64) or "",
        "scope_key": _str(r.get("execution_id_"), 64),
        "name": _str(r.get("name_"), 255) or "",
        "value_type": _str(r.get("var_type_"), 32),
        "value": variable_text(r),
        "state": _str(r.get("state_"), 16),
    }


def incident_row(rec: CdcRecord) -> dict[str, Any]:
    r = rec.row
    return {
        **_key_columns(rec),
        "incident_key": _str(r.get("id_"), 64) or "",
        "state": INCIDENT_STATES.get(r.get("incident_state_"), "UNKNOWN"),  # type: ignore[arg-type]
        "error_type": _str(r.get("incident_type_"), 64),
        "error_message": r.get("incident_msg_")
        if isinstance(r.get("incident_msg_"), str)
        else None,
        "element_id": _str(r.get("activity_id_"), 255),
    }


@dataclass(frozen=True)
class AuditFact:
    """What an audit entry says about one record (the audit module chains and seals it)."""

    at: datetime
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]
    source: str


def audit_fact(rec: CdcRecord) -> AuditFact | None:
    """The audit entry of a payment step: started, a step done or cancelled, ended, an
    incident raised or resolved. History clean-up stamps (`removal_time_`) are not steps."""
    if classify(rec) == "ignored" or _cleanup_mark(rec):
        return None
    r = rec.row
    subject = f"{rec.engine}/{rec.process_instance_id}"
    actor = f"engine:{rec.engine}"
    if rec.table == "act_hi_procinst":
        if rec.op in ("c", "r") and r.get("end_time_") is None:
            action, detail = "payment-started", {"process": r.get("proc_def_key_")}
        elif r.get("end_time_") is not None:
            action = "payment-" + str(r.get("state_") or "ended").lower()
            detail = {"process": r.get("proc_def_key_"), "end": r.get("end_act_id_")}
        else:
            return None
    elif rec.table == "act_hi_actinst":
        if r.get("end_time_") is None:
            return None
        action = "step-" + _activity_state(r).lower()
        detail = {"element": r.get("act_id_"), "type": r.get("act_type_")}
    elif rec.table == "act_hi_incident":
        action = "incident-" + INCIDENT_STATES.get(r.get("incident_state_"), "changed").lower()  # type: ignore[arg-type]
        detail = {"element": r.get("activity_id_"), "error": r.get("incident_msg_")}
    else:
        return None
    return AuditFact(rec.at, actor, action, subject, detail, audit_source(rec))


def audit_source(rec: CdcRecord) -> str:
    """The record an audit entry stands for, in at most 128 characters (the log's unique key)."""
    if len(rec.source) <= 128:
        return rec.source
    return f"{rec.engine}/#{hashlib.sha256(rec.position.encode()).hexdigest()[:48]}"


# -- transfers --------------------------------------------------------------------------------


def process_key(rec: CdcRecord) -> str | None:
    key = rec.row.get("proc_def_key_")
    return key if isinstance(key, str) else None


def is_payment(rec: CdcRecord) -> bool:
    return classify(rec) != "ignored" and process_key(rec) in PAYMENT_PROCESSES


def new_transfer(rec: CdcRecord) -> dict[str, Any]:
    """The transfers row of a payment first seen in `rec` (IN_PROGRESS, nothing known yet)."""
    key = process_key(rec) or ""
    return {
        "engine": rec.engine,
        "process_instance_key": rec.process_instance_id,
        "bpmn_process_id": key,
        "direction": PAYMENT_PROCESSES.get(key, "UNKNOWN"),
        "transaction_id": None,
        "quote_id": None,
        "transfer_id": None,
        "correlation_id": None,
        "status": IN_PROGRESS,
        "outcome": None,
        "reason": None,
        "recorded_reason": None,
        "end_state": None,
        "open_incidents": "",
        "error_code": None,
        "error_message": None,
        "payer_id_type": None,
        "payer_id": None,
        "payer_dfsp": None,
        "payee_id_type": None,
        "payee_id": None,
        "payee_dfsp": None,
        "amount": None,
        "currency": None,
        "started_at": None,
        "completed_at": None,
        "updated_at": rec.at,
    }


def fold(row: dict[str, Any], rec: CdcRecord) -> bool:
    """Apply one change to a transfers row in place (each change once: the batch has dropped
    the positions it saw before); True if the row changed."""
    before = dict(row)
    if rec.table == "act_hi_procinst":
        _fold_instance(row, rec)
    elif _process_scope(rec) and rec.row.get("state_") != "DELETED":
        _fold_variable(row, str(rec.row.get("name_")), variable_value(rec))
    elif rec.table == "act_hi_incident":
        _fold_incident(row, rec)
    derive(row)
    changed = row != before
    if changed:
        last = row["updated_at"]
        if last.tzinfo is None:  # SQLite gives naive datetimes back (UTC)
            last = last.replace(tzinfo=UTC)
        row["updated_at"] = max(last, rec.at)
    return changed


def derive(row: dict[str, Any]) -> None:
    """Status and reason from the facts the row holds (the explicit mapping)."""
    end, outcome = row["end_state"], row["outcome"]
    reason = row["recorded_reason"]
    if end in TERMINATED_STATES:
        status = "TERMINATED"
        reason = reason or "the process instance was cancelled"
    elif end in COMPLETED_STATES:
        if outcome in OUTCOME_STATUS:
            status = OUTCOME_STATUS[outcome]
        else:
            status = "FAILED"
            reason = (
                f"the engine recorded an unknown outcome {outcome!r}"
                if outcome
                else "the process ended without a recorded outcome"
            )
    elif row["open_incidents"]:
        status = EXCEPTION
    else:
        status = IN_PROGRESS
    row["status"], row["reason"] = status, reason


def _fold_instance(row: dict[str, Any], rec: CdcRecord) -> None:
    r = rec.row
    row["started_at"] = row["started_at"] or rec.timestamp("start_time_")
    if isinstance(r.get("business_key_"), str) and row["transaction_id"] is None:
        row["transaction_id"] = r["business_key_"][:64]
    if r.get("end_time_") is not None:
        row["completed_at"] = rec.timestamp("end_time_")
        row["end_state"] = _str(r.get("state_"), 32) or "COMPLETED"


def _fold_incident(row: dict[str, Any], rec: CdcRecord) -> None:
    r = rec.row
    ident = str(r.get("id_"))
    open_ids = [i for i in row["open_incidents"].split(",") if i and i != ident]
    if r.get("incident_state_") == 0:
        open_ids.append(ident)
        row["error_code"] = _str(r.get("incident_type_"), 32)
        row["error_message"] = r.get("incident_msg_")
    row["open_incidents"] = ",".join(open_ids)


def _fold_variable(row: dict[str, Any], name: str, value: Any) -> None:
    if name in _ID_VARIABLES and isinstance(value, str):
        row[_ID_VARIABLES[name]] = value[: 128 if name == "correlationId" else 64]
    elif name == "status" and isinstance(value, str):
        row["outcome"] = value[:16]
    elif name == "reason" and isinstance(value, str):
        row["recorded_reason"] = value
    elif name == "lastError" and isinstance(value, str):
        row["error_message"] = value
    elif name in ("payer", "payee") and isinstance(value, dict):
        _party(row, name, value.get("partyIdInfo"))
    elif name in ("payerFsp", "payeeFsp") and isinstance(value, str):
        row[f"{name[:5]}_dfsp"] = value[:32]
    elif name == "partyCallback" and isinstance(value, dict):
        # the payer flow names the payee's DFSP nowhere else: it is the party answer's fspId
        fsp = ((value.get("body") or {}).get("party") or {}).get("partyIdInfo") or {}
        if isinstance(fsp, dict) and isinstance(fsp.get("fspId"), str):
            row["payee_dfsp"] = fsp["fspId"][:32]
    elif name in ("amount", "transferAmount") and isinstance(value, dict):
        _amount(row, value)
    elif name == "quoteRequest" and isinstance(value, dict):
        for side in ("payer", "payee"):
            info = value.get(side)
            if isinstance(info, dict):
                _party(row, side, info.get("partyIdInfo"))
        if isinstance(value.get("amount"), dict):
            _amount(row, value["amount"])


_ID_VARIABLES = {
    "transactionId": "transaction_id",
    "quoteId": "quote_id",
    "transferId": "transfer_id",
    "correlationId": "correlation_id",
}


def _party(row: dict[str, Any], side: str, info: Any) -> None:
    if not isinstance(info, dict):
        return
    row[f"{side}_id_type"] = _str(info.get("partyIdType"), 32)
    row[f"{side}_id"] = _str(info.get("partyIdentifier"), 128)
    if isinstance(info.get("fspId"), str):
        row[f"{side}_dfsp"] = info["fspId"][:32]


def _amount(row: dict[str, Any], value: dict[str, Any]) -> None:
    try:
        amount = Decimal(str(value.get("amount")))
    except InvalidOperation:
        return
    if amount.is_finite() and 0 <= amount < _AMOUNT_MAX:
        row["amount"] = amount
        row["currency"] = _str(value.get("currency"), 3)


def _str(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) else None
