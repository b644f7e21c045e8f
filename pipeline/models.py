"""SQLAlchemy 2 ORM tables of the pipeline.

Native amounts (satoshi, wei) are `NativeAmount` and USD values and prices are `ExactDecimal`: both stay
exact on SQLite and PostgreSQL (see `pipeline.columns`). Every table carries UTC `created_at`/`updated_at`.
Indexes follow the queries of the dashboard and of the incremental ingestors.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pipeline.columns import ExactDecimal, NativeAmount, UTCDateTime
from pipeline.ranges import utcnow

# Named constraints let Alembic's batch mode (SQLite) drop and alter them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class AuditMixin:
    """UTC audit timestamps; bulk upserts set `updated_at` themselves."""

    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )


class BlockchainBlock(AuditMixin, Base):
    """One block of a chain, keyed by (coin, height)."""

    __tablename__ = "blockchain_blocks"
    __table_args__ = (
        UniqueConstraint("coin_symbol", "hash"),
        Index("ix_blockchain_blocks_coin_time", "coin_symbol", "time"),
    )

    coin_symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    block_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[str] = mapped_column(String(66), nullable=False)
    time: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    transaction_count: Mapped[int] = mapped_column(Integer, nullable=False)
    size: Mapped[int | None] = mapped_column(Integer)
    difficulty: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    output_total: Mapped[int | None] = mapped_column(NativeAmount())
    fee_total: Mapped[int | None] = mapped_column(NativeAmount())
    reward: Mapped[int | None] = mapped_column(NativeAmount())
    output_total_usd: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    fee_total_usd: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    reward_usd: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    gas_used: Mapped[int | None] = mapped_column(BigInteger)
    gas_limit: Mapped[int | None] = mapped_column(BigInteger)
    miner: Mapped[str | None] = mapped_column(String(64))


class BlockchainTransaction(AuditMixin, Base):
    """One transaction, keyed by (coin, hash); Ethereum rows also carry sender, recipient and gas."""

    __tablename__ = "blockchain_transactions"
    __table_args__ = (Index("ix_blockchain_transactions_coin_block", "coin_symbol", "block_id"),)

    coin_symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    tx_hash: Mapped[str] = mapped_column(String(66), primary_key=True)
    block_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    source_id: Mapped[int | None] = mapped_column(BigInteger)
    time: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    fee: Mapped[int | None] = mapped_column(NativeAmount())
    input_total: Mapped[int | None] = mapped_column(NativeAmount())
    output_total: Mapped[int | None] = mapped_column(NativeAmount())
    fee_usd: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    input_total_usd: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    output_total_usd: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    input_count: Mapped[int | None] = mapped_column(Integer)
    output_count: Mapped[int | None] = mapped_column(Integer)
    size: Mapped[int | None] = mapped_column(Integer)
    is_coinbase: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    sender: Mapped[str | None] = mapped_column(String(42))
    recipient: Mapped[str | None] = mapped_column(String(42))
    value: Mapped[int | None] = mapped_column(NativeAmount())
    gas_used: Mapped[int | None] = mapped_column(BigInteger)
    failed: Mapped[bool | None] = mapped_column(Boolean)


class BlockchainAddress(AuditMixin, Base):
    """A watched address and its balances as last observed."""

    __tablename__ = "blockchain_addresses"

    coin_symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    address: Mapped[str] = mapped_column(String(128), primary_key=True)
    balance: Mapped[int] = mapped_column(NativeAmount(), nullable=False)
    received: Mapped[int | None] = mapped_column(NativeAmount())
    spent: Mapped[int | None] = mapped_column(NativeAmount())
    balance_usd: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    received_usd: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    spent_usd: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    transaction_count: Mapped[int | None] = mapped_column(Integer)
    first_seen: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MarketPrice(AuditMixin, Base):
    """The daily USD price (00:00 UTC snapshot, as CoinGecko labels days), 24 h volume and market cap."""

    __tablename__ = "market_prices"
    __table_args__ = (Index("ix_market_prices_date", "price_date"),)

    coin_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    price_date: Mapped[date] = mapped_column(Date, primary_key=True)
    price_usd: Mapped[Decimal] = mapped_column(ExactDecimal(), nullable=False)
    volume_usd: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    market_cap_usd: Mapped[Decimal | None] = mapped_column(ExactDecimal())


class PricePoint(AuditMixin, Base):
    """A price sample in one quote currency: CoinGecko's 5-minute and hourly points (and daily points in
    quotes other than USD, whose daily snapshot stays in `market_prices`)."""

    __tablename__ = "price_points"

    coin_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    quote: Mapped[str] = mapped_column(String(10), primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    price: Mapped[Decimal] = mapped_column(ExactDecimal(), nullable=False)
    volume_24h: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    market_cap: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    sampling: Mapped[str] = mapped_column(String(2), nullable=False)


class PriceCandle(AuditMixin, Base):
    """OHLC candles per coin, quote and interval, rebuilt from `price_points` in the transaction that
    stores the points, so that reading candles never touches the points."""

    __tablename__ = "price_candles"

    coin_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    quote: Mapped[str] = mapped_column(String(10), primary_key=True)
    interval: Mapped[str] = mapped_column(String(2), primary_key=True)
    start: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    open: Mapped[Decimal] = mapped_column(ExactDecimal(), nullable=False)
    high: Mapped[Decimal] = mapped_column(ExactDecimal(), nullable=False)
    low: Mapped[Decimal] = mapped_column(ExactDecimal(), nullable=False)
    close: Mapped[Decimal] = mapped_column(ExactDecimal(), nullable=False)
    volume: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    samples: Mapped[int] = mapped_column(Integer, nullable=False)
    sampling: Mapped[str] = mapped_column(String(2), nullable=False)


class DailyPriceStats(AuditMixin, Base):
    """Per coin and day, analytics of the daily USD close, kept current when daily prices are stored."""

    __tablename__ = "daily_price_stats"

    coin_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    close: Mapped[Decimal] = mapped_column(ExactDecimal(), nullable=False)
    daily_return: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    volatility_30d: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    running_peak: Mapped[Decimal] = mapped_column(ExactDecimal(), nullable=False)
    drawdown: Mapped[Decimal] = mapped_column(ExactDecimal(), nullable=False)


class ChainDailyStats(AuditMixin, Base):
    """Per chain and UTC day, totals of the stored blocks, kept current when blocks are stored."""

    __tablename__ = "chain_daily_stats"

    coin_symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    blocks: Mapped[int] = mapped_column(Integer, nullable=False)
    transactions: Mapped[int] = mapped_column(BigInteger, nullable=False)
    fees_native: Mapped[int] = mapped_column(NativeAmount(), nullable=False)
    fees_usd: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    mean_block_interval_s: Mapped[float | None] = mapped_column(Float)
    mean_block_size: Mapped[float | None] = mapped_column(Float)
    first_height: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_height: Mapped[int] = mapped_column(BigInteger, nullable=False)


class ChainDayPending(Base):
    """A chain day whose blocks changed since its `chain_daily_stats` row was built: written in the
    transaction that stores the blocks, cleared by the rebuild (at the end of the unit), so a crash in
    between leaves the day marked rather than wrong."""

    __tablename__ = "chain_days_pending"

    coin_symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)


class DataIngestionLog(AuditMixin, Base):
    """One ingestion unit (source x data type x coin x slice): what was asked, what happened."""

    __tablename__ = "data_ingestion_logs"
    __table_args__ = (
        Index("ix_data_ingestion_logs_started", "started_at"),
        Index("ix_data_ingestion_logs_status_started", "status", "started_at"),
        Index("ix_data_ingestion_logs_unit", "source", "data_type", "coin", "started_at"),
        # The runs that covered a coin's missing days (store/coverage.py price_run_outcomes).
        Index("ix_data_ingestion_logs_unit_end", "source", "data_type", "coin", "end_date", "start_date"),
        # Runs and rows inserted per day, status and data type, read from the index alone
        # (store/queries.py run_log_per_day on SQLite).
        Index(
            "ix_data_ingestion_logs_type_status_started",
            "data_type",
            "status",
            "started_at",
            "records_inserted",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32), nullable=False)
    data_type: Mapped[str] = mapped_column(String(32), nullable=False)
    coin: Mapped[str | None] = mapped_column(String(64))
    start_date: Mapped[date | None] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    start_height: Mapped[int | None] = mapped_column(BigInteger)
    end_height: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    trigger: Mapped[str] = mapped_column(String(16), default="manual", nullable=False)
    records_fetched: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    records_inserted: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    records_updated: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    records_rejected: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    requests_made: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    retries: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    wait_seconds: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    # Time on the wire (requests sent to the end of their bodies); the rest of the duration, minus the
    # wait, is parsing and the database. Null on runs recorded before it was measured.
    http_seconds: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    error_class: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)
    rejected_samples: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    worker_id: Mapped[str | None] = mapped_column(String(128))
    parent_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("data_ingestion_logs.id", ondelete="SET NULL"), index=True
    )
    # A failed run that a later success of its unit made good: the next scheduled success (which starts
    # from the same bookmark) or a successful replay of its slice. Set by the incident rules
    # (store/incidents.py); no foreign key, so adding it is a cheap ALTER on a large log.
    resolved_by_run_id: Mapped[int | None] = mapped_column(Integer)


class CoinMetadata(AuditMixin, Base):
    """A coin the pipeline knows (`crypto-pipeline coins add|enable|disable`, `pipeline.store.coins`)."""

    __tablename__ = "coin_metadata"

    symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    coingecko_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    blockchair_chain: Mapped[str | None] = mapped_column(String(64), unique=True)
    # "bitcoin" (UTXO rows in satoshi-like units) or "ethereum" (account rows in wei).
    chain_family: Mapped[str] = mapped_column(String(16), default="bitcoin", nullable=False)
    listed_since: Mapped[date | None] = mapped_column(Date)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    ingestion_enabled: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    block_bookmark: Mapped[int | None] = mapped_column(BigInteger)
    block_bookmark_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    chain_tip_height: Mapped[int | None] = mapped_column(BigInteger)
    chain_tip_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    price_bookmark: Mapped[date | None] = mapped_column(Date)
    price_bookmark_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# The coins a new database starts with.
SEED_COINS: list[dict[str, Any]] = [
    {
        "symbol": "BTC",
        "name": "Bitcoin",
        "coingecko_id": "bitcoin",
        "blockchair_chain": "bitcoin",
        "chain_family": "bitcoin",
        "listed_since": date(2013, 4, 28),
    },
    {
        "symbol": "ETH",
        "name": "Ethereum",
        "coingecko_id": "ethereum",
        "blockchair_chain": "ethereum",
        "chain_family": "ethereum",
        "listed_since": date(2015, 8, 7),
    },
    {
        "symbol": "DOGE",
        "name": "Dogecoin",
        "coingecko_id": "dogecoin",
        "blockchair_chain": "dogecoin",
        "chain_family": "bitcoin",
        "listed_since": date(2013, 12, 15),
    },
]


class SchedulerHeartbeat(Base):
    """A scheduler worker's proof of life, beaten every HEARTBEAT_SECONDS."""

    __tablename__ = "scheduler_heartbeats"

    worker_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    pid: Mapped[int] = mapped_column(Integer, nullable=False)
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    last_beat: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)
    current_job: Mapped[str | None] = mapped_column(String(128))
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ReplayRequest(AuditMixin, Base):
    """A request to replay a recorded run's slice, served by a scheduler (or the dashboard process)."""

    __tablename__ = "replay_requests"
    __table_args__ = (
        Index("ix_replay_requests_status_requested", "status", "requested_at"),
        Index("ix_replay_requests_run", "run_id"),
        # At most one open request per run: a flood of clicks queues one request.
        Index(
            "uq_replay_requests_open_run",
            "run_id",
            unique=True,
            sqlite_where=text("status IN ('pending', 'running')"),
            postgresql_where=text("status IN ('pending', 'running')"),
        ),
        # The same for planned backfill slices (fill-gaps), which have no run yet.
        Index(
            "uq_replay_requests_open_slice",
            "slice_key",
            unique=True,
            sqlite_where=text("status IN ('pending', 'running')"),
            postgresql_where=text("status IN ('pending', 'running')"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # A rerun replays a recorded run; a backfill carries its planned slice in `slice_params` instead.
    run_id: Mapped[int | None] = mapped_column(ForeignKey("data_ingestion_logs.id", ondelete="CASCADE"))
    slice_key: Mapped[str | None] = mapped_column(String(200))
    slice_params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    requested_by: Mapped[str] = mapped_column(String(128), nullable=False)
    # "rerun" replays a failed run; "backfill" requests wait until the regular jobs are done.
    kind: Mapped[str] = mapped_column(String(16), default="rerun", nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="pending", nullable=False)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    result_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("data_ingestion_logs.id", ondelete="SET NULL")
    )
    error_message: Mapped[str | None] = mapped_column(Text)


class JobLease(Base):
    """A claim on one slot of a scheduled job: whoever inserts the row runs the slot, once."""

    __tablename__ = "job_leases"

    job_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), nullable=False)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)


class DataQualityCheck(Base):
    """The result of one data-quality check on the slice a run wrote (only findings are stored)."""

    __tablename__ = "data_quality_checks"
    __table_args__ = (
        Index("ix_data_quality_checks_created", "created_at"),
        Index("ix_data_quality_checks_subject", "subject", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("data_ingestion_logs.id", ondelete="CASCADE"), index=True
    )
    check_name: Mapped[str] = mapped_column(String(64), nullable=False)
    severity: Mapped[str] = mapped_column(String(8), nullable=False)
    # What the finding is about: the CoinGecko id for prices, the coin symbol for blocks and transactions.
    subject: Mapped[str] = mapped_column(String(64), nullable=False)
    slice: Mapped[str] = mapped_column(String(128), nullable=False)
    observed: Mapped[str] = mapped_column(String(128), nullable=False)
    threshold: Mapped[str | None] = mapped_column(String(128))
    samples: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


INCIDENT_OPEN = "resolved_at IS NULL"


class Incident(Base):
    """Something that needs a person, from when it began to when it ended: a failing unit, stale data, an
    error-level data-quality finding, no live scheduler, a nearly spent request quota.

    The rules (services/incidents.py) open and resolve incidents; at most one is open per (kind, key),
    which is what keeps several schedulers and watchers from opening the same incident twice.
    """

    __tablename__ = "incidents"
    __table_args__ = (
        Index("ix_incidents_opened", "opened_at"),
        Index("ix_incidents_resolved", "resolved_at"),
        Index(
            "uq_incidents_open_key",
            "kind",
            "key",
            unique=True,
            sqlite_where=text(INCIDENT_OPEN),
            postgresql_where=text(INCIDENT_OPEN),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    # What the incident is about within its kind, for example "blockchair/blocks/bitcoin".
    key: Mapped[str] = mapped_column(String(200), nullable=False)
    level: Mapped[str] = mapped_column(String(8), nullable=False)
    summary: Mapped[str] = mapped_column(Text, nullable=False)
    source: Mapped[str | None] = mapped_column(String(32))
    data_type: Mapped[str | None] = mapped_column(String(32))
    coin: Mapped[str | None] = mapped_column(String(64))
    first_run_id: Mapped[int | None] = mapped_column(Integer)
    last_run_id: Mapped[int | None] = mapped_column(Integer)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by_run_id: Mapped[int | None] = mapped_column(Integer)
    resolution: Mapped[str | None] = mapped_column(Text)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))
    ack_note: Mapped[str | None] = mapped_column(Text)
    silenced_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    silenced_by: Mapped[str | None] = mapped_column(String(128))


class AlertDelivery(Base):
    """One message about one incident event (firing, resolved) to one channel, and what became of it.

    The unique key is the deduplication: whoever inserts the row sends the message, so several watchers
    send it once.
    """

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        UniqueConstraint("incident_id", "event", "channel"),
        Index("ix_alert_deliveries_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), nullable=False)
    event: Mapped[str] = mapped_column(String(16), nullable=False)  # firing | resolved
    channel: Mapped[str] = mapped_column(String(16), nullable=False)  # webhook | slack | email
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # sending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PipelineMeta(Base):
    """Facts about the database itself, one row each (for example which world its data comes from)."""

    __tablename__ = "pipeline_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class AuditEntry(Base):
    """One write action: who did what, when, with which parameters, and how it ended.

    Append-only: rows are never updated. `run_id` is the run an action was about (a rerun's run) and
    `request_id` the replay request it queued, so the Runs page can show who caused a run.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_run_id", "run_id"),
        Index("ix_audit_log_request_id", "request_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    via: Mapped[str] = mapped_column(String(16), nullable=False)  # dashboard | cli | api | scheduler
    role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    target: Mapped[str | None] = mapped_column(String(200))
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)  # ok | denied | failed
    detail: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[int | None] = mapped_column(Integer)
    request_id: Mapped[int | None] = mapped_column(Integer)
