"""One engine's settings, from the environment (prefix PHEE_ENGINE_) or a .env file.

The channel API listens on the shared `PHEE_HOST`/`PHEE_PORT` (phee.service.ServiceSettings).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict
from sqlalchemy.engine import make_url

from engine_workers.bpmn import ISO_DURATION
from phee.service import ComponentSettings


class EngineSettings(ComponentSettings):
    """Everything an engine's workers and channel API need to know."""

    model_config = SettingsConfigDict(env_prefix="PHEE_ENGINE_", env_file=".env", extra="ignore")
    dev_secrets: ClassVar[dict[str, str]] = {
        "ilp_secret": "phee-dev-ilp-secret",
        "router_admin_token": "phee-dev-router-admin-token",
    }
    #: secrets that may be absent (a SQLite store has no password)
    optional_secrets: ClassVar[frozenset[str]] = frozenset({"store_password"})

    name: str = Field(default="engine-a", description="engine name (also in the registry)")
    slot: int = Field(default=0, ge=0, le=1023, description="the engine slot ids carry")
    engine_url: str = Field(
        default="http://127.0.0.1:8080/engine-rest", description="the Operaton engine's REST API"
    )
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
    resend_after_ms: int = Field(
        default=10_000,
        ge=1000,
        description="a GET /parties, POST /quotes or GET /transfers unanswered this long is "
        "resent as it was (its task's lock expires and another fetch sends it again)",
    )
    store_url: str = Field(
        default="sqlite:///./engine.db",
        description="the payment store every worker replica of this engine shares (PostgreSQL "
        "database `payments` next to the engine's own; SQLite only for a single process)",
    )
    #: password of the store's database user, kept out of the URL (a Kubernetes Secret)
    store_password: SecretStr | None = None
    max_jobs: int = Field(default=32, ge=1, description="external tasks in flight per process")
    lock_ms: int = Field(default=30_000, ge=1000, description="external-task lock duration")
    long_poll_ms: int = Field(default=20_000, ge=0, description="fetchAndLock long-poll wait")
    worker_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        description="the engine's workerId for this process; unique among live processes and "
        "kept across restarts of one replica, so a restart cancels its predecessor's pending "
        "long poll (default: <name>-<host>-<pid>; a pod's host name and pid stay across restarts)",
    )
    retries: int = Field(default=4, ge=1, description="attempts of a task before it gives up")
    settle_retries: int = Field(
        default=12, ge=1, description="attempts to book or release (AMS outages are ridden out)"
    )

    @field_validator("party_wait", "quote_wait", "status_wait")
    @classmethod
    def _iso_duration(cls, value: str) -> str:
        if not ISO_DURATION.match(value):
            raise ValueError(f"{value!r} is not an ISO 8601 duration such as PT30S")
        return value

    @property
    def transfer_wait_s(self) -> int:
        """How long the payer awaits PUT /transfers before it asks: from the transfer task's
        creation, so 10 s more than expiry plus grace (the request is built a little later)."""
        return self.transfer_expiry_s + self.expiry_grace_s + 10

    reserve_first: bool = Field(
        default=True,
        description="payee: answer RESERVED and credit only on the switch's PATCH COMMITTED; "
        "false credits before answering COMMITTED (schemes without PATCH; see README)",
    )
    start_attempts: int = Field(default=4, ge=1, description="tries to start a payer instance")
    max_open_payments: int = Field(
        default=0,
        ge=0,
        description="refuse new channel payments (503, Retry-After) while the engine has this "
        "many payer payments not yet final; 0: no limit",
    )
    open_payments_refresh_ms: int = Field(
        default=250, ge=10, description="how often the open payments are counted again"
    )

    def store_dsn(self) -> str:
        """The store's URL with its password (kept apart so that the URL is not a secret)."""
        if self.store_password is None:
            return self.store_url
        url = make_url(self.store_url).set(password=self.store_password.get_secret_value())
        return url.render_as_string(hide_password=False)
