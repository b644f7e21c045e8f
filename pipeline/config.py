"""The one settings object of the pipeline, read from the environment and `.env` once and passed in.

Nothing else in the project reads `os.environ`: entrypoints build `Settings()` (or call
`get_settings()`) and hand it to the services that need it.
"""

from __future__ import annotations

import json
import os
from datetime import time
from functools import lru_cache
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipeline.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///./data/crypto.db"
COINGECKO_PUBLIC_URL = "https://api.coingecko.com/api/v3"
COINGECKO_PRO_URL = "https://pro-api.coingecko.com/api/v3"

CoinList = Annotated[list[str], NoDecode]


def _split_list(value: Any) -> Any:
    """Accept a JSON list or a comma-separated string (the form people type in a shell)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _check_http_url(name: str, value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        msg = f"{name} must be an http(s) URL such as https://host/path, got {value!r}"
        raise ValueError(msg)
    return value.rstrip("/")


class Settings(BaseSettings):
    """Everything configurable, named as the environment variables that set it."""

    model_config = SettingsConfigDict(env_file=".env", env_ignore_empty=True, extra="ignore")

    # Storage
    DATABASE_URL: str = DEFAULT_DATABASE_URL
    DB_BATCH_SIZE: int = Field(5000, ge=1, le=100_000)
    SQLITE_BUSY_TIMEOUT_MS: int = Field(30_000, ge=0)

    # Sources
    BLOCKCHAIR_BASE_URL: str = "https://api.blockchair.com"
    BLOCKCHAIR_API_KEY: SecretStr | None = None
    BLOCKCHAIR_RATE_LIMIT_PER_MINUTE: float = Field(30, gt=0)
    COINGECKO_BASE_URL: str | None = None
    COINGECKO_API_KEY: SecretStr | None = None
    COINGECKO_API_PLAN: Literal["public", "demo", "pro"] = "public"
    COINGECKO_RATE_LIMIT_PER_MINUTE: float = Field(30, gt=0)
    COINGECKO_HISTORY_DAYS: int | None = Field(None, ge=1)
    HTTP_TIMEOUT_SECONDS: float = Field(20, gt=0)
    HTTP_MAX_ATTEMPTS: int = Field(5, ge=1, le=20)
    HTTP_MAX_TOTAL_WAIT_SECONDS: float = Field(120, ge=0)
    HTTP_BACKOFF_BASE_SECONDS: float = Field(1.0, ge=0)
    SIMULATED_DATA: bool = False

    # What to ingest
    COINS: CoinList = ["bitcoin", "ethereum", "dogecoin"]
    BLOCKS_INITIAL_DEPTH: int = Field(1000, ge=1)
    REORG_DEPTH: int = Field(6, ge=0, le=100)
    TRANSACTIONS_WINDOW_BLOCKS: int = Field(6, ge=0)
    WATCH_ADDRESSES: dict[str, list[str]] = {}
    PRICE_BACKFILL_DAYS: int = Field(30, ge=1)

    # Schedule
    BLOCKS_INTERVAL_MINUTES: float = Field(10, gt=0)
    TRANSACTIONS_INTERVAL_MINUTES: float = Field(30, gt=0)
    ADDRESSES_INTERVAL_MINUTES: float = Field(60, gt=0)
    LATEST_PRICE_INTERVAL_MINUTES: float = Field(60, gt=0)
    DAILY_PRICES_AT_UTC: time = time(0, 40)
    HEARTBEAT_SECONDS: float = Field(15, gt=0)
    HEARTBEAT_STALE_SECONDS: float = Field(120, gt=0)
    # Runs of processes without a heartbeat (CLI commands) count as abandoned only after this long.
    UNTRACKED_RUN_TIMEOUT_HOURS: float = Field(6, gt=0)

    # Freshness thresholds (warn, fail)
    PRICE_AGE_WARN_HOURS: float = 30
    PRICE_AGE_FAIL_HOURS: float = 54
    BLOCK_LAG_WARN_BLOCKS: int = 30
    BLOCK_LAG_FAIL_BLOCKS: int = 300

    # Coverage, gap filling and data quality
    COVERAGE_DAYS: int = Field(365, ge=1, le=20_000)
    COINGECKO_DAILY_REQUEST_BUDGET: int = Field(330, ge=1)  # the demo plan's 10,000 calls a month
    BLOCKCHAIR_DAILY_REQUEST_BUDGET: int = Field(1440, ge=1)
    PRICE_MOVE_WARN_RATIO: float = Field(0.5, gt=0)  # |price / rolling median - 1|
    MARKET_CAP_DIVERGENCE_RATIO: float = Field(0.25, gt=0)  # cap change not matched by the price change
    BLOCK_TIME_TOLERANCE_MINUTES: float = Field(120, gt=0)

    # Dashboard
    DASHBOARD_READ_ONLY: bool = False
    LOG_LEVEL: str = "INFO"

    _split_coins = field_validator("COINS", mode="before")(_split_list)

    @field_validator("BLOCKCHAIR_BASE_URL")
    @classmethod
    def _blockchair_url(cls, value: str) -> str:
        return _check_http_url("BLOCKCHAIR_BASE_URL", value)

    @field_validator("COINGECKO_BASE_URL")
    @classmethod
    def _coingecko_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url("COINGECKO_BASE_URL", value)

    @field_validator("DATABASE_URL")
    @classmethod
    def _database_url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except ArgumentError:
            msg = f"DATABASE_URL is not a database URL: {value!r}"
            raise ValueError(msg) from None
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            msg = f"DATABASE_URL must be sqlite:/// or postgresql://, got {url.get_backend_name()!r}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _plan_needs_key(self) -> Settings:
        if self.COINGECKO_API_PLAN != "public" and self.COINGECKO_API_KEY is None:
            msg = f"COINGECKO_API_PLAN={self.COINGECKO_API_PLAN} needs COINGECKO_API_KEY"
            raise ValueError(msg)
        return self

    @property
    def coingecko_url(self) -> str:
        """The CoinGecko base URL: explicit, or the host that matches the plan."""
        if self.COINGECKO_BASE_URL:
            return self.COINGECKO_BASE_URL
        return COINGECKO_PRO_URL if self.COINGECKO_API_PLAN == "pro" else COINGECKO_PUBLIC_URL

    @property
    def coingecko_history_days(self) -> int | None:
        """How far back the plan serves history; None means unlimited (paid plans)."""
        if self.COINGECKO_HISTORY_DAYS is not None:
            return self.COINGECKO_HISTORY_DAYS
        return None if self.COINGECKO_API_PLAN == "pro" else 365

    def secrets(self) -> list[str]:
        """The secret values, so that log filters and tests can look for them."""
        keys = (self.BLOCKCHAIR_API_KEY, self.COINGECKO_API_KEY)
        return [k.get_secret_value() for k in keys if k is not None and k.get_secret_value()]


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning a validation error into a ConfigError that names the setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        msg = f"Invalid configuration: {problems}"
        raise ConfigError(msg) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()


def child_environment(**overrides: object) -> dict[str, str]:
    """The environment for a child process (scheduler, dashboard, simulator), with settings overridden."""
    env = dict(os.environ)
    env.update({key: str(value) for key, value in overrides.items()})
    return env
