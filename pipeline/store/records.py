"""The seed's record API: bulk idempotent writes of blocks, transactions, addresses, prices and coins, and
the plain reads of them, as Pydantic models (never ORM objects).

Writes validate lazily and go through `store.upsert` DB_BATCH_SIZE rows at a time, in one transaction per
call (or the caller's, given `conn`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Connection, Table, select

from pipeline.errors import RecordValidationError
from pipeline.models import (
    BlockchainAddress,
    BlockchainBlock,
    BlockchainTransaction,
    CoinMetadata,
    DataIngestionLog,
    MarketPrice,
    PricePoint,
)
from pipeline.schemas import (
    BlockchainAddressData,
    BlockchainBlockData,
    BlockchainTransactionData,
    CoinMetadataData,
    DataIngestionLogData,
    MarketPriceData,
    PricePointData,
    UpsertResult,
    describe_validation_error,
)
from pipeline.store.engine import DatabaseCore, RecordT
from pipeline.store.rollups import (
    mark_chain_days,
    refresh_candles,
    refresh_daily_stats,
    refresh_pending_chain_days,
)
from pipeline.store.upsert import UpsertSpec, upsert

logger = logging.getLogger(__name__)

_SPECS = {
    model: UpsertSpec.for_table(cast("Table", model.__table__))
    for model in (
        BlockchainBlock,
        BlockchainTransaction,
        BlockchainAddress,
        MarketPrice,
        PricePoint,
        CoinMetadata,
    )
}


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


class RecordMixin(DatabaseCore):
    """Record writes and reads of `DatabaseService`."""

    # ------------------------------------------------------------------ writes

    def _bulk_upsert(
        self,
        orm: type[Any],
        model: type[RecordT],
        records: Iterable[Any],
        conn: Connection | None,
        on_written: Callable[[list[Any]], None] | None = None,
    ) -> UpsertResult:
        """Validate lazily and write DB_BATCH_SIZE rows at a time, all in one transaction.

        Memory stays flat however many records stream in, and an invalid record anywhere rolls the
        whole call back: nothing from a call that raised is written (a caller's dicts that break the
        schema are a bug to fix, not data to skip). Valid records the database refuses (a block hash
        stored at another height, a check or foreign key) or that contradict another record of their
        batch do not fail the call: the rest is written and they come back in `result.rejects`, with
        their reason, for the caller to count (the ingestors put them in the run's tally).

        `on_written`, when given, is called with every batch that inserted or changed a row, for the
        rollups those rows feed (a batch that changed nothing feeds nothing).
        """
        if conn is None:
            with self.transaction() as own:
                return self._bulk_upsert(orm, model, records, own, on_written)
        result = UpsertResult()
        validated = validate_records(model, records)
        while batch := list(islice(validated, self.batch_size)):
            batch_result = upsert(conn, _SPECS[orm], batch)
            result += batch_result
            if on_written is not None and (batch_result.inserted or batch_result.updated):
                on_written(batch)
        if result.rejects:
            logger.warning(
                "%s: %d records rejected (first: %s)",
                orm.__tablename__,
                result.rejected,
                result.rejects[0].reason,
            )
        return result

    def insert_blocks(self, blocks: Iterable[Any], *, conn: Connection | None = None) -> UpsertResult:
        """Upsert blocks (models or dicts); pass `conn` to join the caller's transaction (then call
        `refresh_chain_rollups` once the unit is done, to bring the chain's daily totals up to date).

        A block whose hash is stored at another height, or claimed by another height of the same call's
        batch, is not written and comes back in `result.rejects` with the reason.
        """
        if conn is None:
            # A call with its own transaction also rebuilds the days it touched before committing.
            with self.transaction() as own:
                result = self.insert_blocks(blocks, conn=own)
                refresh_pending_chain_days(own)
                return result
        days: dict[str, set[datetime]] = {}
        result = self._bulk_upsert(
            BlockchainBlock, BlockchainBlockData, blocks, conn, _collect(days, "coin_symbol", "time")
        )
        # In the caller's transaction the days are only marked (a few rows), and rebuilt once at the end
        # of the unit (`refresh_chain_rollups`): re-reading a day of 7,200 Ethereum blocks for every
        # page of 100 would make loading blocks several times slower.
        for coin_symbol, times in days.items():
            mark_chain_days(conn, coin_symbol, times)
        return result

    def insert_transactions(
        self, transactions: Iterable[Any], *, conn: Connection | None = None
    ) -> UpsertResult:
        """Upsert transactions (models or dicts)."""
        return self._bulk_upsert(BlockchainTransaction, BlockchainTransactionData, transactions, conn)

    def insert_addresses(self, addresses: Iterable[Any], *, conn: Connection | None = None) -> UpsertResult:
        """Upsert watched-address snapshots (models or dicts)."""
        return self._bulk_upsert(BlockchainAddress, BlockchainAddressData, addresses, conn)

    def insert_market_prices(self, prices: Iterable[Any], *, conn: Connection | None = None) -> UpsertResult:
        """Upsert daily prices (models or dicts); the analytics of the days from the first one changed
        are rebuilt in the same transaction."""
        if conn is None:
            with self.transaction() as own:
                return self.insert_market_prices(prices, conn=own)
        days: dict[str, set[date]] = {}
        result = self._bulk_upsert(
            MarketPrice, MarketPriceData, prices, conn, _collect(days, "coin_id", "price_date")
        )
        for coin_id, changed in days.items():
            refresh_daily_stats(conn, coin_id, min(changed))
        return result

    def insert_price_points(self, points: Iterable[Any], *, conn: Connection | None = None) -> UpsertResult:
        """Upsert price points (models or dicts); the candles of the buckets they touch are rebuilt in
        the same transaction."""
        if conn is None:
            with self.transaction() as own:
                return self.insert_price_points(points, conn=own)
        stamps: dict[tuple[str, str], set[datetime]] = {}
        result = self._bulk_upsert(
            PricePoint, PricePointData, points, conn, _collect(stamps, ("coin_id", "quote"), "ts")
        )
        for (coin_id, quote), touched in stamps.items():
            refresh_candles(conn, coin_id, quote, touched)
        return result

    def upsert_coins(self, coins: Iterable[Any], *, conn: Connection | None = None) -> UpsertResult:
        """Add or change coins (models or dicts)."""
        return self._bulk_upsert(CoinMetadata, CoinMetadataData, coins, conn)

    # ------------------------------------------------------------------ reads

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
        self,
        source: str | None = None,
        status: str | None = None,
        limit: int | None = 100,
        *,
        error_class: str | None = None,
    ) -> list[DataIngestionLogData]:
        """Ingestion runs, newest first (optionally of one source, status or error class)."""
        stmt = select(DataIngestionLog).order_by(
            DataIngestionLog.started_at.desc(), DataIngestionLog.id.desc()
        )
        if source:
            stmt = stmt.where(DataIngestionLog.source == source)
        if status:
            stmt = stmt.where(DataIngestionLog.status == status)
        if error_class:
            stmt = stmt.where(DataIngestionLog.error_class == error_class)
        return self._select_models(stmt.limit(limit), DataIngestionLogData)

    def get_coins(self, *, active_only: bool = False) -> list[CoinMetadataData]:
        """Known coins; `active_only` keeps those that are active and enabled for ingestion."""
        stmt = select(CoinMetadata).order_by(CoinMetadata.symbol)
        if active_only:
            stmt = stmt.where(CoinMetadata.is_active.is_(True), CoinMetadata.ingestion_enabled.is_(True))
        return self._select_models(stmt, CoinMetadataData)


def _as_aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _start_of(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return _as_aware(value)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _collect(
    into: dict[Any, set[Any]], key: str | tuple[str, ...], value: str
) -> Callable[[list[Any]], None]:
    """A batch callback that adds each record's `value` attribute to `into[its key attribute(s)]`."""

    def add(batch: list[Any]) -> None:
        for record in batch:
            k = tuple(getattr(record, a) for a in key) if isinstance(key, tuple) else getattr(record, key)
            into.setdefault(k, set()).add(getattr(record, value))

    return add
