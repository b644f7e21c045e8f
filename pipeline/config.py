"""The one settings object of the pipeline, read from the environment and `.env` once and passed in.

Nothing else in the project reads `os.environ`: entrypoints build `Settings()` (or call
`get_settings()`) and hand it to the services that need it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from datetime import time
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple
from urllib.parse import urlparse

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipeline.errors import ConfigError, UnsupportedDatabase

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

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


# The schemes we accept, and the driver each one means. `postgres://` is what Heroku, Render and many
# hosting panels hand out; SQLAlchemy dropped that alias, so we map it rather than refuse a working URL.
_DRIVERS = {
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
}
_URL_HINT = "use sqlite:///path/to/file.db or postgresql://user@host/database"
# `scheme://user:password@host`: the password runs to the last @ before the path, as in make_url (a
# password may contain @). Then, for text too broken to have a `://`, any `user:password@`.
_PASSWORD_IN_URL = re.compile(r"(://[^/@:\s]*:)[^/\s]*@")
_PASSWORD_LOOSE = re.compile(r"((?:^|[\s'\"/])[^\s:/@'\"]*:)(?!\*\*\*@)[^/\s'\"]*@")


# libpq also takes the password as a query parameter: postgresql://u@h/db?password=...
_PASSWORD_IN_QUERY = re.compile(r"([?&]password=)[^&\s'\"]*", re.IGNORECASE)


def mask_url_password(text: str) -> str:
    """Replace the password of every `scheme://user:password@` (and `?password=`) in text with ***, even
    in a URL that does not parse (a typo must not put a password on a screen or in a log)."""
    text = _PASSWORD_IN_QUERY.sub(r"\1***", text)
    return _PASSWORD_LOOSE.sub(r"\1***@", _PASSWORD_IN_URL.sub(r"\1***@", text))


def parse_database_url(text: str) -> URL:
    """DATABASE_URL as a SQLAlchemy URL with our driver, or UnsupportedDatabase saying what to type.

    Catches here, before anything connects, the typos that would otherwise end in a driver traceback:
    a misspelt scheme, a port that is not a number, a driver we do not ship, a SQLite URL with a host.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    shown = mask_url_password(text)
    try:
        url = make_url(text)
    except ArgumentError:
        msg = f"not a database URL: {shown!r}; {_URL_HINT}"
        raise UnsupportedDatabase(msg) from None
    except ValueError:  # make_url's int() of the port
        msg = f"the port is not a number in {shown!r}"
        raise UnsupportedDatabase(msg) from None
    driver = _DRIVERS.get(url.drivername)
    if driver is None:
        if url.get_backend_name() in ("sqlite", "postgresql"):
            msg = (
                f"driver {url.drivername!r} is not supported: use sqlite:/// or postgresql://"
                " (psycopg 3, installed with crypto-pipeline)"
            )
        else:
            scheme = text.split(":", 1)[0]
            close = difflib.get_close_matches(scheme.split("+")[0].lower(), ["sqlite", "postgresql"], 1, 0.6)
            guess = f"did you mean {close[0] + shown[len(scheme) :]!r}?" if close else _URL_HINT
            msg = f"scheme {scheme!r} is not supported; {guess}"
        raise UnsupportedDatabase(msg)
    if driver == "sqlite" and (url.host or url.port or url.username or url.password):
        # sqlite://./data/x.db parses with host "." and would open "data/x.db" somewhere unexpected.
        msg = (
            f"a SQLite URL has no host: {shown!r}; use sqlite:///relative/path.db (three slashes)"
            " or sqlite:////absolute/path.db (four)"
        )
        raise UnsupportedDatabase(msg)
    if url.port is not None and not 1 <= url.port <= 65535:
        msg = f"port {url.port} is not between 1 and 65535 in {shown!r}"
        raise UnsupportedDatabase(msg)
    return url.set(drivername=driver)


def is_in_memory(url: URL) -> bool:
    """True for SQLite URLs whose database lives only in the process: `sqlite://`, `sqlite:///:memory:`,
    `file::memory:` and `mode=memory` URIs."""
    if url.get_backend_name() != "sqlite":
        return False
    database = url.database or ""
    return (
        database in ("", ":memory:")
        or database.startswith("file::memory:")
        or url.query.get("mode") == "memory"
        or "mode=memory" in database
    )


# What an API key may be granted: `read` every /v1 resource, `health` only /v1/health (for a monitor),
# `operate` the write actions (rerun, acknowledge, silence, fill gaps) and the audit log, `audit` the audit
# log alone (it names people, so `read` does not grant it).
API_SCOPES = frozenset({"read", "health", "operate", "audit"})
_API_KEY = re.compile(r"[^\s,:]+")
_API_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class ApiKeyGrant(NamedTuple):
    """What one API key is: the name the audit log records for it, and its scopes."""

    name: str
    scopes: frozenset[str]


def api_key_fingerprint(key: str) -> str:
    """The name of a key configured without one: `key sha256:` and the first 8 hex digits of its SHA-256
    (which tells the keys apart without revealing them)."""
    return "key sha256:" + hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def parse_api_keys(value: SecretStr | None) -> dict[str, ApiKeyGrant]:
    """API_KEYS as key -> (name, scopes). The format: entries `[NAME:]KEY:SCOPE[+SCOPE...]` separated by
    commas, e.g. `grafana:k3Y...:read,ops-bot:0tHer...:read+operate,s3cond...:health`.

    A key has no spaces, commas or colons, and each key appears once, so one colon means an unnamed key
    and two a named one: a key written before names existed reads as it always did. A name (letters,
    digits and `. _ @ -`, up to 64, each name once) is what the audit log records for the key's writes; a
    key without one is recorded as `key sha256:<8 hex digits>`.

    A bad entry raises ValueError naming its position, never its text (it may be a key)."""
    keys: dict[str, ApiKeyGrant] = {}
    if value is None:
        return keys
    names: set[str] = set()
    for number, entry in enumerate(value.get_secret_value().split(","), start=1):
        parts = entry.strip().split(":")
        where = f"API_KEYS entry {number}"
        if len(parts) not in (2, 3):
            msg = f"{where} is not KEY:SCOPE or NAME:KEY:SCOPE (a key without spaces, commas or colons)"
            raise ValueError(msg)
        name, key, scopes = parts if len(parts) == 3 else ("", *parts)
        if not _API_KEY.fullmatch(key):
            msg = f"{where} is not KEY:SCOPE or NAME:KEY:SCOPE (a key without spaces, commas or colons)"
            raise ValueError(msg)
        if len(parts) == 3 and not name:
            msg = f"{where} has an empty NAME (NAME:KEY:SCOPE, or KEY:SCOPE for an unnamed key)"
            raise ValueError(msg)
        if name and not _API_KEY_NAME.fullmatch(name):
            msg = f"{where}: a NAME is letters, digits and . _ @ - (up to 64, first a letter or digit)"
            raise ValueError(msg)
        granted = frozenset(s.strip() for s in scopes.split("+"))
        if "" in granted:
            msg = f"{where} has an empty scope (KEY:read, or KEY:read+other)"
            raise ValueError(msg)
        if unknown := sorted(granted - API_SCOPES):
            msg = f"{where}: unknown scope {unknown[0]!r}; scopes are {', '.join(sorted(API_SCOPES))}"
            raise ValueError(msg)
        if key in keys:
            msg = f"{where} repeats an earlier key"
            raise ValueError(msg)
        name = name or api_key_fingerprint(key)
        if name in names:
            msg = f"{where} repeats an earlier name"
            raise ValueError(msg)
        names.add(name)
        keys[key] = ApiKeyGrant(name, granted)
    return keys


class Settings(BaseSettings):
    """Everything configurable, named as the environment variables that set it."""

    model_config = SettingsConfigDict(env_file=".env", env_ignore_empty=True, extra="ignore")

    # Storage
    DATABASE_URL: str = DEFAULT_DATABASE_URL
    # Optional: a read replica (PostgreSQL streaming replication) for the dashboard's and the API's
    # reads; every write (rerun, fill gaps, acknowledge) still goes to DATABASE_URL.
    DATABASE_READ_URL: str | None = None
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
    # A whole attempt (connect, headers, every byte of the body): a trickling reply cannot hold a worker.
    HTTP_DEADLINE_SECONDS: float = Field(60, gt=0)
    # Real pages are 100-300 KB; a bigger body is refused while it streams, never read whole.
    HTTP_MAX_RESPONSE_BYTES: int = Field(16 * 1024 * 1024, ge=1024)
    # One unit (source x data type x coin x slice) ends as failed (UnitTimeout) once this is spent.
    UNIT_TIME_BUDGET_SECONDS: float = Field(1800, gt=0)
    HTTP_MAX_ATTEMPTS: int = Field(5, ge=1, le=20)
    HTTP_MAX_TOTAL_WAIT_SECONDS: float = Field(120, ge=0)
    HTTP_BACKOFF_BASE_SECONDS: float = Field(1.0, ge=0)
    # The sources are the local simulator (set by `up --demo`): a database stamped with one world refuses
    # to be fed from the other (WorldMismatch).
    SIMULATED_DATA: bool = False

    # What to ingest
    # Empty: the scheduler runs every enabled coin of `coin_metadata` (`crypto-pipeline coins`); set, it
    # runs only the coins named here (CoinGecko ids, chains or symbols).
    COINS: CoinList = []
    BLOCKS_INITIAL_DEPTH: int = Field(1000, ge=1)
    REORG_DEPTH: int = Field(6, ge=0, le=100)
    TRANSACTIONS_WINDOW_BLOCKS: int = Field(6, ge=0)
    WATCH_ADDRESSES: dict[str, list[str]] = {}
    PRICE_BACKFILL_DAYS: int = Field(30, ge=1)
    # Hourly (and, within the last day, 5-minute) price points are kept for this many days back, within
    # the plan's history; the first run fetches them in windows of at most 90 days (CoinGecko serves
    # hourly points only for windows of 2-90 days when no interval is sent).
    HOURLY_DAYS: int = Field(90, ge=1, le=3650)
    # Quote currencies of the price points and candles (CoinGecko vs_currency codes). The seed's daily
    # USD table is filled whatever this says.
    QUOTE_CURRENCIES: CoinList = ["usd"]

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

    # Incidents and alerts
    # A channel is on when its setting is set. Webhook and Slack URLs and the SMTP URL may hold tokens or
    # passwords, so they are secrets: never logged, stored or put in a message.
    ALERT_WEBHOOK_URL: SecretStr | None = None
    ALERT_SLACK_WEBHOOK_URL: SecretStr | None = None
    ALERT_SMTP_URL: SecretStr | None = None  # smtp://user:password@host:587 (STARTTLS) or smtps://host:465
    ALERT_EMAIL_TO: Annotated[list[str], NoDecode] = []
    ALERT_EMAIL_FROM: str = "crypto-pipeline@localhost"
    # An incident pages only once it has been open this long: a blip that heals sooner stays quiet.
    ALERT_AFTER_MINUTES: float = Field(0, ge=0)
    ALERT_MAX_ATTEMPTS: int = Field(5, ge=1, le=20)
    ALERT_BACKOFF_SECONDS: float = Field(2, ge=0)
    ALERT_TIMEOUT_SECONDS: float = Field(10, gt=0)
    # How often the watchers (the scheduler's own and `crypto-pipeline watch`) evaluate the incident rules.
    WATCH_INTERVAL_SECONDS: float = Field(15, gt=0)
    # Share of a source's daily request budget spent today that opens a "quota" incident.
    QUOTA_WARN_RATIO: float = Field(0.9, gt=0, le=1)
    # Where the dashboard is reached, for links in alerts (for example https://pipeline.example.com).
    DASHBOARD_URL: str = "http://127.0.0.1:8501"

    # Dashboard
    DASHBOARD_READ_ONLY: bool = False
    # Host names the dashboard answers besides loopback and its bound address (DNS-rebinding guard).
    # Set by `crypto-pipeline up` for its children: where it publishes their restarts for the dashboard.
    LAUNCHER_STATE_FILE: str | None = None
    DASHBOARD_ALLOWED_HOSTS: Annotated[list[str], NoDecode] = []
    # An authenticating reverse proxy is in front: a dashboard bound to a public address may write.
    DASHBOARD_TRUSTED_AUTH_PROXY: bool = False
    # Roles of logged-in users (pipeline.services.access.role_for): e-mails or `group:NAME`, comma-separated.
    # A user on neither list is a viewer. GROUPS_CLAIM names the ID token's claim with the user's groups.
    DASHBOARD_ADMINS: Annotated[list[str], NoDecode] = []
    DASHBOARD_OPERATORS: Annotated[list[str], NoDecode] = []
    DASHBOARD_GROUPS_CLAIM: str = "groups"
    # Behind the trusted proxy: the request headers naming its user and the user's groups (oauth2-proxy's).
    DASHBOARD_PROXY_USER_HEADER: str = "X-Forwarded-Email"
    DASHBOARD_PROXY_GROUPS_HEADER: str = "X-Forwarded-Groups"
    LOG_LEVEL: str = "INFO"

    # REST API (`crypto-pipeline api`). API_KEYS: `[NAME:]KEY:SCOPE[+SCOPE]` entries separated by commas
    # (`parse_api_keys`); set, every /v1 request needs an X-API-Key. Unset, the API serves loopback only,
    # unless API_ALLOW_REMOTE_WITHOUT_KEYS lets it listen on another address without keys.
    API_KEYS: SecretStr | None = None
    API_ALLOW_REMOTE_WITHOUT_KEYS: bool = False
    # Prometheus exporter (`crypto-pipeline metrics`): no authentication, so loopback only unless this is set.
    METRICS_ALLOW_REMOTE: bool = False

    _split_coins = field_validator("COINS", mode="before")(_split_list)
    _split_quotes = field_validator("QUOTE_CURRENCIES", mode="before")(_split_list)

    @field_validator("QUOTE_CURRENCIES")
    @classmethod
    def _check_quotes(cls, value: list[str]) -> list[str]:
        quotes = list(dict.fromkeys(q.strip().lower() for q in value if q.strip()))
        bad = [q for q in quotes if not re.fullmatch(r"[a-z0-9]{2,10}", q)]
        if bad or not quotes:
            msg = f"QUOTE_CURRENCIES must be CoinGecko vs_currency codes such as usd,eur,btc; got {value!r}"
            raise ValueError(msg)
        return quotes
    _split_hosts = field_validator("DASHBOARD_ALLOWED_HOSTS", mode="before")(_split_list)
    _split_roles = field_validator("DASHBOARD_ADMINS", "DASHBOARD_OPERATORS", mode="before")(_split_list)
    _split_emails = field_validator("ALERT_EMAIL_TO", mode="before")(_split_list)

    @field_validator("API_KEYS")
    @classmethod
    def _api_keys(cls, value: SecretStr | None) -> SecretStr | None:
        parse_api_keys(value)  # a bad entry stops the program here, named by position (never by key)
        return value

    @field_validator("BLOCKCHAIR_BASE_URL")
    @classmethod
    def _blockchair_url(cls, value: str) -> str:
        return _check_http_url("BLOCKCHAIR_BASE_URL", value)

    @field_validator("COINGECKO_BASE_URL")
    @classmethod
    def _coingecko_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url("COINGECKO_BASE_URL", value)

    @field_validator("DATABASE_READ_URL")
    @classmethod
    def _read_url(cls, value: str | None) -> str | None:
        return None if value is None else cls._database_url(value)

    @field_validator("DATABASE_URL")
    @classmethod
    def _database_url(cls, value: str) -> str:
        # The value is kept as typed (child processes get it from the environment anyway); prepare_url
        # applies the same parse when connecting. In-memory SQLite is valid here: tests build settings
        # with it, and the commands that need a lasting database refuse it themselves.
        try:
            parse_database_url(value)
        except UnsupportedDatabase as exc:
            raise ValueError(str(exc)) from None
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

    @property
    def hourly_days(self) -> int:
        """HOURLY_DAYS within the plan's history (365 days on the public and demo plans)."""
        history = self.coingecko_history_days
        return self.HOURLY_DAYS if history is None else min(self.HOURLY_DAYS, history)

    @property
    def data_world(self) -> str:
        """Where ingested data comes from: "simulated" (the local simulator, SIMULATED_DATA) or "real"."""
        return "simulated" if self.SIMULATED_DATA else "real"

    def describe(self) -> list[tuple[str, str, bool]]:
        """Every setting as (name, value as shown, whether it differs from the default), for an admin's
        settings view: secrets show only whether they are set, and a password in a URL shows as ***."""
        rows = []
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                shown = "set (hidden)" if value.get_secret_value() else "not set"
            elif value is None:
                shown = "not set"
            elif isinstance(value, list | tuple):
                shown = ", ".join(mask_url_password(str(v)) for v in value) or "(empty)"
            else:
                shown = mask_url_password(str(value))
            rows.append((name, shown, value != field.default))
        return rows

    def secrets(self) -> list[str]:
        """The secret values, so that log filters and tests can look for them."""
        keys = (
            self.BLOCKCHAIR_API_KEY,
            self.COINGECKO_API_KEY,
            self.ALERT_WEBHOOK_URL,
            self.ALERT_SLACK_WEBHOOK_URL,
            self.ALERT_SMTP_URL,
        )
        found = [k.get_secret_value() for k in keys if k is not None and k.get_secret_value()]
        return found + list(parse_api_keys(self.API_KEYS))


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning a validation error into a ConfigError that names the setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        errors = exc.errors()
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {_error_text(err)}" for err in errors
        )
        msg = mask_url_password(f"Invalid configuration: {problems}")
        # A bad DATABASE_URL alone gets its own error (and exit code): the database cannot be used.
        only_url = all(tuple(err["loc"]) == ("DATABASE_URL",) for err in errors)
        raise (UnsupportedDatabase if only_url else ConfigError)(msg) from None


def _error_text(error: Any) -> str:
    """Pydantic's message, without the "Value error, " it puts before our own validators' messages."""
    if error.get("type") == "value_error" and "error" in error.get("ctx", {}):
        return str(error["ctx"]["error"])
    return str(error["msg"])


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()


def child_environment(**overrides: object) -> dict[str, str]:
    """The environment for a child process (scheduler, dashboard, simulator), with settings overridden."""
    env = dict(os.environ)
    env.update({key: str(value) for key, value in overrides.items()})
    return env
