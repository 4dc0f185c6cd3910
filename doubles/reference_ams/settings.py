"""Settings of the reference AMS, from `PHEE_AMS_*` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from phee.service import ComponentSettings


class AmsSettings(ComponentSettings):
    """One typed settings object for the service (DESIGN 8)."""

    model_config = SettingsConfigDict(env_prefix="PHEE_AMS_", extra="ignore")

    #: SQLAlchemy URL: sqlite:///path, mysql+pymysql://..., postgresql+psycopg://...
    database_url: str = "sqlite:///./ams.db"
    #: create the `ams_*` tables at start when they are missing
    create_schema: bool = True
    #: connections kept per process (MariaDB/PostgreSQL); as many again may be opened on bursts
    pool_size: int = Field(default=10, ge=1)
