"""The operations API's pydantic models: the answers it gives and the query parameters it takes.

Answers use camelCase on the wire (`processInstanceKey`: the engine's instance id, a string);
each model's `of` maps a `queries` row into it.
Query parameters are validated here, cursors included, so a bad one is a 400 before any SQL runs.
"""

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from backoffice import queries

ENGINE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


# -- answers ------------------------------------------------------------------------------------


class ApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


_KEY = "Operaton id (a UUID)"
_POSITION = "Change-data-capture position in the engine's log: <s|w><LSN>/<table>/<key>"


class Transfer(ApiModel):
    """One payment as one engine ran it (a process instance of a payment process)."""

    engine: str = Field(description="The engine (Operaton cluster) that ran the payment")
    process_instance_key: str = Field(description=_KEY)
    bpmn_process_id: str
    direction: str = Field(description="PAYER (we send) or PAYEE (we receive)")
    transaction_id: str | None
    quote_id: str | None
    transfer_id: str | None
    correlation_id: str | None = Field(description="The channel's X-CorrelationID")
    status: str = Field(description="IN_PROGRESS, COMMITTED, ABORTED, EXPIRED, FAILED, ...")
    outcome: str | None
    reason: str | None
    error_code: str | None
    error_message: str | None
    payer_id_type: str | None
    payer_id: str | None
    payer_dfsp: str | None
    payee_id_type: str | None
    payee_id: str | None
    payee_dfsp: str | None
    amount: str | None = Field(description="Decimal string, as FSPIOP writes amounts")
    currency: str | None
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Self:
        values = {k: v for k, v in row.items() if k in cls.model_fields}
        values["process_instance_key"] = str(row["process_instance_key"])
        values["amount"] = _amount(row["amount"])
        return cls.model_validate(values)


def _amount(value: Decimal | None) -> str | None:
    if value is None:
        return None
    return format(value.normalize(), "f")


class Step(ApiModel):
    """A change of the payment's process instance or of one of its activity instances."""

    position: str = Field(description=_POSITION)
    lsn: int
    op: str = Field(description="c created, u updated, r read by a snapshot")
    record_key: str = Field(description="The process or activity instance's id")
    source_table: str = Field(description="act_hi_procinst or act_hi_actinst")
    element_id: str | None
    element_type: str | None
    element_name: str | None
    state: str | None
    started_at: datetime | None
    ended_at: datetime | None
    at: datetime

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Self:
        return cls.model_validate(_fields(cls, row))


class Variable(ApiModel):
    """A variable of the payment's process, with its value as JSON where it is JSON text."""

    position: str = Field(description=_POSITION)
    lsn: int
    op: str
    scope_key: str | None = Field(description="The execution the variable belongs to")
    name: str
    value_type: str | None = Field(description="Operaton's type: string, boolean, long, ...")
    value: JsonValue = Field(description="The value (JSON text parsed)")
    state: str | None
    at: datetime

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Self:
        return cls.model_validate(_fields(cls, row))


class Incident(ApiModel):
    """An incident raised (or resolved) on the payment's process."""

    position: str = Field(description=_POSITION)
    lsn: int
    op: str
    incident_key: str = Field(description=_KEY)
    state: str = Field(description="OPEN, RESOLVED or DELETED")
    error_type: str | None
    error_message: str | None
    element_id: str | None
    at: datetime

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Self:
        return cls.model_validate({**_fields(cls, row), "incident_key": str(row["incident_key"])})


def _fields(model: type[BaseModel], row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k in model.model_fields}


class TransferDetail(ApiModel):
    """A payment and its whole trail: steps, variables and incidents."""

    transfer: Transfer
    steps: list[Step]
    variables: list[Variable]
    incidents: list[Incident]

    @classmethod
    def of(cls, found: Mapping[str, Any]) -> Self:
        return cls(
            transfer=Transfer.of(found["transfer"]),
            steps=[Step.of(r) for r in found["steps"]],
            variables=[Variable.of(r) for r in found["variables"]],
            incidents=[Incident.of(r) for r in found["incidents"]],
        )


class TransactionDetail(ApiModel):
    """Every transfer carrying one FSPIOP transactionId (e.g. both sides of an on-us payment)."""

    transaction_id: str
    transfers: list[TransferDetail]


class TransferPage(ApiModel):
    items: list[Transfer]
    total: int = Field(description="How many transfers match the filters, over all pages")
    limit: int
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last")


class AuditEntry(ApiModel):
    """One entry of the tenant's hash-chained audit log."""

    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: JsonValue = Field(description="Parsed JSON when the entry holds JSON, else text")
    source: str | None = Field(description="The engine record the entry stands for, if any")
    prev_hash: str
    hash: str


class AuditPage(ApiModel):
    items: list[AuditEntry]
    total: int
    limit: int
    next_cursor: str | None


# -- query parameters ---------------------------------------------------------------------------

_TIME = "ISO 8601 date-time with an offset, e.g. 2026-01-31T10:00:00Z (encode '+' as %2B)"
_CURSOR = "The `nextCursor` of the previous page (opaque)"


class _Paged(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_by_alias=True, validate_by_name=False)

    time_from: AwareDatetime | None = Field(
        None, alias="from", description="From (inclusive); " + _TIME
    )
    time_to: AwareDatetime | None = Field(None, alias="to", description="To (exclusive); " + _TIME)
    limit: int = Field(
        queries.DEFAULT_LIMIT, ge=1, le=queries.MAX_LIMIT, description="Page size (1..500)"
    )
    cursor: str | None = Field(None, min_length=1, max_length=512, description=_CURSOR)

    @model_validator(mode="after")
    def _time_range(self) -> Self:
        if self.time_from and self.time_to and self.time_from >= self.time_to:
            raise ValueError("`from` must be before `to`")
        return self


class TransferQuery(_Paged):
    """Transfer search filters; all given must hold. Newest first."""

    party: str | None = Field(
        None, min_length=1, max_length=128, description="Payer or payee identifier (exact)"
    )
    dfsp: str | None = Field(
        None, min_length=1, max_length=32, description="Payer or payee DFSP (exact)"
    )
    status: str | None = Field(
        None, pattern=r"^[A-Z_]{1,16}$", description="e.g. IN_PROGRESS, COMMITTED, FAILED"
    )
    min_amount: Decimal | None = Field(
        None, alias="minAmount", ge=0, max_digits=24, decimal_places=4, description="Inclusive"
    )
    max_amount: Decimal | None = Field(
        None, alias="maxAmount", ge=0, max_digits=24, decimal_places=4, description="Inclusive"
    )
    correlation_id: str | None = Field(None, alias="correlationId", min_length=1, max_length=128)
    transaction_id: str | None = Field(None, alias="transactionId", min_length=1, max_length=64)
    engine: str | None = Field(None, pattern=ENGINE_PATTERN)
    direction: str | None = Field(None, pattern=r"^[A-Z]{1,8}$", description="PAYER or PAYEE")

    @field_validator("cursor")
    @classmethod
    def _cursor(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                queries.TransferCursor.decode(value)
            except ValueError as err:
                raise PydanticCustomError("malformed", str(err)) from None
        return value

    @model_validator(mode="after")
    def _amount_range(self) -> Self:
        low, high = self.min_amount, self.max_amount
        if low is not None and high is not None and low > high:
            raise ValueError("`minAmount` must not exceed `maxAmount`")
        return self

    def filter(self) -> queries.TransferFilter:
        return queries.TransferFilter(
            party=self.party,
            dfsp=self.dfsp,
            status=self.status,
            min_amount=self.min_amount,
            max_amount=self.max_amount,
            started_from=self.time_from,
            started_to=self.time_to,
            correlation_id=self.correlation_id,
            transaction_id=self.transaction_id,
            engine=self.engine,
            direction=self.direction,
        )


class AuditQuery(_Paged):
    """Audit log filters; all given must hold. Newest first."""

    actor: str | None = Field(None, min_length=1, max_length=128)
    action: str | None = Field(None, min_length=1, max_length=64)
    subject: str | None = Field(None, min_length=1, max_length=256)

    @field_validator("cursor")
    @classmethod
    def _cursor(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                queries.AuditCursor.decode(value)
            except ValueError as err:
                raise PydanticCustomError("malformed", str(err)) from None
        return value

    def filter(self) -> queries.AuditFilter:
        return queries.AuditFilter(
            actor=self.actor,
            action=self.action,
            subject=self.subject,
            at_from=self.time_from,
            at_to=self.time_to,
        )
