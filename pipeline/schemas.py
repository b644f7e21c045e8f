"""Pydantic v2 models: validated records going into the database, and read models coming out.

Record models enforce the business rules (hex hashes of the right length, non-negative amounts, times
not in the future, positive prices). Validators read an optional validation context:
`{"now": datetime, "family": "bitcoin" | "ethereum"}` so that parsers stay pure and testable. The chain's
own rules (0x-prefixed Ethereum hashes, none on Bitcoin-like chains) also hold without a context: the
family then comes from the record's `coin_symbol` when it is a coin we know.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

# Block timestamps may run up to two hours ahead of the network time (Bitcoin's consensus rule).
FUTURE_TOLERANCE = timedelta(hours=2)
_HEX64 = re.compile(r"(0x)?[0-9a-f]{64}")
_ETH_ADDRESS = re.compile(r"0x[0-9a-f]{40}")
# The chain family of the coins we know, for records validated without a context (a caller's dicts, a
# replay): the coin_metadata row is the authority, so a context's `family` always wins over this table.
CHAIN_FAMILIES = {
    "BTC": "bitcoin",
    "BCH": "bitcoin",
    "LTC": "bitcoin",
    "DOGE": "bitcoin",
    "DASH": "bitcoin",
    "ETH": "ethereum",
}
# Rejected payloads are kept for the operator, trimmed so that one hostile record cannot bloat the log.
MAX_SAMPLE_CHARS = 2000


def _not_astronomical(value: Any) -> Any:
    # JSON numbers decode as Decimal; `1e1000000` is nine bytes of input but would take pydantic seconds
    # to expand into an int before the bound check could refuse it.
    if isinstance(value, Decimal) and value.is_finite() and value.adjusted() > 80:
        msg = f"number too large: {value:.3e}"
        raise ValueError(msg)
    return value


# Bounds match the columns, so a hostile value is rejected as one record instead of failing a batch.
Count = Annotated[int, BeforeValidator(_not_astronomical), Field(ge=0, le=2**31 - 1)]
Height = Annotated[int, BeforeValidator(_not_astronomical), Field(ge=0, le=2**63 - 1)]
Amount = Annotated[int, BeforeValidator(_not_astronomical), Field(ge=0, lt=10**76)]
Usd = Annotated[Decimal, Field(ge=0, lt=Decimal("1e20"))]


class IngestionStatus(StrEnum):
    """The states of an ingestion run."""

    RUNNING = "running"
    SUCCESS = "success"
    PARTIAL = "partial"
    FAILED = "failed"


def _now(info: ValidationInfo) -> datetime:
    context = info.context or {}
    return context.get("now") or datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01+01:00 and the like: pydantic only reports ValueError
        msg = f"time {value.isoformat()} is out of range"
        raise ValueError(msg) from None


def _check_not_future(value: datetime | None, info: ValidationInfo) -> datetime | None:
    if value is None:
        return None
    value = _as_utc(value)
    if value > _now(info) + FUTURE_TOLERANCE:
        msg = f"time {value.isoformat()} is in the future"
        raise ValueError(msg)
    return value


def _check_hash(value: str) -> str:
    value = value.strip().lower()
    if not _HEX64.fullmatch(value):
        msg = f"not a 64-digit hex hash: {value[:80]!r}"
        raise ValueError(msg)
    return value


def _family(coin_symbol: str, info: ValidationInfo) -> str | None:
    """The chain family whose rules a record obeys: the context's, else the one known for its coin."""
    return (info.context or {}).get("family") or CHAIN_FAMILIES.get(coin_symbol.upper())


def _chain_rule_error(model: str, field: str, value: Any, message: str) -> ValidationError:
    # Raised from a model validator, but located on the field: the reject reason and
    # RecordValidationError.field then name the field, as for every other rule.
    error = PydanticCustomError("chain_rule", "{detail}", {"detail": message})
    return ValidationError.from_exception_data(
        model, [InitErrorDetails(type=error, loc=(field,), input=value)]
    )


def _check_hash_family(model: str, field: str, value: str, family: str | None) -> None:
    if family == "ethereum" and not value.startswith("0x"):
        raise _chain_rule_error(model, field, value, f"Ethereum hashes are 0x-prefixed: {value[:80]!r}")
    if family == "bitcoin" and value.startswith("0x"):
        raise _chain_rule_error(model, field, value, f"Bitcoin-like hashes have no 0x prefix: {value[:80]!r}")


class Record(BaseModel):
    """Base of the validated records: strict about unknown shapes, readable from ORM rows."""

    model_config = ConfigDict(from_attributes=True, extra="ignore", frozen=False)


class BlockchainBlockData(Record):
    """A block as stored."""

    coin_symbol: str = Field(min_length=1, max_length=16)
    block_id: Height
    hash: str
    time: datetime
    transaction_count: Count
    size: Count | None = None
    difficulty: Annotated[Decimal, Field(ge=0, lt=Decimal("1e40"))] | None = None
    output_total: Amount | None = None
    fee_total: Amount | None = None
    reward: Amount | None = None
    output_total_usd: Usd | None = None
    fee_total_usd: Usd | None = None
    reward_usd: Usd | None = None
    gas_used: Height | None = None
    gas_limit: Height | None = None
    miner: str | None = Field(None, max_length=64)

    _hash = field_validator("hash")(_check_hash)
    _time = field_validator("time")(_check_not_future)

    @model_validator(mode="after")
    def _chain_rules(self, info: ValidationInfo) -> BlockchainBlockData:
        _check_hash_family(type(self).__name__, "hash", self.hash, _family(self.coin_symbol, info))
        return self


class BlockchainTransactionData(Record):
    """A transaction as stored; the Ethereum-only fields stay None on Bitcoin-like chains."""

    coin_symbol: str = Field(min_length=1, max_length=16)
    tx_hash: str
    block_id: Height
    source_id: Height | None = None
    time: datetime
    fee: Amount | None = None
    input_total: Amount | None = None
    output_total: Amount | None = None
    fee_usd: Usd | None = None
    input_total_usd: Usd | None = None
    output_total_usd: Usd | None = None
    input_count: Count | None = None
    output_count: Count | None = None
    size: Count | None = None
    is_coinbase: bool = False
    sender: str | None = None
    recipient: str | None = None
    value: Amount | None = None
    gas_used: Height | None = None
    failed: bool | None = None

    _hash = field_validator("tx_hash")(_check_hash)
    _time = field_validator("time")(_check_not_future)

    @model_validator(mode="after")
    def _chain_rules(self, info: ValidationInfo) -> BlockchainTransactionData:
        _check_hash_family(type(self).__name__, "tx_hash", self.tx_hash, _family(self.coin_symbol, info))
        return self

    @field_validator("sender", "recipient")
    @classmethod
    def _eth_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.lower()
        if not _ETH_ADDRESS.fullmatch(value):
            msg = f"not a 0x-prefixed 40-digit hex address: {value[:80]!r}"
            raise ValueError(msg)
        return value


class BlockchainAddressData(Record):
    """A watched address as last observed."""

    coin_symbol: str = Field(min_length=1, max_length=16)
    address: str = Field(min_length=1, max_length=128, pattern=r"^[0-9A-Za-z:]+$")
    balance: Amount
    received: Amount | None = None
    spent: Amount | None = None
    balance_usd: Usd | None = None
    received_usd: Usd | None = None
    spent_usd: Usd | None = None
    transaction_count: Count | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None

    _times = field_validator("first_seen", "last_seen")(_check_not_future)


class MarketPriceData(Record):
    """A coin's daily USD price; unknown volume or market cap is None, never 0."""

    coin_id: str = Field(min_length=1, max_length=64)
    price_date: date
    price_usd: Decimal = Field(gt=0, lt=Decimal("1e20"))
    volume_usd: Usd | None = None
    market_cap_usd: Usd | None = None

    @field_validator("price_date")
    @classmethod
    def _not_future(cls, value: date, info: ValidationInfo) -> date:
        if value > _now(info).date():
            msg = f"price_date {value.isoformat()} is in the future"
            raise ValueError(msg)
        return value

    @field_validator("volume_usd", "market_cap_usd", mode="before")
    @classmethod
    def _zero_is_unknown(cls, value: Any) -> Any:
        # CoinGecko sends 0 (and null) for volumes and caps it does not know.
        return None if value in (0, "0") else value


QUOTE_PATTERN = r"^[a-z0-9]{2,10}$"
# How densely a price series was sampled: CoinGecko's 5-minute, hourly or daily (00:00 UTC) points.
SAMPLINGS = ("5m", "1h", "1d")
CANDLE_INTERVALS = ("1h", "4h", "1d", "1w")


class PricePointData(Record):
    """One price sample of a coin in a quote currency at a UTC instant (hourly or finer, or a daily
    00:00 point in a quote other than USD); volume is CoinGecko's rolling 24 h volume at that instant."""

    coin_id: str = Field(min_length=1, max_length=64)
    quote: str = Field(pattern=QUOTE_PATTERN)
    ts: datetime
    price: Decimal = Field(gt=0, lt=Decimal("1e20"))
    volume_24h: Usd | None = None
    market_cap: Usd | None = None
    sampling: str = Field("1h", pattern=r"^(5m|1h|1d)$")

    @field_validator("ts")
    @classmethod
    def _not_future(cls, value: datetime, info: ValidationInfo) -> datetime:
        value = _as_utc(value)
        if value > _now(info) + timedelta(minutes=5):
            msg = f"time {value.isoformat()} is in the future"
            raise ValueError(msg)
        return value

    @field_validator("volume_24h", "market_cap", mode="before")
    @classmethod
    def _zero_is_unknown(cls, value: Any) -> Any:
        return None if value in (0, "0") else value


class CandleData(Record):
    """An OHLC candle built from stored samples. `start` is the bucket's first instant (UTC, weeks start
    on Monday); `open` is the last sample before the bucket when the previous bucket has one, so candles
    join up; `volume` is the bucket's share of the rolling 24 h volume; `sampling` names the coarsest
    samples it was built from (a candle from hourly samples is labelled so)."""

    coin_id: str
    quote: str
    interval: str
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal | None = None
    samples: int
    sampling: str

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return _as_utc(value)


class DailyPriceStatsData(Record):
    """Analytics of a coin's daily USD close: the return since the day before (None after a missing
    day), the standard deviation of the last 30 daily returns, the running peak and the drawdown from it
    (0 at a new peak, -0.25 a quarter below it)."""

    coin_id: str
    day: date
    close: Decimal
    daily_return: Decimal | None = None
    volatility_30d: Decimal | None = None
    running_peak: Decimal
    drawdown: Decimal


class ChainDailyStatsData(Record):
    """A chain's activity on one UTC day, from its stored blocks: fees in the chain's base units (satoshi,
    wei) and, when the day has a stored USD price, in USD."""

    coin_symbol: str
    day: date
    blocks: int
    transactions: int
    fees_native: int
    fees_usd: Decimal | None = None
    mean_block_interval_s: float | None = None
    mean_block_size: float | None = None
    first_height: int
    last_height: int


class CoinMetadataData(Record):
    """A coin the pipeline knows about."""

    symbol: str = Field(min_length=1, max_length=16, pattern=r"^[A-Z0-9]+$")
    name: str = Field(min_length=1, max_length=64)
    coingecko_id: str | None = Field(None, pattern=r"^[a-z0-9-]+$")
    blockchair_chain: str | None = Field(None, pattern=r"^[a-z0-9/-]+$")
    chain_family: str = Field("bitcoin", pattern=r"^(bitcoin|ethereum)$")
    listed_since: date | None = None
    is_active: bool = True
    ingestion_enabled: bool = True
    block_bookmark: int | None = None
    block_bookmark_at: datetime | None = None
    chain_tip_height: int | None = None
    chain_tip_seen_at: datetime | None = None
    price_bookmark: date | None = None
    price_bookmark_at: datetime | None = None

    @field_validator("block_bookmark_at", "chain_tip_seen_at", "price_bookmark_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _as_utc(value)


class DataIngestionLogData(Record):
    """One ingestion run as the dashboard and CLI show it."""

    id: int
    source: str
    data_type: str
    coin: str | None = None
    start_date: date | None = None
    end_date: date | None = None
    start_height: int | None = None
    end_height: int | None = None
    status: IngestionStatus
    trigger: str = "manual"
    records_fetched: int = 0
    records_inserted: int = 0
    records_updated: int = 0
    records_rejected: int = 0
    requests_made: int = 0
    retries: int = 0
    wait_seconds: float = 0.0
    http_seconds: float | None = None
    started_at: datetime
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    error_class: str | None = None
    error_message: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    rejected_samples: list[dict[str, Any]] | None = None
    worker_id: str | None = None
    parent_run_id: int | None = None
    resolved_by_run_id: int | None = None


@dataclass(frozen=True)
class Reject:
    """A record the pipeline refused, and why (a parser's validation, or the database's constraints)."""

    reason: str
    record: Any

    def sample(self) -> dict[str, Any]:
        """A JSON-safe, size-bounded view for the run log."""
        text = json.dumps(self.record, default=str)
        if len(text) > MAX_SAMPLE_CHARS:
            text = text[:MAX_SAMPLE_CHARS] + "…"
        return {"reason": self.reason[:500], "record": text}


class UpsertResult(BaseModel):
    """What a bulk upsert did: new rows, changed rows, rows that were already identical, and the records
    the database refused (a unique key held by another row, a check or foreign key), each with its reason.
    """

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejects: list[Reject] = Field(default_factory=list)

    @property
    def total(self) -> int:
        """Rows written or confirmed."""
        return self.inserted + self.updated + self.unchanged

    @property
    def rejected(self) -> int:
        """Records not written because the database (or a contradicting record) refused them."""
        return len(self.rejects)

    def counts(self) -> UpsertResult:
        """The counts alone, for running totals that must not hold every reject of a long run."""
        return UpsertResult(inserted=self.inserted, updated=self.updated, unchanged=self.unchanged)

    def __add__(self, other: UpsertResult) -> UpsertResult:
        return UpsertResult(
            inserted=self.inserted + other.inserted,
            updated=self.updated + other.updated,
            unchanged=self.unchanged + other.unchanged,
            rejects=[*self.rejects, *other.rejects],
        )


class DateCoverage(BaseModel):
    """The span of daily prices held for one coin."""

    coin_id: str
    first_date: date | None
    last_date: date | None
    days: int

    @property
    def missing_days(self) -> int:
        """Days between first and last with no row."""
        if self.first_date is None or self.last_date is None:
            return 0
        return (self.last_date - self.first_date).days + 1 - self.days


class HeightCoverage(BaseModel):
    """The span of block heights held for one chain."""

    coin_symbol: str
    min_height: int | None
    max_height: int | None
    blocks: int


class DatabaseStats(BaseModel):
    """Counts and coverage of the whole store."""

    total_blocks: int
    total_transactions: int
    total_addresses: int
    total_prices: int
    total_runs: int
    rows_per_table: dict[str, int]
    latest_block_by_coin: dict[str, int]
    block_coverage: list[HeightCoverage]
    price_coverage: list[DateCoverage]
    failures_last_24h: int
    database_size_bytes: int | None = None


class HealthStatus(BaseModel):
    """Whether the database answers, and how fast."""

    ok: bool
    dialect: str
    latency_ms: float
    schema_revision: str | None = None
    error: str | None = None

    @model_validator(mode="after")
    def _error_means_not_ok(self) -> HealthStatus:
        if self.error:
            self.ok = False
        return self


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each offending field and value."""
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "record"
        value = repr(err.get("input"))[:80]
        parts.append(f"{field}={value}: {err['msg']}")
    return "; ".join(parts)


class WorkerState(StrEnum):
    """What the heartbeats say about a scheduler worker."""

    UP = "up"
    STALE = "stale"
    DOWN = "down"  # died or silent for long: it did not stop cleanly
    STOPPED = "stopped"  # stopped cleanly (SIGTERM, Ctrl-C)


class SchedulerHeartbeatData(Record):
    """A scheduler worker as its heartbeat row describes it."""

    worker_id: str
    pid: int
    host: str
    started_at: datetime
    last_beat: datetime
    current_job: str | None = None
    stopped_at: datetime | None = None
    state: WorkerState = WorkerState.DOWN


class ReplayRequestData(Record):
    """A queued replay of a recorded run."""

    id: int
    run_id: int | None = None
    slice_key: str | None = None
    slice_params: dict[str, Any] | None = None
    requested_at: datetime
    requested_by: str
    kind: str = "rerun"
    status: str
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    finished_at: datetime | None = None
    result_run_id: int | None = None
    error_message: str | None = None


class IncidentData(Record):
    """An incident as the dashboard, the CLI and the alert channels show it."""

    id: int
    kind: str
    key: str
    level: str
    summary: str
    source: str | None = None
    data_type: str | None = None
    coin: str | None = None
    first_run_id: int | None = None
    last_run_id: int | None = None
    opened_at: datetime
    resolved_at: datetime | None = None
    resolved_by_run_id: int | None = None
    resolution: str | None = None
    notified_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    ack_note: str | None = None
    silenced_until: datetime | None = None
    silenced_by: str | None = None

    @property
    def is_open(self) -> bool:
        """Not resolved yet."""
        return self.resolved_at is None

    @property
    def unit(self) -> str | None:
        """"source data_type coin" for an incident about one unit (or one coin's freshness)."""
        parts = [p for p in (self.source, self.data_type, self.coin) if p]
        return " ".join(parts) or None

    def duration_seconds(self, now: datetime) -> float:
        """How long it was (or has been) open."""
        return ((self.resolved_at or now) - self.opened_at).total_seconds()

    def silenced(self, now: datetime) -> bool:
        """Alerts are held back until `silenced_until`."""
        return self.silenced_until is not None and self.silenced_until > now


class AlertDeliveryData(Record):
    """One message about an incident to one channel."""

    id: int
    incident_id: int
    event: str
    channel: str
    status: str
    attempts: int = 0
    error: str | None = None
    claimed_by: str
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None = None


class AuditEntryData(Record):
    """One write action of the audit log: who, through what, when, what and how it ended."""

    id: int
    at: datetime
    actor: str
    via: str
    role: str | None = None
    action: str
    target: str | None = None
    params: dict[str, Any] | None = None
    outcome: str
    detail: str | None = None
    run_id: int | None = None
    request_id: int | None = None
