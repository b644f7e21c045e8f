"""The API's response documents (FastAPI builds the OpenAPI schema from them).

Conventions: every amount is a JSON string holding the exact decimal in plain notation (`"0.000000000001"`,
`"340282366920938463463374607431768211456"`), so that no client parses it into a float; native amounts
(`fee`, `value`, `balance_native` ...) are whole numbers of the chain's base unit (satoshi, wei: `decimals`
of the coin), USD values and prices are decimals. Times are ISO 8601 in UTC (`2026-12-01T12:00:00Z`),
days are `YYYY-MM-DD`. Heights, counts and ids are JSON integers.

Every response is an envelope: `data` (one resource, or a page of them, with `next_cursor` and `limit`)
and `data_as_of`, the newest stored change the response reflects (its Last-Modified), null when it
reflects no stored row.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from pipeline.schemas import DatabaseStats, HealthStatus, ReplayRequestData, SchedulerHeartbeatData
from pipeline.services.coverage import BlockCoverage, DayRange, HeightRange, PriceCoverage, TransactionGap
from pipeline.services.freshness import Freshness

T = TypeVar("T")

AS_OF = (
    "The newest stored change this response reflects (ISO 8601 UTC; the Last-Modified header); null when"
    " it reflects no stored row."
)
Exact = str  # an exact decimal as text, see the module docstring


class Item(BaseModel, Generic[T]):
    """One resource."""

    data: T
    data_as_of: datetime | None = Field(description=AS_OF)


class Page(BaseModel, Generic[T]):
    """A page of a list, in the list's documented order."""

    data: list[T]
    next_cursor: str | None = Field(
        description="Pass it as `cursor` (with the same filters) for the next page; null on the last page."
    )
    limit: int = Field(description="The page size asked for.")
    data_as_of: datetime | None = Field(description=AS_OF)


# ---------------------------------------------------------------------------------------------- coins


class Coin(BaseModel):
    """A coin the pipeline knows, and where its ingestion stands."""

    symbol: str
    name: str
    coingecko_id: str | None
    blockchair_chain: str | None
    chain_family: str = Field(description="`bitcoin` (UTXO chains) or `ethereum` (account chains).")
    decimals: int = Field(description="Digits of the base unit: 8 (satoshi-like) or 18 (wei).")
    listed_since: date | None
    is_active: bool
    ingestion_enabled: bool
    block_bookmark: int | None = Field(description="The newest stored block height.")
    block_bookmark_at: datetime | None
    chain_tip_height: int | None = Field(description="The chain tip the source last reported.")
    chain_tip_seen_at: datetime | None
    price_bookmark: date | None = Field(description="The newest stored daily price.")
    price_bookmark_at: datetime | None


# ---------------------------------------------------------------------------------------------- prices


class DailyPrice(BaseModel):
    """A coin's daily USD snapshot (CoinGecko's 00:00 UTC point)."""

    coin_id: str
    price_date: date
    price_usd: Exact
    volume_usd: Exact | None
    market_cap_usd: Exact | None


class PricePoint(BaseModel):
    """A price sample in a quote currency."""

    coin_id: str
    quote: str
    ts: datetime
    price: Exact
    volume_24h: Exact | None = Field(description="CoinGecko's rolling 24 h volume at that instant.")
    market_cap: Exact | None
    sampling: str = Field(description="`5m`, `1h` or `1d`: how densely the series was sampled.")


class Candle(BaseModel):
    """An OHLC candle built from the stored samples."""

    coin_id: str
    quote: str
    interval: str
    start: datetime = Field(description="The bucket's first instant (weeks start on Monday).")
    open: Exact
    high: Exact
    low: Exact
    close: Exact
    volume: Exact | None
    samples: int
    sampling: str


# ---------------------------------------------------------------------------------------------- chains


class Block(BaseModel):
    """A stored block; native amounts in the chain's base unit."""

    coin_symbol: str
    height: int
    hash: str
    time: datetime
    transaction_count: int
    size: int | None
    difficulty: Exact | None
    output_total: Exact | None
    fee_total: Exact | None
    reward: Exact | None
    output_total_usd: Exact | None
    fee_total_usd: Exact | None
    reward_usd: Exact | None
    gas_used: int | None
    gas_limit: int | None
    miner: str | None


class Transaction(BaseModel):
    """A stored transaction; native amounts in the chain's base unit (satoshi, wei)."""

    coin_symbol: str
    tx_hash: str
    block_id: int
    source_id: int | None
    time: datetime
    fee: Exact | None
    input_total: Exact | None
    output_total: Exact | None
    fee_usd: Exact | None
    input_total_usd: Exact | None
    output_total_usd: Exact | None
    input_count: int | None
    output_count: int | None
    size: int | None
    is_coinbase: bool
    sender: str | None
    recipient: str | None
    value: Exact | None
    gas_used: int | None
    failed: bool | None


class Address(BaseModel):
    """A watched address as last observed: balances in coin units, and the balance in base units."""

    coin_symbol: str
    address: str
    balance: Exact = Field(description="In coin units (BTC, ETH ...).")
    balance_native: Exact = Field(description="In the chain's base unit (satoshi, wei).")
    received: Exact | None
    spent: Exact | None
    balance_usd: Exact | None
    transaction_count: int | None
    last_seen: datetime | None
    updated_at: datetime | None


# ---------------------------------------------------------------------------------------------- runs


class Run(BaseModel):
    """One ingestion run (source x data type x coin x slice)."""

    id: int
    source: str
    data_type: str
    coin: str | None
    start_date: date | None
    end_date: date | None
    start_height: int | None
    end_height: int | None
    status: str = Field(description="`running`, `success`, `partial` or `failed`.")
    trigger: str
    records_fetched: int
    records_inserted: int
    records_updated: int
    records_rejected: int
    requests_made: int
    retries: int
    wait_seconds: float
    http_seconds: float | None
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float | None
    error_class: str | None
    error_message: str | None = Field(description="Redacted before it was stored.")
    params: dict[str, Any]
    worker_id: str | None
    parent_run_id: int | None
    resolved_by_run_id: int | None


class RunDetail(Run):
    """One run with the reruns made from it, its latest replay request and its rejected samples."""

    rejected_samples: list[dict[str, Any]] | None
    children: list[Run]
    replay_request: ReplayRequestData | None


class Finding(BaseModel):
    """A data-quality finding on the slice a run wrote."""

    id: int
    run_id: int | None
    check_name: str
    severity: str = Field(description="`warn` or `error`.")
    subject: str
    slice: str
    observed: str
    threshold: str | None
    samples: list[dict[str, Any]] | None
    created_at: datetime


# ---------------------------------------------------------------------------------------------- reports


class HourRange(BaseModel):
    """Consecutive missing hours (start and end are hour starts, both included)."""

    start: datetime
    end: datetime
    hours: int


class CoinCoverage(BaseModel):
    """What one coin holds: price days by state, and block heights held, holes and incomplete blocks."""

    coin: str
    prices: PriceCoverage | None
    blocks: BlockCoverage | None


class CoinGaps(BaseModel):
    """What one coin misses: price days, block holes, blocks with missing transactions, hourly points."""

    coin: str
    price_days: list[DayRange] = Field(description="Ranges of days `missing` or `failed`.")
    block_holes: list[HeightRange]
    incomplete_transactions: list[TransactionGap]
    missing_hours: dict[str, list[HourRange]] = Field(description="Per quote currency.")


class Health(BaseModel):
    """Whether the database answers (and at which schema) and whether a scheduler beats."""

    database: HealthStatus
    scheduler_alive: bool
    workers: list[SchedulerHeartbeatData]


class DailyStats(BaseModel):
    """Analytics of a coin's daily USD close."""

    coin_id: str
    day: date
    close: Exact
    daily_return: Exact | None
    volatility_30d: Exact | None
    running_peak: Exact
    drawdown: Exact


class ChainDay(BaseModel):
    """A chain's activity on one UTC day; fees in base units and USD."""

    coin_symbol: str
    day: date
    blocks: int
    transactions: int
    fees_native: Exact
    fees_usd: Exact | None
    mean_block_interval_s: float | None
    mean_block_size: float | None
    first_height: int
    last_height: int


class Correlation(BaseModel):
    """Pearson correlation of daily returns; null where two coins share too few days."""

    coins: list[str]
    start: date
    end: date
    matrix: list[list[float | None]]


__all__ = [
    "Address",
    "Block",
    "Candle",
    "ChainDay",
    "Coin",
    "CoinCoverage",
    "CoinGaps",
    "Correlation",
    "DailyPrice",
    "DailyStats",
    "DatabaseStats",
    "Finding",
    "Freshness",
    "Health",
    "HourRange",
    "Item",
    "Page",
    "PricePoint",
    "Run",
    "RunDetail",
    "Transaction",
]
