"""Row counts, coverage per coin, size on disk and the health ping of the database (`crypto-pipeline stats`,
the dashboard's overview and storage pages)."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from pipeline.models import (
    BlockchainAddress,
    BlockchainBlock,
    BlockchainTransaction,
    CoinMetadata,
    DataIngestionLog,
    MarketPrice,
)
from pipeline.schemas import DatabaseStats, DateCoverage, HealthStatus, HeightCoverage
from pipeline.store.schema import SchemaMixin

_TABLES = {
    "blockchain_blocks": BlockchainBlock,
    "blockchain_transactions": BlockchainTransaction,
    "blockchain_addresses": BlockchainAddress,
    "market_prices": MarketPrice,
    "data_ingestion_logs": DataIngestionLog,
    "coin_metadata": CoinMetadata,
}


class StatsMixin(SchemaMixin):
    """Stats and health of `DatabaseService` (the health check reports the schema revision)."""

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
        """Ping the database; never raises. A SQLite file that does not exist yet is reported as a database
        without schema (the dashboard then says to run init-db) instead of being created by the ping."""
        started = time.perf_counter()
        try:
            missing = self.database_file is not None and not self.database_file.exists()
            revision = None if missing else self.schema_revision()
        except Exception as exc:  # noqa: BLE001 - a health check reports every failure
            return HealthStatus(
                ok=False, dialect=self.dialect, latency_ms=_ms_since(started), error=type(exc).__name__
            )
        return HealthStatus(
            ok=True, dialect=self.dialect, latency_ms=_ms_since(started), schema_revision=revision
        )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _as_date(value: date | str | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value)
