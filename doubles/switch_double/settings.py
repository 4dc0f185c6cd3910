"""Settings of the switch double, from `PHEE_SWITCH_*` environment variables.

Lists and maps (parties, DFSPs) are given as JSON, e.g.
`PHEE_SWITCH_SIMULATED_PARTIES='[{"partyIdType": "MSISDN", "partyIdentifier": "27710101"}]'`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from phee.service import ComponentSettings


class PartySpec(BaseModel):
    """One party in the oracle; `name` only matters for the simulated payee's answers."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    party_id_type: str = Field(alias="partyIdType", min_length=1)
    party_identifier: str = Field(alias="partyIdentifier", min_length=1)
    party_sub_id_or_type: str | None = Field(default=None, alias="partySubIdOrType")
    name: str | None = None

    @property
    def key(self) -> tuple[str, str, str | None]:
        return (self.party_id_type, self.party_identifier, self.party_sub_id_or_type)


class DfspSpec(BaseModel):
    """A DFSP registered with the switch: where its callbacks go and which parties it owns."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    callback_base: str | None = Field(default=None, alias="callbackBase")
    parties: list[PartySpec] = Field(default_factory=list)


class SwitchSettings(ComponentSettings):
    """Everything the switch double can be told at start; DFSPs and faults also by admin API."""

    model_config = SettingsConfigDict(env_prefix="PHEE_SWITCH_", extra="ignore")

    #: FSPIOP-Source of what the switch itself says (errors, transfer states)
    fsp_id: str = "switch"
    #: fspId of the built-in counterpart DFSP; empty disables it
    simulated_payee: str = "simpayee"
    simulated_parties: list[PartySpec] = Field(default_factory=list)
    #: DFSPs registered at start (fspId -> spec), as with `PUT /admin/dfsps/{fspId}`
    dfsps: dict[str, DfspSpec] = Field(default_factory=dict)
    #: secret the simulated payee derives fulfilments from (as the Mojaloop SDK does)
    ilp_secret: str = "phee-switch-double-secret"  # noqa: S105 - a test double's default
    #: lifetime of the simulated payee's quotes
    quote_expiry_s: float = Field(default=60.0, gt=0)
    #: validate bodies against the official OpenAPI (needs the api-snippets artifact)
    validate_schemas: bool = False
    callback_timeout_s: float = Field(default=5.0, gt=0)
    #: delivery attempts per callback (first try included) before it is given up
    callback_attempts: int = Field(default=3, ge=1)
    callback_backoff_s: float = Field(default=0.2, ge=0)
    #: HTTP connections for callbacks (all DFSPs together). Small on purpose: httpcore's pool
    #: scans every connection for each request, so 16 costs a third less CPU than 200
    max_connections: int = Field(default=16, ge=1)
    #: bound on remembered quotes, transfers and lookups (oldest forgotten first)
    max_records: int = Field(default=200_000, ge=100)
    record_ttl_s: float = Field(default=3600.0, gt=0)
    #: how long shutdown waits for callbacks still being delivered
    shutdown_grace_s: float = Field(default=5.0, ge=0)
