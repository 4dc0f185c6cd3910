"""Settings every service shares, secrets without usable defaults, and a clear refusal to start.

Each component has one typed settings class (its own `PHEE_<COMPONENT>_*` variables) built on
`ComponentSettings`, which carries the shared `ServiceSettings` (`PHEE_HOST`, `PHEE_PORT`,
`PHEE_LOG_LEVEL`, `PHEE_LOG_FORMAT`, `PHEE_DEV_MODE`). A secret field has no default: outside the
development mode a process started without it refuses to start and names the variable
(`phee.service.startup.load_settings`); with `PHEE_DEV_MODE=true` it takes a development value
that is public and fit for a laptop only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal, Self

from pydantic import Field, PrivateAttr, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_MODE_ENV = "PHEE_DEV_MODE"


class ServiceSettings(BaseSettings):
    """Where a service listens and how it logs (`PHEE_*`), the same for every component."""

    model_config = SettingsConfigDict(env_prefix="PHEE_", extra="ignore")

    #: listen address: loopback by default; a pod sets 0.0.0.0
    host: str = "127.0.0.1"
    #: listen port of the HTTP API (the harness always passes a free one)
    port: int = Field(default=8080, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: json: one JSON object per line (what log collectors parse); text: for a terminal
    log_format: Literal["json", "text"] = "json"
    #: development mode: secrets that are not set take public development values
    dev_mode: bool = False


class MissingSecretError(ValueError):
    """A secret setting is unset outside the development mode."""


class ComponentSettings(BaseSettings):
    """Base of a component's settings: the shared service part, and secrets checked at load."""

    model_config = SettingsConfigDict(extra="ignore")

    #: the shared part (its own `PHEE_*` variables, not the component's prefix)
    service: ServiceSettings = Field(default_factory=ServiceSettings, exclude=True)

    #: secret field -> the value it takes in the development mode (and only there)
    dev_secrets: ClassVar[Mapping[str, str]] = {}
    #: the variables that took their development value (logged at start)
    _dev_values: list[str] = PrivateAttr(default_factory=list)

    @property
    def dev_values_used(self) -> list[str]:
        return list(self._dev_values)

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable that sets `field`."""
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper()

    @classmethod
    def secret_env_names(cls) -> list[str]:
        return [cls.env_name(name) for name in cls.dev_secrets]

    def secret(self, name: str) -> str:
        """The value of the secret field `name` (always set once the settings loaded)."""
        value = getattr(self, name)
        if not isinstance(value, SecretStr):
            raise MissingSecretError(f"{self.env_name(name)} is not set")
        return value.get_secret_value()

    @model_validator(mode="after")
    def _secrets_set(self) -> Self:
        missing = []
        for name, dev_value in self.dev_secrets.items():
            value = getattr(self, name)
            if value is not None and (not isinstance(value, SecretStr) or value.get_secret_value()):
                continue
            if self.service.dev_mode:
                setattr(self, name, SecretStr(dev_value))
                self._dev_values.append(self.env_name(name))
            else:
                missing.append(self.env_name(name))
        if missing:
            names = " and ".join(missing)
            raise MissingSecretError(
                f"secret{'s' if len(missing) > 1 else ''} {names} "
                f"{'are' if len(missing) > 1 else 'is'} not set, and secrets have no defaults; "
                f"set {'them' if len(missing) > 1 else 'it'} (in Kubernetes from a Secret), or set "
                f"{DEV_MODE_ENV}=true for a local trial with public development values"
            )
        return self
