"""Settings of the callback router, from `PHEE_ROUTER_*` environment variables.

One typed object so that the process, the tests and the operator's manifests agree on names.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from phee import contract
from phee.service import ComponentSettings


class RouterSettings(ComponentSettings):
    """Everything the router reads at start; engine states change later through the admin API."""

    model_config = SettingsConfigDict(env_prefix="PHEE_ROUTER_", extra="ignore")
    dev_secrets: ClassVar[dict[str, str]] = {"admin_token": "phee-dev-router-admin-token"}

    #: our DFSP's fspId (FSPIOP-Source of the error callbacks the router sends itself)
    fsp_id: str = Field(min_length=1, max_length=32)
    #: the tenant that owns payments arriving from the switch (the payee side); written into
    #: each payee process as variable `tenant`, which the back office files the payment under
    tenant: str = Field(default="default", pattern=r"^[a-z][a-z0-9-]{0,30}$")
    #: JSON file holding a `contract.EngineRegistry`; admin state changes are written back to it
    registry_file: Path
    #: directory of `<fspId>.pem` peer public keys; unset = signatures are NOT checked
    jws_keys_dir: Path | None = None
    #: verify signatures on `PUT /parties/...` too (the Mojaloop SDK skips them by default)
    jws_put_parties: bool = False
    #: `/admin/*` calls need `Authorization: Bearer <token>` (a secret: no default)
    admin_token: SecretStr | None = None
    #: SQLAlchemy URL of the durable outbox and routing tables
    database_url: str = "sqlite:///phee-router.db"
    #: how long an undelivered message is retried (covers an engine restart)
    message_ttl_ms: int = Field(default=contract.MESSAGE_TTL_MS, gt=0)
    #: base URL of the switch, for the error callbacks the router sends itself (3106)
    switch_url: str | None = None
    #: default lifetime of a party wait when the engine gives none
    party_wait_default_s: float = Field(default=60.0, gt=0)
    #: how long payee transactionId/transferId -> engine mappings and request hashes are kept
    payee_retention_s: float = Field(default=86_400.0, gt=0)
    #: one engine call may take this long before it counts as failed (and is retried)
    engine_timeout_s: float = Field(default=5.0, gt=0)
    #: in-request delivery attempts, and the time they may take together, before a callback
    #: goes to the outbox instead (the switch waits for our answer meanwhile)
    direct_attempts: int = Field(default=3, ge=1)
    direct_budget_s: float = Field(default=2.5, gt=0)
    #: outbox redelivery backoff: first delay and cap (seconds)
    outbox_backoff_s: float = Field(default=0.5, gt=0)
    outbox_backoff_max_s: float = Field(default=10.0, gt=0)
    #: after this long undelivered, an outbox message is marked dead and reported (not dropped)
    outbox_give_up_s: float = Field(default=86_400.0, gt=0)
    #: how long shutdown may spend delivering what is still in the outbox
    shutdown_flush_s: float = Field(default=5.0, ge=0)
