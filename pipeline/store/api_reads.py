"""The reads the REST API needs and the rest of the store lacks: keyset pages and "as of" times.

Every list of the API is read a page at a time by a keyset: the page's rows follow the last key of the
previous page in a stable, unique order, so paging never skips or repeats a row that existed when it
began, however many rows are written meanwhile. The orders follow the indexes:

- transactions of a chain: (block_id desc, tx_hash asc), on the (coin_symbol, block_id) index (the
  hashes of one block are sorted in memory, a block at a time);
- blocks of a chain: block_id desc, on the primary key;
- runs: (started_at desc, id desc), on the started_at index (or the (status, started_at) one);
- data-quality findings: id desc, on the primary key.

The `*_updated_at` functions give the newest `updated_at` of the rows a response reflects (its
`data_as_of`, and so its Last-Modified), each a range of an index: never a walk of a large table.
Reads that already exist elsewhere (daily prices, price points, candles, analytics) are reused by the API
as they are; only their "as of" is read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import Select, func, or_, select

from pipeline.columns import epoch_us_to_datetime
from pipeline.models import (
    BlockchainBlock,
    BlockchainTransaction,
    ChainDailyStats,
    CoinMetadata,
    DailyPriceStats,
    DataIngestionLog,
    DataQualityCheck,
    MarketPrice,
    PriceCandle,
    PricePoint,
)
from pipeline.schemas import BlockchainBlockData, BlockchainTransactionData, DataIngestionLogData
from pipeline.store.engine import DatabaseCore

ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T", int, datetime)


@dataclass(frozen=True)
class Stamped(Generic[ModelT]):
    """A stored row as its record, with the time it was last written (`updated_at`)."""

    record: ModelT
    updated_at: datetime


@dataclass(frozen=True)
class RunFilter:
    """Which runs a page lists: any of these values per column (empty: all), started in [since, until]."""

    statuses: Sequence[str] = ()
    sources: Sequence[str] = ()
    coins: Sequence[str] = ()
    data_types: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None


def _aware(value: datetime | int | None) -> datetime | None:
    """A timestamp read from an aggregate (SQLite may hand back the stored epoch microseconds)."""
    if value is None or isinstance(value, datetime):
        return value
    return epoch_us_to_datetime(int(value))


def _lowest(*bounds: T | None) -> T | None:
    """The tightest of some upper bounds (None when there is none). Statements get one bound per column:
    given two, SQLite seeks the index by the first and filters by the second, reading the rows between."""
    present = [b for b in bounds if b is not None]
    return min(present) if present else None


def newest(times: Sequence[datetime | None]) -> datetime | None:
    """The latest of some times, ignoring None (None when there is none)."""
    present = [t for t in times if t is not None]
    return max(present) if present else None


class ApiReadMixin(DatabaseCore):
    """Keyset pages and "as of" reads of `DatabaseService` for the REST API."""

    def _stamped(self, stmt: Select[Any], model: type[ModelT]) -> list[Stamped[ModelT]]:
        """Run an ORM select of one table and return each row as its record and `updated_at`."""
        with self.session() as session:
            return [Stamped(model.model_validate(row), row.updated_at) for row in session.scalars(stmt)]

    def _newest(self, column: Any, *where: Any) -> datetime | None:
        with self.engine.connect() as conn:
            return _aware(conn.scalar(select(func.max(column)).where(*where)))

    # ------------------------------------------------------------------ chains

    def transactions_page(
        self,
        coin_symbol: str,
        *,
        limit: int,
        block_id: int | None = None,
        after: tuple[int, str] | None = None,
        top: int | None = None,
    ) -> list[Stamped[BlockchainTransactionData]]:
        """Up to `limit` stored transactions of a chain (or of one block), by (block_id desc, tx_hash asc),
        following the key `after` (block_id, tx_hash) and at or below block `top`."""
        t = BlockchainTransaction
        stmt = select(t).where(t.coin_symbol == coin_symbol)
        if block_id is not None:
            stmt = stmt.where(t.block_id == block_id)
        upper = _lowest(top, after[0] if after is not None else None)
        if upper is not None:
            stmt = stmt.where(t.block_id <= upper)  # one bound: SQLite seeks the index by one only
        if after is not None:
            height, tx_hash = after
            stmt = stmt.where(or_(t.block_id < height, t.tx_hash > tx_hash))  # the rest of the cursor's block
        stmt = stmt.order_by(t.block_id.desc(), t.tx_hash).limit(limit)
        return self._stamped(stmt, BlockchainTransactionData)

    def top_transaction_block(self, coin_symbol: str) -> int | None:
        """The highest block holding a stored transaction of a chain (one index seek)."""
        t = BlockchainTransaction
        with self.engine.connect() as conn:
            return conn.scalar(select(func.max(t.block_id)).where(t.coin_symbol == coin_symbol))

    def get_transaction(self, coin_symbol: str, tx_hash: str) -> Stamped[BlockchainTransactionData] | None:
        """One stored transaction by its hash, or None."""
        t = BlockchainTransaction
        found = self._stamped(
            select(t).where(t.coin_symbol == coin_symbol, t.tx_hash == tx_hash), BlockchainTransactionData
        )
        return found[0] if found else None

    def blocks_page(
        self,
        coin_symbol: str,
        *,
        limit: int,
        below: int | None = None,
        highest: int | None = None,
        lowest: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[Stamped[BlockchainBlockData]]:
        """Up to `limit` stored blocks of a chain, highest first, below height `below`, within heights
        [lowest, highest] and block times [start, end] (each bound optional)."""
        b = BlockchainBlock
        stmt = select(b).where(b.coin_symbol == coin_symbol)
        upper = _lowest(highest, below - 1 if below is not None else None)
        if upper is not None:
            stmt = stmt.where(b.block_id <= upper)
        if lowest is not None:
            stmt = stmt.where(b.block_id >= lowest)
        if start is not None:
            stmt = stmt.where(b.time >= start)
        if end is not None:
            stmt = stmt.where(b.time <= end)
        return self._stamped(stmt.order_by(b.block_id.desc()).limit(limit), BlockchainBlockData)

    # ------------------------------------------------------------------ runs

    def runs_page(
        self, runs: RunFilter, *, limit: int, after: tuple[datetime, int] | None = None
    ) -> list[Stamped[DataIngestionLogData]]:
        """Up to `limit` runs matching the filter, newest first by (started_at, id), following the key
        `after` (started_at, id)."""
        r = DataIngestionLog
        stmt = select(r)
        for column, values in (
            (r.status, runs.statuses),
            (r.source, runs.sources),
            (r.coin, runs.coins),
            (r.data_type, runs.data_types),
        ):
            if values:
                stmt = stmt.where(column.in_(list(values)))
        if runs.since is not None:
            stmt = stmt.where(r.started_at >= runs.since)
        upper = _lowest(runs.until, after[0] if after is not None else None)
        if upper is not None:
            stmt = stmt.where(r.started_at <= upper)
        if after is not None:
            started, run_id = after
            stmt = stmt.where(or_(r.started_at < started, r.id < run_id))
        stmt = stmt.order_by(r.started_at.desc(), r.id.desc()).limit(limit)
        return self._stamped(stmt, DataIngestionLogData)

    def runs_updated_at(self, run_ids: Sequence[int]) -> datetime | None:
        """The newest `updated_at` of some runs (None for none)."""
        if not run_ids:
            return None
        return self._newest(DataIngestionLog.updated_at, DataIngestionLog.id.in_(list(run_ids)))

    # ------------------------------------------------------------------ findings

    def findings_page(
        self,
        *,
        limit: int,
        subjects: Sequence[str] = (),
        severity: str | None = None,
        run_id: int | None = None,
        since: datetime | None = None,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        """Up to `limit` stored data-quality findings (column -> value), newest first by id, below id
        `before`, about any of `subjects`, of one severity or run, made since a time."""
        q = DataQualityCheck
        stmt = select(q)
        if subjects:
            stmt = stmt.where(q.subject.in_(list(subjects)))
        if severity is not None:
            stmt = stmt.where(q.severity == severity)
        if run_id is not None:
            stmt = stmt.where(q.run_id == run_id)
        if since is not None:
            stmt = stmt.where(q.created_at >= since)
        if before is not None:
            stmt = stmt.where(q.id < before)
        stmt = stmt.order_by(q.id.desc()).limit(limit)
        columns = [c.name for c in q.__table__.columns]
        with self.session() as session:
            return [{name: getattr(row, name) for name in columns} for row in session.scalars(stmt)]

    # ------------------------------------------------------------------ as of

    def coins_updated_at(self) -> datetime | None:
        """The newest change to the coins (their bookmarks move with every batch the ingestors commit)."""
        return self._newest(CoinMetadata.updated_at)

    def pipeline_updated_at(self) -> datetime | None:
        """The newest change the pipeline recorded, for reports over many tables (coverage, gaps,
        statistics): a coin's bookmarks, or the newest run's start or its last write. Index seeks only."""
        r = DataIngestionLog
        with self.engine.connect() as conn:
            newest_run = conn.execute(
                select(r.started_at, r.updated_at).order_by(r.started_at.desc()).limit(1)
            ).first()
        runs = list(newest_run) if newest_run is not None else []
        return newest([self.coins_updated_at(), *runs])

    def market_prices_updated_at(self, coin_id: str, first: date, last: date) -> datetime | None:
        """The newest `updated_at` of a coin's daily prices in [first, last]."""
        m = MarketPrice
        return self._newest(m.updated_at, m.coin_id == coin_id, m.price_date >= first, m.price_date <= last)

    def price_points_updated_at(
        self, coin_id: str, quote: str, low: datetime, high: datetime
    ) -> datetime | None:
        """The newest `updated_at` of a coin's price points in a quote with ts in [low, high]."""
        p = PricePoint
        return self._newest(p.updated_at, p.coin_id == coin_id, p.quote == quote, p.ts >= low, p.ts <= high)

    def candles_updated_at(
        self, coin_id: str, quote: str, interval: str, low: datetime, high: datetime
    ) -> datetime | None:
        """The newest `updated_at` of a coin's candles of an interval with start in [low, high]."""
        c = PriceCandle
        return self._newest(
            c.updated_at,
            c.coin_id == coin_id,
            c.quote == quote,
            c.interval == interval,
            c.start >= low,
            c.start <= high,
        )

    def daily_stats_updated_at(self, coin_ids: Sequence[str], first: date, last: date) -> datetime | None:
        """The newest `updated_at` of the coins' daily analytics in [first, last]."""
        d = DailyPriceStats
        return self._newest(d.updated_at, d.coin_id.in_(list(coin_ids)), d.day >= first, d.day <= last)

    def chain_days_updated_at(self, coin_symbol: str, first: date, last: date) -> datetime | None:
        """The newest `updated_at` of a chain's daily totals in [first, last]."""
        c = ChainDailyStats
        return self._newest(c.updated_at, c.coin_symbol == coin_symbol, c.day >= first, c.day <= last)
