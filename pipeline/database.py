"""`DatabaseService`: the one repository of the pipeline, shared by the scheduler, the CLI and the dashboard.

Usage::

    from pipeline.database import db_service          # built from settings on first use
    db_service.create_tables()
    db_service.insert_market_prices([{"coin_id": "bitcoin", "price_date": date(2024, 1, 1),
                                      "price_usd": Decimal("42280.23")}])
    db_service.get_market_prices(coin_id="bitcoin", limit=30)
    db_service.get_database_stats()

Writes are bulk upserts in one transaction per batch; reads return Pydantic models (or DataFrames for
chart queries), never ORM objects.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.orm import Session, sessionmaker

from pipeline.config import Settings, get_settings
from pipeline.coordination import CoordinationMixin
from pipeline.cursors import CursorMixin
from pipeline.errors import DatabaseUnavailable, RecordValidationError
from pipeline.lazy import LazyProxy
from pipeline.models import (
    BlockchainAddress,
    BlockchainBlock,
    BlockchainTransaction,
    CoinMetadata,
    DataIngestionLog,
    MarketPrice,
)
from pipeline.runlog import RunLogMixin
from pipeline.schemas import (
    BlockchainAddressData,
    BlockchainBlockData,
    BlockchainTransactionData,
    CoinMetadataData,
    DatabaseStats,
    DataIngestionLogData,
    DateCoverage,
    HealthStatus,
    HeightCoverage,
    MarketPriceData,
    UpsertResult,
    describe_validation_error,
)
from pipeline.upsert import UpsertSpec, upsert

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
RecordT = TypeVar("RecordT", bound=BaseModel)

_SPECS = {
    model: UpsertSpec.for_table(model.__table__)
    for model in (BlockchainBlock, BlockchainTransaction, BlockchainAddress, MarketPrice, CoinMetadata)
}
_TABLES = {
    "blockchain_blocks": BlockchainBlock,
    "blockchain_transactions": BlockchainTransaction,
    "blockchain_addresses": BlockchainAddress,
    "market_prices": MarketPrice,
    "data_ingestion_logs": DataIngestionLog,
    "coin_metadata": CoinMetadata,
}


def prepare_url(database_url: str) -> URL:
    """Normalise a database URL: psycopg 3 for PostgreSQL, the parent folder created for a SQLite file."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql" and url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return url


# SQLite OperationalError texts that mean "not now" rather than "never": another process holds the lock,
# or the file system failed. Anything else (no such table, syntax) is a bug and stays an OperationalError.
_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "disk i/o error", "unable to open")


def _unavailable(context: ExceptionContext) -> BaseException | None:
    """Turn a lost or refused connection into DatabaseUnavailable, the one class loops back off on."""
    if context.is_pre_ping:  # the pool recovers from a failed ping by itself
        return None
    original = context.original_exception
    if context.engine is not None and context.engine.dialect.name == "sqlite":
        text = str(original).lower()
        transient = isinstance(original, sqlite3.OperationalError) and any(
            t in text for t in _SQLITE_TRANSIENT
        )
    else:
        transient = context.is_disconnect or isinstance(original, psycopg.OperationalError)
    if not transient:
        return None
    # The driver's first line names the cause (refused, terminated, locked) and never the password.
    reason = (str(original).strip().splitlines() or [type(original).__name__])[0]
    return DatabaseUnavailable(f"database unavailable: {reason}")


def create_db_engine(database_url: str, *, busy_timeout_ms: int = 30_000) -> Engine:
    """An engine tuned for a writer process and reader processes sharing the database."""
    url = prepare_url(database_url)
    if url.get_backend_name() != "sqlite":
        engine = create_engine(url, pool_pre_ping=True, pool_recycle=1800)
        event.listen(engine, "handle_error", _unavailable)
        return engine
    engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})
    event.listen(engine, "handle_error", _unavailable)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        # WAL lets the dashboard read while the scheduler writes; busy_timeout makes a second
        # writer wait instead of failing with "database is locked".
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
        # Let SQLAlchemy's "begin" event, not the driver, decide when a transaction starts.
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Connection) -> None:
        # pysqlite defers BEGIN until the first write; a read-then-write transaction could then
        # fail with SQLITE_BUSY without waiting. IMMEDIATE takes the write lock up front (writers only
        # open transactions through `DatabaseService.transaction`).
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")

    return engine


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations, optionally bound to a connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def validate_records(model: type[RecordT], records: Iterable[Any]) -> Iterator[RecordT]:
    """Yield validated models; an invalid dict raises a RecordValidationError naming the field."""
    for record in records:
        if isinstance(record, model):
            yield record
            continue
        try:
            yield model.model_validate(record)
        except ValidationError as exc:
            field = ".".join(str(p) for p in exc.errors()[0]["loc"]) or None
            raise RecordValidationError(describe_validation_error(exc), record=record, field=field) from None


class DatabaseService(RunLogMixin, CursorMixin, CoordinationMixin):
    """Bulk idempotent writes, queries and stats over SQLite or PostgreSQL."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        settings: Settings | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.database_url = database_url or self.settings.DATABASE_URL
        self.engine = engine or create_db_engine(
            self.database_url, busy_timeout_ms=self.settings.SQLITE_BUSY_TIMEOUT_MS
        )
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)
        self.batch_size = self.settings.DB_BATCH_SIZE

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self.engine.dialect.name

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    # ------------------------------------------------------------------ transactions and schema

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction: everything inside commits together or not at all."""
        with self.engine.connect() as conn:
            conn.info["write"] = True
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.info.pop("write", None)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read session (ORM) closed on exit."""
        with self.session_factory() as session:
            yield session

    def create_tables(self) -> None:
        """Create or upgrade the schema to the newest migration (safe on an existing database)."""
        with self.transaction() as conn:
            command.upgrade(alembic_config(conn), "head")
        logger.debug("database schema is at %s", self.schema_revision())

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at, or None when it was never migrated."""
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    # ------------------------------------------------------------------ writes

    def _bulk_upsert(
        self, orm: type[Any], model: type[RecordT], records: Iterable[Any], conn: Connection | None
    ) -> UpsertResult:
        """Validate lazily and write DB_BATCH_SIZE rows at a time, all in one transaction.

        Memory stays flat however many records stream in, and an invalid record anywhere rolls the
        whole call back: nothing from a call that raised is written.
        """
        if conn is None:
            with self.transaction() as own:
                return self._bulk_upsert(orm, model, records, own)
        result = UpsertResult()
        validated = validate_records(model, records)
        while batch := list(islice(validated, self.batch_size)):
            result += upsert(conn, _SPECS[orm], batch)
        return result

    def insert_blocks(self, blocks: Iterable[Any], *, conn: Connection | None = None) -> UpsertResult:
        """Upsert blocks (models or dicts); pass `conn` to join the caller's transaction."""
        return self._bulk_upsert(BlockchainBlock, BlockchainBlockData, blocks, conn)

    def insert_transactions(
        self, transactions: Iterable[Any], *, conn: Connection | None = None
    ) -> UpsertResult:
        """Upsert transactions (models or dicts)."""
        return self._bulk_upsert(BlockchainTransaction, BlockchainTransactionData, transactions, conn)

    def insert_addresses(self, addresses: Iterable[Any], *, conn: Connection | None = None) -> UpsertResult:
        """Upsert watched-address snapshots (models or dicts)."""
        return self._bulk_upsert(BlockchainAddress, BlockchainAddressData, addresses, conn)

    def insert_market_prices(self, prices: Iterable[Any], *, conn: Connection | None = None) -> UpsertResult:
        """Upsert daily prices (models or dicts)."""
        return self._bulk_upsert(MarketPrice, MarketPriceData, prices, conn)

    def upsert_coins(self, coins: Iterable[Any], *, conn: Connection | None = None) -> UpsertResult:
        """Add or change coins (models or dicts)."""
        return self._bulk_upsert(CoinMetadata, CoinMetadataData, coins, conn)

    # ------------------------------------------------------------------ reads

    def _select_models(self, statement: Any, model: type[RecordT]) -> list[RecordT]:
        with self.session() as session:
            return [model.model_validate(row) for row in session.scalars(statement)]

    def get_blocks(
        self,
        coin_symbol: str | None = None,
        start_date: date | datetime | None = None,
        end_date: date | datetime | None = None,
        limit: int | None = 100,
    ) -> list[BlockchainBlockData]:
        """Blocks, newest first, optionally for one coin and a time window (both ends inclusive)."""
        stmt = select(BlockchainBlock).order_by(BlockchainBlock.time.desc(), BlockchainBlock.block_id.desc())
        if coin_symbol:
            stmt = stmt.where(BlockchainBlock.coin_symbol == coin_symbol)
        if start_date is not None:
            stmt = stmt.where(BlockchainBlock.time >= _start_of(start_date))
        if isinstance(end_date, datetime):
            stmt = stmt.where(BlockchainBlock.time <= _as_aware(end_date))
        elif end_date is not None:
            stmt = stmt.where(BlockchainBlock.time < _start_of(end_date) + timedelta(days=1))
        return self._select_models(stmt.limit(limit), BlockchainBlockData)

    def get_transactions(
        self, coin_symbol: str | None = None, block_id: int | None = None, limit: int | None = 100
    ) -> list[BlockchainTransactionData]:
        """Transactions, newest block first, optionally for one coin and block."""
        stmt = select(BlockchainTransaction).order_by(
            BlockchainTransaction.block_id.desc(), BlockchainTransaction.source_id
        )
        if coin_symbol:
            stmt = stmt.where(BlockchainTransaction.coin_symbol == coin_symbol)
        if block_id is not None:
            stmt = stmt.where(BlockchainTransaction.block_id == block_id)
        return self._select_models(stmt.limit(limit), BlockchainTransactionData)

    def get_addresses(self, coin_symbol: str | None = None) -> list[BlockchainAddressData]:
        """Watched addresses with their last observed balances."""
        stmt = select(BlockchainAddress).order_by(BlockchainAddress.coin_symbol, BlockchainAddress.address)
        if coin_symbol:
            stmt = stmt.where(BlockchainAddress.coin_symbol == coin_symbol)
        return self._select_models(stmt, BlockchainAddressData)

    def get_market_prices(
        self,
        coin_id: str | None = None,
        start_date: date | None = None,
        end_date: date | None = None,
        limit: int | None = 1000,
    ) -> list[MarketPriceData]:
        """Daily prices, newest first, optionally for one coin and an inclusive date range."""
        stmt = select(MarketPrice).order_by(MarketPrice.price_date.desc(), MarketPrice.coin_id)
        if coin_id:
            stmt = stmt.where(MarketPrice.coin_id == coin_id)
        if start_date is not None:
            stmt = stmt.where(MarketPrice.price_date >= start_date)
        if end_date is not None:
            stmt = stmt.where(MarketPrice.price_date <= end_date)
        return self._select_models(stmt.limit(limit), MarketPriceData)

    def get_ingestion_logs(
        self, source: str | None = None, status: str | None = None, limit: int | None = 100
    ) -> list[DataIngestionLogData]:
        """Ingestion runs, newest first."""
        stmt = select(DataIngestionLog).order_by(
            DataIngestionLog.started_at.desc(), DataIngestionLog.id.desc()
        )
        if source:
            stmt = stmt.where(DataIngestionLog.source == source)
        if status:
            stmt = stmt.where(DataIngestionLog.status == status)
        return self._select_models(stmt.limit(limit), DataIngestionLogData)

    def get_coins(self, *, active_only: bool = False) -> list[CoinMetadataData]:
        """Known coins; `active_only` keeps those that are active and enabled for ingestion."""
        stmt = select(CoinMetadata).order_by(CoinMetadata.symbol)
        if active_only:
            stmt = stmt.where(CoinMetadata.is_active.is_(True), CoinMetadata.ingestion_enabled.is_(True))
        return self._select_models(stmt, CoinMetadataData)

    # ------------------------------------------------------------------ stats and health

    def get_database_stats(self) -> DatabaseStats:
        """Row counts, coverage per coin and recent failures."""
        with self.session() as session:
            rows = {
                name: session.scalar(select(func.count()).select_from(orm)) or 0
                for name, orm in _TABLES.items()
            }
            blocks = session.execute(
                select(
                    BlockchainBlock.coin_symbol,
                    func.min(BlockchainBlock.block_id),
                    func.max(BlockchainBlock.block_id),
                    func.count(),
                ).group_by(BlockchainBlock.coin_symbol)
            ).all()
            prices = session.execute(
                select(
                    MarketPrice.coin_id,
                    func.min(MarketPrice.price_date),
                    func.max(MarketPrice.price_date),
                    func.count(),
                ).group_by(MarketPrice.coin_id)
            ).all()
            since = datetime.now(UTC) - timedelta(hours=24)
            failures = session.scalar(
                select(func.count())
                .select_from(DataIngestionLog)
                .where(DataIngestionLog.status == "failed", DataIngestionLog.started_at >= since)
            )
        return DatabaseStats(
            total_blocks=rows["blockchain_blocks"],
            total_transactions=rows["blockchain_transactions"],
            total_addresses=rows["blockchain_addresses"],
            total_prices=rows["market_prices"],
            total_runs=rows["data_ingestion_logs"],
            rows_per_table=rows,
            latest_block_by_coin={coin: high for coin, _low, high, _n in blocks},
            block_coverage=[
                HeightCoverage(coin_symbol=coin, min_height=low, max_height=high, blocks=n)
                for coin, low, high, n in blocks
            ],
            price_coverage=[
                DateCoverage(coin_id=coin, first_date=_as_date(first), last_date=_as_date(last), days=n)
                for coin, first, last, n in prices
            ],
            failures_last_24h=failures or 0,
            database_size_bytes=self.database_size_bytes(),
        )

    def database_size_bytes(self) -> int | None:
        """Size of the database on disk (file plus WAL for SQLite)."""
        if self.dialect == "sqlite":
            database = self.engine.url.database
            if not database or database == ":memory:":
                return None
            paths = [Path(database), Path(f"{database}-wal")]
            return sum(p.stat().st_size for p in paths if p.exists())
        with self.engine.connect() as conn:
            return conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()

    def health_check(self) -> HealthStatus:
        """Ping the database; never raises."""
        started = time.perf_counter()
        try:
            revision = self.schema_revision()
        except Exception as exc:  # noqa: BLE001 - a health check reports every failure
            return HealthStatus(
                ok=False, dialect=self.dialect, latency_ms=_ms_since(started), error=type(exc).__name__
            )
        return HealthStatus(
            ok=True, dialect=self.dialect, latency_ms=_ms_since(started), schema_revision=revision
        )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _as_aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _start_of(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return _as_aware(value)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _as_date(value: date | str | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value)


db_service: DatabaseService = LazyProxy(DatabaseService)  # type: ignore[assignment]
