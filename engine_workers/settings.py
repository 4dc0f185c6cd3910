"""One engine's settings, from the environment (prefix PHEE_ENGINE_) or a .env file.

The channel API listens on the shared `PHEE_HOST`/`PHEE_PORT` (phee.service.ServiceSettings).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from phee.service import ComponentSettings


class EngineSettings(ComponentSettings):
    """Everything an engine's workers and channel API need to know."""

    model_config = SettingsConfigDict(env_prefix="PHEE_ENGINE_", env_file=".env", extra="ignore")
    dev_secrets: ClassVar[dict[str, str]] = {
        "ilp_secret": "phee-dev-ilp-secret",
        "router_admin_token": "phee-dev-router-admin-token",
    }

    name: str = Field(default="engine-a", description="engine name (also in the registry)")
    slot: int = Field(default=0, ge=0, le=1023, description="the engine slot ids carry")
    gateway: str = Field(default="127.0.0.1:26500", description="Zeebe gateway host:port")
    fsp_id: str = Field(default="phee-dfsp", description="our DFSP id (FSPIOP-Source)")
    switch_url: str = Field(default="http://127.0.0.1:4040", description="the switch base URL")
    router_url: str = Field(
        default="http://127.0.0.1:8444", description="callback router (admin API for waits)"
    )
    ams_url: str = Field(default="http://127.0.0.1:8090", description="the AMS base URL")
    fspiop_version: str = Field(default="1.1", pattern=r"^(1\.0|1\.1|2\.0)$")
    id_kind: str = Field(default="uuid", pattern=r"^(uuid|ulid)$")
    #: the DFSP's ILP secret: fulfilments are derived from it (every engine shares one)
    ilp_secret: SecretStr | None = Field(default=None, min_length=8)
    #: bearer token for the router's admin API (party waits)
    router_admin_token: SecretStr | None = None
    jws_private_key: Path | None = Field(default=None, description="PEM key to sign requests")
    tls_client_cert: Path | None = Field(default=None, description="mTLS client certificate")
    tls_client_key: Path | None = None
    tls_ca: Path | None = Field(default=None, description="CA bundle for the switch")
    http_timeout_s: float = Field(default=5.0, gt=0)
    party_wait: str = Field(default="PT30S", description="ISO 8601 wait for PUT /parties")
    quote_wait: str = Field(default="PT30S", description="ISO 8601 wait for PUT /quotes")
    transfer_expiry_s: int = Field(default=20, ge=1, description="expiration we set on transfers")
    expiry_grace_s: int = Field(default=10, ge=0, description="wait past expiry before asking")
    status_wait: str = Field(default="PT20S", description="wait for the GET /transfers answer")
    store_url: str = Field(default="sqlite:///./engine.db", description="engine-local payments")
    max_jobs: int = Field(default=32, ge=1, description="jobs in flight per task type")
    job_streaming: bool = Field(default=True, description="Zeebe job push instead of polling")
