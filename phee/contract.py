"""What the callback router and the engines agree on: processes, messages, correlation, registry.

Routing (DESIGN.md section 4):
- ids we create (quoteId, transferId, transactionId) carry the owning engine's slot
  (`phee.fspiop.ids`), so a `PUT /quotes/{id}` or `PUT /transfers/{id}` goes to that engine;
- `PUT /parties/...` carries no request id: before sending `GET /parties/...` an engine registers
  the wait with the router (`POST /admin/party-waits`), and the router delivers the callback to
  every waiting transaction (one message each, correlated by transactionId);
- payee side: a new `POST /quotes` starts the payee process on an engine that accepts new work and
  the router records transactionId -> engine; the `POST /transfers` that follows carries the
  transactionId inside its ILP packet, so it is delivered to the same engine.
Every callback becomes a message correlated on the owning engine's REST API (Operaton). The
engine keeps no message buffer, so every process subscribes for its whole life (a
non-interrupting message event subprocess per callback kind): the correlation sets the callback's
variables on the instance whenever it arrives, and the main flow waits for those variables. A
message for an instance that has ended is refused by the engine: the router reports it as late.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, model_validator

# --- BPMN process ids (engine_workers/bpmn/*.bpmn) ------------------------------------------
PAYER_TRANSFER = "phee-payer-transfer"
PAYEE_PARTY_LOOKUP = "phee-payee-party-lookup"
PAYEE_QUOTE_TRANSFER = "phee-payee-quote-transfer"

# --- messages the router publishes (name, correlated by) -------------------------------------
#: PUT /parties/... (or /error) for a payer waiting on that party; correlation: transactionId
MSG_PARTY_CALLBACK = "fspiop-party-callback"
#: PUT /quotes/{quoteId} (or /error); correlation: quoteId
MSG_QUOTE_CALLBACK = "fspiop-quote-callback"
#: PUT /transfers/{transferId} (or /error); correlation: transferId
MSG_TRANSFER_CALLBACK = "fspiop-transfer-callback"
#: payee side: POST /transfers for a quote this engine gave; correlation: transactionId
MSG_TRANSFER_REQUEST = "fspiop-transfer-request"
#: payee side: PATCH /transfers/{transferId} after a RESERVED answer; correlation: transferId
MSG_TRANSFER_PATCH = "fspiop-transfer-patch"

#: how long the router keeps retrying a callback it could not hand over (engine restarting)
MESSAGE_TTL_MS = 120_000

#: what each message is correlated by: the instance's business key (our transactionId) or the
#: process variable of that name. Payer and payee instances use the transactionId as business key.
BUSINESS_KEY = "businessKey"
CORRELATE_BY = {
    MSG_PARTY_CALLBACK: BUSINESS_KEY,
    MSG_QUOTE_CALLBACK: "quoteId",
    MSG_TRANSFER_CALLBACK: "transferId",
    MSG_TRANSFER_REQUEST: BUSINESS_KEY,
    MSG_TRANSFER_PATCH: "transferId",
}

# --- the variable each message sets (a single object, so callbacks never clobber state) ------
VAR_BY_MESSAGE = {
    MSG_PARTY_CALLBACK: "partyCallback",
    MSG_QUOTE_CALLBACK: "quoteCallback",
    MSG_TRANSFER_CALLBACK: "transferCallback",
    MSG_TRANSFER_REQUEST: "transferRequest",
    MSG_TRANSFER_PATCH: "transferPatch",
}


def callback_variables(
    message: str, *, ok: bool, body: Any, headers: dict[str, str]
) -> dict[str, Any]:
    """Variables a delivered callback sets: `<var>` = `{"ok", "body", "headers"}` (JSON) and
    `<var>Ok` (a boolean the process's gateways and conditional events read).

    `ok` is False for an `/error` callback; the body is then an ErrorInformationObject.
    """
    name = VAR_BY_MESSAGE[message]
    return {name: {"ok": ok, "body": body, "headers": headers}, f"{name}Ok": ok}


#: callback flags read only by the gateway right after the message event, in the correlation's
#: own transaction (payer party lookup and quote): sent as transient variables, so they cost no
#: runtime or history rows. A flag a later transaction reads (a conditional event, a task) must
#: stay a stored variable; so must every flag of a message the payee flow also receives.
TRANSIENT_FLAGS = frozenset({"partyCallbackOk", "quoteCallbackOk"})

#: variables that hold JSON documents (stored as JSON text in the engine; decoded by the workers)
JSON_VARIABLES = frozenset(
    {
        *VAR_BY_MESSAGE.values(),
        "payer",
        "payee",
        "amount",
        "transferAmount",
        "amsError",
        "partyResult",
        "quoteRequest",
        "quoteResult",
        "transferCheck",
    }
)


def party_key(id_type: str, id_value: str, sub_id: str | None = None) -> str:
    """A party as the router indexes waits: `MSISDN/27713803912[/SUB]`."""
    return f"{id_type}/{id_value}" + (f"/{sub_id}" if sub_id else "")


# --- the engine registry the router reads ---------------------------------------------------
class EngineState(StrEnum):
    ACCEPTING = "accepting"  # takes new payments and payee requests
    DRAINING = "draining"  # finishes what it has; takes nothing new
    DOWN = "down"  # unreachable or stopped


class EngineInfo(BaseModel):
    """One engine as the router sees it (written by the operator or the local site)."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    slot: int = Field(ge=0, le=1023)
    engine_url: str = Field(description="the engine's REST API, e.g. http://host:8080/engine-rest")
    channel_url: str | None = Field(default=None, description="the engine's channel API base URL")
    state: EngineState = EngineState.ACCEPTING


class EngineRegistry(BaseModel):
    """All engines of a site. Slots are unique: they are what ids carry."""

    engines: list[EngineInfo]

    @model_validator(mode="after")
    def _unique(self) -> EngineRegistry:
        slots = [e.slot for e in self.engines]
        names = [e.name for e in self.engines]
        if len(set(slots)) != len(slots) or len(set(names)) != len(names):
            raise ValueError("engine names and slots must be unique")
        return self

    def by_slot(self, slot: int) -> EngineInfo | None:
        return next((e for e in self.engines if e.slot == slot), None)

    def by_name(self, name: str) -> EngineInfo | None:
        return next((e for e in self.engines if e.name == name), None)

    def accepting(self) -> list[EngineInfo]:
        return [e for e in self.engines if e.state == EngineState.ACCEPTING]
