"""From Zeebe records to back-office rows: pure functions, no I/O.

The transfer status is derived from engine events with an explicit table, never from BPMN
element names: the payment processes record their outcome in the `status` variable (set by the
settle and outcome jobs), an incident marks the payment EXCEPTION until it is resolved, and the
process instance's own completion or termination makes the recorded outcome final. A process
that completes without a recorded outcome is FAILED with that reason, not guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import orjson

from backoffice.records import ZeebeRecord

Kind = Literal["step", "variable", "incident", "ignored"]

#: processes that are payments (one transfers row each), and their direction
PAYMENT_PROCESSES = {"phee-payer-transfer": "PAYER", "phee-payee-quote-transfer": "PAYEE"}
#: the engine's recorded outcome (variable `status`) -> the transfer's final status
OUTCOME_STATUS = {
    "COMMITTED": "COMMITTED",
    "ABORTED": "ABORTED",
    "EXPIRED": "EXPIRED",
    "FAILED": "FAILED",
}
FINAL = frozenset({*OUTCOME_STATUS.values(), "TERMINATED"})
IN_PROGRESS = "IN_PROGRESS"
EXCEPTION = "EXCEPTION"

#: element lifecycle intents worth an audit entry: a step done, a payment started or ended
_AUDITED_ELEMENT = frozenset({"ELEMENT_COMPLETED", "ELEMENT_TERMINATED"})
_AUDITED_JOB = frozenset({"FAILED", "ERROR_THROWN", "RETRIES_UPDATED", "TIMED_OUT"})
_AMOUNT_MAX = Decimal("1e20")


def classify(rec: ZeebeRecord) -> Kind:
    """What the back office keeps of a record: only events of a process instance are kept."""
    if rec.record_type != "EVENT" or rec.process_instance_key is None:
        return "ignored"
    if rec.value_type in ("PROCESS_INSTANCE", "JOB"):
        return "step"
    if rec.value_type == "VARIABLE":
        return "variable"
    if rec.value_type == "INCIDENT":
        return "incident"
    return "ignored"


def is_process_event(rec: ZeebeRecord) -> bool:
    """A lifecycle event of the process instance itself (not of one of its elements)."""
    return (
        rec.value_type == "PROCESS_INSTANCE"
        and rec.record_type == "EVENT"
        and rec.value.get("bpmnElementType") == "PROCESS"
        and rec.key == rec.process_instance_key
    )


def ends_instance(rec: ZeebeRecord) -> bool:
    return is_process_event(rec) and rec.intent in ("ELEMENT_COMPLETED", "ELEMENT_TERMINATED")


def _process_scope_variable(rec: ZeebeRecord) -> bool:
    return rec.value_type == "VARIABLE" and rec.value.get("scopeKey") == rec.process_instance_key


def variable_value(rec: ZeebeRecord) -> Any:
    """A variable's value: Zeebe exports it as JSON text."""
    text = rec.value.get("value")
    if not isinstance(text, str):
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def tenant_of(rec: ZeebeRecord) -> str | None:
    """The tenant a record names: the process-level variable `tenant` (the payment's data)."""
    if rec.record_type != "EVENT" or not _process_scope_variable(rec):
        return None
    if rec.value.get("name") != "tenant":
        return None
    value = variable_value(rec)
    return value if isinstance(value, str) and value else None


def _key_columns(rec: ZeebeRecord) -> dict[str, Any]:
    return {"engine": rec.engine, "partition_id": rec.partition, "position": rec.position}


def step_row(rec: ZeebeRecord) -> dict[str, Any]:
    v = rec.value
    is_job = rec.value_type == "JOB"
    error = v.get("errorMessage") if is_job else None
    return {
        **_key_columns(rec),
        "process_instance_key": rec.process_instance_key,
        "record_key": rec.key,
        "value_type": rec.value_type,
        "intent": rec.intent,
        "element_id": _str(v.get("elementId"), 128),
        "element_type": "SERVICE_TASK" if is_job else _str(v.get("bpmnElementType"), 32),
        "job_type": _str(v.get("type"), 128) if is_job else None,
        "retries": v.get("retries") if is_job and isinstance(v.get("retries"), int) else None,
        "error_message": error or None,
        "at": rec.at,
    }


def variable_row(rec: ZeebeRecord) -> dict[str, Any]:
    v = rec.value
    return {
        **_key_columns(rec),
        "process_instance_key": rec.process_instance_key,
        "scope_key": v.get("scopeKey") if isinstance(v.get("scopeKey"), int) else -1,
        "name": _str(v.get("name"), 255) or "",
        "value": v.get("value") if isinstance(v.get("value"), str) else "null",
        "intent": rec.intent[:16],
        "at": rec.at,
    }


def incident_row(rec: ZeebeRecord) -> dict[str, Any]:
    v = rec.value
    return {
        **_key_columns(rec),
        "process_instance_key": rec.process_instance_key,
        "incident_key": rec.key,
        "intent": rec.intent[:16],
        "error_type": _str(v.get("errorType"), 64),
        "error_message": v.get("errorMessage") if isinstance(v.get("errorMessage"), str) else None,
        "element_id": _str(v.get("elementId"), 128),
        "at": rec.at,
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


def audit_fact(rec: ZeebeRecord) -> AuditFact | None:
    """The audit entry for a payment step: an element done, a job failing, an incident."""
    v = rec.value
    subject = f"{rec.engine}/{rec.process_instance_key}"
    actor = f"engine:{rec.engine}"
    if rec.value_type == "PROCESS_INSTANCE":
        started = is_process_event(rec) and rec.intent == "ELEMENT_ACTIVATED"
        if rec.intent not in _AUDITED_ELEMENT and not started:
            return None
        action = "payment-" + ("started" if started else rec.intent.removeprefix("ELEMENT_"))
        if not is_process_event(rec):
            action = "step-" + rec.intent.removeprefix("ELEMENT_").lower()
        detail = {"element": v.get("elementId"), "type": v.get("bpmnElementType")}
    elif rec.value_type == "JOB" and rec.intent in _AUDITED_JOB:
        action = "job-" + rec.intent.lower()
        detail = {"element": v.get("elementId"), "job": v.get("type"), "retries": v.get("retries")}
        if v.get("errorMessage"):
            detail["error"] = v.get("errorMessage")
    elif rec.value_type == "INCIDENT":
        action = "incident-" + rec.intent.lower()
        detail = {"element": v.get("elementId"), "error": v.get("errorMessage")}
    else:
        return None
    return AuditFact(rec.at, actor, action.lower(), subject, detail, rec.source)


# -- transfers --------------------------------------------------------------------------------


def process_id(rec: ZeebeRecord) -> str | None:
    pid = rec.value.get("bpmnProcessId")
    return pid if isinstance(pid, str) else None


def is_payment(rec: ZeebeRecord) -> bool:
    return process_id(rec) in PAYMENT_PROCESSES


def new_transfer(rec: ZeebeRecord) -> dict[str, Any]:
    """The transfers row of a payment first seen in `rec` (IN_PROGRESS, nothing known yet)."""
    pid = process_id(rec) or ""
    return {
        "engine": rec.engine,
        "process_instance_key": rec.process_instance_key,
        "partition_id": rec.partition,
        "bpmn_process_id": pid,
        "direction": PAYMENT_PROCESSES.get(pid, "UNKNOWN"),
        "transaction_id": None,
        "quote_id": None,
        "transfer_id": None,
        "correlation_id": None,
        "status": IN_PROGRESS,
        "outcome": None,
        "reason": None,
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
        "last_position": -1,
    }


def fold(row: dict[str, Any], rec: ZeebeRecord) -> bool:
    """Apply one record to a transfers row in place; records at or below the row's
    `last_position` are already in it (a replay) and change nothing. True if applied."""
    if rec.position <= row["last_position"]:
        return False
    row["last_position"] = rec.position
    row["updated_at"] = rec.at
    if rec.record_type != "EVENT":
        return True
    if is_process_event(rec):
        _fold_lifecycle(row, rec)
    elif _process_scope_variable(rec):
        _fold_variable(row, str(rec.value.get("name")), variable_value(rec))
    elif rec.value_type == "INCIDENT":
        if rec.intent == "CREATED" and row["status"] not in FINAL:
            row["status"] = EXCEPTION
            row["error_code"] = _str(rec.value.get("errorType"), 16)
            row["error_message"] = rec.value.get("errorMessage")
        elif rec.intent == "RESOLVED" and row["status"] == EXCEPTION:
            row["status"] = IN_PROGRESS
    return True


def _fold_lifecycle(row: dict[str, Any], rec: ZeebeRecord) -> None:
    if rec.intent in ("ELEMENT_ACTIVATING", "ELEMENT_ACTIVATED") and row["started_at"] is None:
        row["started_at"] = rec.at
    elif rec.intent == "ELEMENT_COMPLETED":
        row["completed_at"] = rec.at
        outcome = row["outcome"]
        if outcome in OUTCOME_STATUS:
            row["status"] = OUTCOME_STATUS[outcome]
        else:
            row["status"] = "FAILED"
            row["reason"] = (
                f"the engine recorded an unknown outcome {outcome!r}"
                if outcome
                else "the process ended without a recorded outcome"
            )
    elif rec.intent == "ELEMENT_TERMINATED":
        row["completed_at"] = rec.at
        row["status"] = "TERMINATED"
        row["reason"] = row["reason"] or "the process instance was cancelled"


def _fold_variable(row: dict[str, Any], name: str, value: Any) -> None:
    if name in _ID_VARIABLES and isinstance(value, str):
        row[_ID_VARIABLES[name]] = value[: 128 if name == "correlationId" else 64]
    elif name == "status" and isinstance(value, str):
        row["outcome"] = value[:16]
    elif name == "reason" and isinstance(value, str):
        row["reason"] = value
    elif name == "lastError" and isinstance(value, str):
        row["error_message"] = value
    elif name in ("payer", "payee") and isinstance(value, dict):
        _party(row, name, value.get("partyIdInfo"))
    elif name in ("payerFsp", "payeeFsp") and isinstance(value, str):
        row[f"{name[:5]}_dfsp"] = value[:32]
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
