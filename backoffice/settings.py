"""Settings of the back office (importer, operations API, audit), from `PHEE_BACKOFFICE_*`.

One typed object for every back-office process, so the operator's manifests, the local site and
the tests agree on names.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from backoffice.db import check_tenant
from phee.service import ComponentSettings


class BackofficeSettings(ComponentSettings):
    model_config = SettingsConfigDict(env_prefix="PHEE_BACKOFFICE_", extra="ignore")
    dev_secrets: ClassVar[dict[str, str]] = {"audit_key": "phee-dev-audit-key"}

    #: SQLAlchemy URL: sqlite:///file.db (default), mysql+pymysql://..., postgresql+psycopg://...
    database_url: str = "sqlite:///phee-backoffice.db"
    #: tenants served; each gets its own schema (created and migrated at start)
    tenants: list[str] = Field(default_factory=lambda: ["default"], min_length=1)
    #: OpenSearch base URL; unset = SQL only
    opensearch_url: str | None = None
    #: prefix of the per-tenant OpenSearch index (`<prefix>-<tenant>`)
    index_prefix: str = "phee-transfers"

    # -- importer -----------------------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:9092"
    #: engines to import (their Debezium topics `<engine>.public.act_hi_*`); empty, with no
    #: registry file = every engine's (new engines are found without a restart, at the next
    #: metadata refresh)
    engines: list[str] = Field(default_factory=list)
    #: the router's engine registry file (contract.EngineRegistry JSON); when set, its engines
    #: are imported too, re-read every `registry_poll_s`
    registry_file: str | None = None
    registry_poll_s: float = Field(default=5.0, gt=0)
    #: an instance that ended without a `tenant` variable is dead-lettered once the importer has
    #: no lag and its end has waited this long (the history tables are separate topics)
    no_tenant_grace_s: float = Field(default=60.0, ge=0)
    group_id: str = "phee-backoffice"
    dead_letter_topic: str = "phee-backoffice-dlq"
    #: most records one batch (one SQL transaction, one OpenSearch bulk) may hold
    batch_max: int = Field(default=5000, ge=1, le=100_000)
    #: how long one poll waits for records
    poll_ms: int = Field(default=500, ge=10)
    #: how often Kafka metadata is refreshed (finds new engine topics)
    metadata_max_age_ms: int = Field(default=5000, ge=1000)

    # -- audit --------------------------------------------------------------------------------
    #: HMAC key of the audit chain; whoever edits the database without it cannot re-seal it
    #: (a secret: no default)
    audit_key: SecretStr | None = None

    # -- operations API -----------------------------------------------------------------------
    #: where the identity provider publishes its signing keys (JWKS)
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str = "phee-operations"
    #: claim names in the bearer token
    tenant_claim: str = "tenant"
    roles_claim: str = "roles"

    @field_validator("tenants")
    @classmethod
    def _valid_tenants(cls, value: list[str]) -> list[str]:
        return [check_tenant(t) for t in value]
