"""Price points in several quotes, the candles built from them, and the daily analytics rollups.

The rollups are kept current by the writes themselves, in the caller's transaction: storing price points
rebuilds the candles of the buckets they touch, storing daily prices the analytics of the days from the
first one touched, and storing blocks the totals of the days they fall on (`pipeline.rollups` holds the
arithmetic). Reading a year of candles or of chain totals reads only the rollup rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, delete, func, select

from pipeline import rollups
from pipeline.models import (
    BlockchainBlock,
    ChainDailyStats,
    ChainDayPending,
    DailyPriceStats,
    MarketPrice,
    PriceCandle,
    PricePoint,
)
from pipeline.ranges import contiguous_ranges
from pipeline.schemas import (
    CandleData,
    ChainDailyStatsData,
    DailyPriceStatsData,
    MarketPriceData,
    PricePointData,
)
from pipeline.store.engine import DatabaseCore, dialect_insert
from pipeline.store.upsert import UpsertSpec, upsert

_CANDLES = UpsertSpec.for_table(cast("Table", PriceCandle.__table__))
_DAILY = UpsertSpec.for_table(cast("Table", DailyPriceStats.__table__))
_CHAIN = UpsertSpec.for_table(cast("Table", ChainDailyStats.__table__))
GRANULARITIES = ("5m", "hourly", "daily")
# A re-fetched block (a reorganisation) can move by up to Bitcoin's two-hour time tolerance, so the
# day on either side of a block stored near midnight is rebuilt too.
_BLOCK_TIME_SLACK = timedelta(hours=2)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), UTC)


def _bound(value: date | datetime, *, end: bool) -> datetime:
    """A datetime bound from a date (the day's start, or the next day's start for an end) or datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return _day_start(value) + (timedelta(days=1) if end else timedelta(0))


# ---------------------------------------------------------------- maintenance (caller's transaction)


def _serialize(conn: Connection, key: str) -> None:
    """One rebuild of a series at a time, until the transaction ends. A rebuild reads the points (or
    closes) it aggregates; on PostgreSQL another worker's uncommitted points are invisible to it, so two
    writers of one series could each overwrite a shared candle with a total that lacks the other's
    points. Waiting here makes the later rebuild start after the earlier transaction committed, so the
    last one sees both. SQLite's writers are already serialized (BEGIN IMMEDIATE)."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))


def refresh_candles(conn: Connection, coin_id: str, quote: str, stamps: Iterable[datetime]) -> int:
    """Rebuild every candle whose samples include one of `stamps` (and the next hour's, whose open is
    the last sample before it). Returns the number of 1h candles rebuilt."""
    hours: set[datetime] = set()
    for ts in stamps:
        hour = rollups.bucket_start(ts, "1h")
        hours.update((hour, hour + rollups.HOUR))
    if not hours:
        return 0
    _serialize(conn, f"candles:{coin_id}:{quote}")
    key = (PricePoint.coin_id == coin_id) & (PricePoint.quote == quote)
    rows = conn.execute(
        select(PricePoint.ts, PricePoint.price, PricePoint.volume_24h, PricePoint.sampling)
        .where(key, PricePoint.ts >= min(hours) - rollups.HOUR, PricePoint.ts < max(hours) + rollups.HOUR)
        .order_by(PricePoint.ts)
    )
    samples = [rollups.Sample(*row) for row in rows]
    hourly = rollups.hourly_candles(samples, hours)
    _write_candles(conn, coin_id, quote, hourly)
    for interval in ("4h", "1d", "1w"):
        starts = {rollups.bucket_start(h, interval) for h in hours}
        size = rollups.INTERVALS[interval]
        parts = _candles_between(
            conn, coin_id, quote, rollups.PARTS[interval], min(starts), max(starts) + size
        )
        built = rollups.aggregate_candles(parts, interval)
        _write_candles(conn, coin_id, quote, [c for c in built if c.start in starts])
    return len(hourly)


def _candles_between(
    conn: Connection, coin_id: str, quote: str, interval: str, start: datetime, end: datetime
) -> list[rollups.Candle]:
    rows = conn.execute(
        select(
            PriceCandle.interval,
            PriceCandle.start,
            PriceCandle.open,
            PriceCandle.high,
            PriceCandle.low,
            PriceCandle.close,
            PriceCandle.volume,
            PriceCandle.samples,
            PriceCandle.sampling,
        )
        .where(
            PriceCandle.coin_id == coin_id,
            PriceCandle.quote == quote,
            PriceCandle.interval == interval,
            PriceCandle.start >= start,
            PriceCandle.start < end,
        )
        .order_by(PriceCandle.start)
    )
    return [rollups.Candle(*row) for row in rows]


def _write_candles(conn: Connection, coin_id: str, quote: str, candles: Sequence[rollups.Candle]) -> None:
    if candles:
        upsert(conn, _CANDLES, [CandleData(coin_id=coin_id, quote=quote, **c.__dict__) for c in candles])


def refresh_daily_stats(conn: Connection, coin_id: str, first_day: date) -> None:
    """Rebuild the analytics of `coin_id`'s days from `first_day` on (a return, volatility and drawdown
    depend on the days before them, so every later day can change)."""
    _serialize(conn, f"daily-stats:{coin_id}")
    window = timedelta(days=rollups.VOLATILITY_WINDOW)
    closes = dict(
        conn.execute(
            select(MarketPrice.price_date, MarketPrice.price_usd).where(
                MarketPrice.coin_id == coin_id, MarketPrice.price_date >= first_day - window
            )
        ).all()
    )
    peak_before = conn.execute(
        select(DailyPriceStats.running_peak)
        .where(DailyPriceStats.coin_id == coin_id, DailyPriceStats.day < first_day)
        .order_by(DailyPriceStats.day.desc())
        .limit(1)
    ).scalar()
    stats = rollups.daily_stats(closes, first_day, peak_before)
    for chunk in _chunks(stats, 5000):
        upsert(conn, _DAILY, [DailyPriceStatsData(coin_id=coin_id, **s.__dict__) for s in chunk])


def _block_days(stamps: Iterable[datetime]) -> set[date]:
    days: set[date] = set()
    for ts in stamps:
        days.update({(ts - _BLOCK_TIME_SLACK).date(), ts.date(), (ts + _BLOCK_TIME_SLACK).date()})
    return days


def mark_chain_days(conn: Connection, coin_symbol: str, stamps: Iterable[datetime]) -> None:
    """Mark the days of these block times (and the neighbouring day within two hours of midnight) as
    pending a rebuild, in the caller's transaction: a few rows, however many blocks."""
    rows = [{"coin_symbol": coin_symbol, "day": day} for day in sorted(_block_days(stamps))]
    if rows:
        conn.execute(dialect_insert(conn, ChainDayPending).values(rows).on_conflict_do_nothing())


def refresh_pending_chain_days(conn: Connection, coin_symbol: str | None = None) -> int:
    """Rebuild the chain days marked pending (of one chain, or all) and clear their marks; returns the
    number of days rebuilt. Run once per unit, so a backfill of many pages re-reads each day once.

    The marks are deleted first and the blocks read after: a unit that stores blocks of such a day
    meanwhile writes its mark again (on PostgreSQL after waiting for this transaction), so a day is never
    left unmarked with totals that miss blocks."""
    stmt = delete(ChainDayPending)
    if coin_symbol is not None:
        stmt = stmt.where(ChainDayPending.coin_symbol == coin_symbol)
    pending: dict[str, list[date]] = {}
    for symbol, day in conn.execute(stmt.returning(ChainDayPending.coin_symbol, ChainDayPending.day)):
        pending.setdefault(symbol, []).append(day)
    for symbol, days in pending.items():
        rebuild_chain_days(conn, symbol, days)
    return sum(len(days) for days in pending.values())


def refresh_chain_days(conn: Connection, coin_symbol: str, stamps: Iterable[datetime]) -> None:
    """Rebuild the totals of the days the given block times fall on (and of the neighbouring day when a
    time is within two hours of midnight)."""
    rebuild_chain_days(conn, coin_symbol, _block_days(stamps))


# Days of blocks read per query: a week of Ethereum is about 50,000 rows.
_CHAIN_DAYS_PER_READ = 7


def rebuild_chain_days(conn: Connection, coin_symbol: str, days: Iterable[date]) -> None:
    """Rebuild the totals of these days from the chain's blocks, a week of blocks per read."""
    ordinals = sorted(d.toordinal() for d in days)
    spans = [
        (start, min(start + _CHAIN_DAYS_PER_READ - 1, high))
        for low, high in contiguous_ranges(ordinals)
        for start in range(low, high + 1, _CHAIN_DAYS_PER_READ)
    ]
    for low, high in spans:
        first, last = date.fromordinal(low), date.fromordinal(high)
        rows = conn.execute(
            select(
                BlockchainBlock.block_id,
                BlockchainBlock.time,
                BlockchainBlock.transaction_count,
                BlockchainBlock.size,
                BlockchainBlock.fee_total,
                BlockchainBlock.fee_total_usd,
            ).where(
                BlockchainBlock.coin_symbol == coin_symbol,
                BlockchainBlock.time >= _day_start(first),
                BlockchainBlock.time < _day_start(last) + timedelta(days=1),
            )
        ).mappings()
        by_day: dict[date, list[Any]] = {}
        for row in rows:
            by_day.setdefault(row["time"].date(), []).append(row)
        totals = [
            ChainDailyStatsData(coin_symbol=coin_symbol, **total.__dict__)
            for day in sorted(by_day)
            if (total := rollups.chain_day(day, by_day[day])) is not None
        ]
        for chunk in _chunks(totals, 5000):
            upsert(conn, _CHAIN, chunk)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# ---------------------------------------------------------------- the service's methods


class RollupMixin(DatabaseCore):
    """Price points, candles and analytics of `DatabaseService`."""

    def get_price_points(
        self,
        *,
        coin_id: str,
        start: date | datetime,
        end: date | datetime,
        quote: str = "usd",
        granularity: str = "hourly",
    ) -> list[PricePointData]:
        """A coin's price points in `quote` between `start` and `end` (dates include the whole end day),
        oldest first. `hourly`: the last sample of each hour; `5m`: every stored intraday sample;
        `daily`: the 00:00 UTC points (for USD the seed's `market_prices`)."""
        if granularity not in GRANULARITIES:
            msg = f"granularity must be one of {', '.join(GRANULARITIES)}, not {granularity!r}"
            raise ValueError(msg)
        low, high = _bound(start, end=False), _bound(end, end=not isinstance(end, datetime))
        if granularity == "daily" and quote == "usd":
            prices = self._select_models(
                select(MarketPrice)
                .where(
                    MarketPrice.coin_id == coin_id,
                    MarketPrice.price_date >= low.date(),
                    MarketPrice.price_date <= (high - timedelta(microseconds=1)).date(),
                )
                .order_by(MarketPrice.price_date),
                MarketPriceData,
            )
            return [_daily_point(p) for p in prices]
        stmt = select(PricePoint).where(
            PricePoint.coin_id == coin_id, PricePoint.quote == quote, PricePoint.ts >= low
        )
        stmt = stmt.where(PricePoint.ts <= high if isinstance(end, datetime) else PricePoint.ts < high)
        if granularity == "daily":
            # The 00:00 UTC points, whichever job stored them (a daily point and an hourly point at
            # midnight are one row): a primary-key lookup per day of the range.
            first = _day_start(low.date()) + (timedelta(days=1) if low.time() != time(0) else timedelta(0))
            midnights = [first + timedelta(days=i) for i in range(max(0, (high - first).days + 1))]
            stmt = stmt.where(PricePoint.ts.in_([m for m in midnights if m <= high]))
        else:
            stmt = stmt.where(PricePoint.sampling != "1d")
        points = self._select_models(stmt.order_by(PricePoint.ts), PricePointData)
        if granularity == "hourly":
            last: dict[datetime, PricePointData] = {}
            for point in points:
                last[rollups.bucket_start(point.ts, "1h")] = point
            points = list(last.values())
        return points

    def get_latest_price(self, coin_id: str, quote: str = "usd") -> PricePointData | None:
        """The newest stored intraday point of a coin in a quote (the latest-price job's), or None."""
        found = self._select_models(
            select(PricePoint)
            .where(PricePoint.coin_id == coin_id, PricePoint.quote == quote, PricePoint.sampling != "1d")
            .order_by(PricePoint.ts.desc())
            .limit(1),
            PricePointData,
        )
        return found[0] if found else None

    def price_point_hours(self, coin_id: str, quote: str, start: datetime, end: datetime) -> set[datetime]:
        """The hour starts in [start, end) that hold at least one intraday sample."""
        with self.engine.connect() as conn:
            stamps = conn.scalars(
                select(PricePoint.ts).where(
                    PricePoint.coin_id == coin_id,
                    PricePoint.quote == quote,
                    PricePoint.sampling != "1d",
                    PricePoint.ts >= start,
                    PricePoint.ts < end,
                )
            )
            return {rollups.bucket_start(ts, "1h") for ts in stamps}

    def price_point_quotes(self) -> list[tuple[str, str]]:
        """The (coin_id, quote) pairs that have candles."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(PriceCandle.coin_id, PriceCandle.quote)
                .distinct()
                .order_by(PriceCandle.coin_id, PriceCandle.quote)
            )
            return [(r[0], r[1]) for r in rows]

    def get_candles(
        self,
        *,
        coin_id: str,
        interval: str = "1d",
        start: date | datetime,
        end: date | datetime,
        quote: str = "usd",
    ) -> list[CandleData]:
        """A coin's candles of `interval` whose start lies between `start` and `end` (a date end includes
        its whole day), oldest first."""
        if interval not in rollups.INTERVALS:
            msg = f"interval must be one of {', '.join(rollups.INTERVALS)}, not {interval!r}"
            raise ValueError(msg)
        low, high = _bound(start, end=False), _bound(end, end=not isinstance(end, datetime))
        stmt = select(PriceCandle).where(
            PriceCandle.coin_id == coin_id,
            PriceCandle.quote == quote,
            PriceCandle.interval == interval,
            PriceCandle.start >= low,
        )
        stmt = stmt.where(
            PriceCandle.start <= high if isinstance(end, datetime) else PriceCandle.start < high
        )
        return self._select_models(stmt.order_by(PriceCandle.start), CandleData)

    def get_daily_price_stats(
        self, coin_ids: Sequence[str], start: date, end: date
    ) -> list[DailyPriceStatsData]:
        """Daily analytics of the coins' USD closes in [start, end], by coin then day."""
        return self._select_models(
            select(DailyPriceStats)
            .where(
                DailyPriceStats.coin_id.in_(list(coin_ids)),
                DailyPriceStats.day >= start,
                DailyPriceStats.day <= end,
            )
            .order_by(DailyPriceStats.coin_id, DailyPriceStats.day),
            DailyPriceStatsData,
        )

    def get_chain_daily_stats(self, coin_symbol: str, start: date, end: date) -> list[ChainDailyStatsData]:
        """A chain's daily totals in [start, end], oldest first."""
        return self._select_models(
            select(ChainDailyStats)
            .where(
                ChainDailyStats.coin_symbol == coin_symbol,
                ChainDailyStats.day >= start,
                ChainDailyStats.day <= end,
            )
            .order_by(ChainDailyStats.day),
            ChainDailyStatsData,
        )

    def refresh_chain_rollups(self, coin_symbol: str | None = None) -> int:
        """Rebuild the chain days pending since their blocks changed (the ingestor calls this at the end
        of each unit); returns the number of days rebuilt."""
        with self.transaction() as conn:
            return refresh_pending_chain_days(conn, coin_symbol)

    def rebuild_rollups(self) -> dict[str, int]:
        """Rebuild every candle and analytics row from the raw rows (after a hand edit of the raw
        tables, or to check them): per series, its rollup rows are deleted and built again in one
        transaction, and rollups of series without raw rows left are deleted. Returns the rows of each
        rollup table."""
        with self.engine.connect() as conn:
            pairs = {(c, q) for c, q in conn.execute(select(PricePoint.coin_id, PricePoint.quote).distinct())}
            pairs |= {
                (c, q) for c, q in conn.execute(select(PriceCandle.coin_id, PriceCandle.quote).distinct())
            }
            priced = set(conn.scalars(select(MarketPrice.coin_id).distinct()))
            priced |= set(conn.scalars(select(DailyPriceStats.coin_id).distinct()))
            chains = set(conn.scalars(select(BlockchainBlock.coin_symbol).distinct()))
            chains |= set(conn.scalars(select(ChainDailyStats.coin_symbol).distinct()))
        for coin_id, quote in sorted(pairs):
            with self.transaction() as conn:
                _serialize(conn, f"candles:{coin_id}:{quote}")
                conn.execute(
                    delete(PriceCandle).where(PriceCandle.coin_id == coin_id, PriceCandle.quote == quote)
                )
                stamps = conn.scalars(
                    select(PricePoint.ts).where(PricePoint.coin_id == coin_id, PricePoint.quote == quote)
                ).all()
                # Month by month, so that memory stays bounded on long 5-minute histories.
                for chunk in _chunks(sorted(stamps), 24 * 31):
                    refresh_candles(conn, coin_id, quote, chunk)
        for coin_id in sorted(priced):
            with self.transaction() as conn:
                _serialize(conn, f"daily-stats:{coin_id}")
                conn.execute(delete(DailyPriceStats).where(DailyPriceStats.coin_id == coin_id))
                refresh_daily_stats(conn, coin_id, date.min + timedelta(days=rollups.VOLATILITY_WINDOW))
        for symbol in sorted(chains):
            with self.transaction() as conn:
                conn.execute(delete(ChainDayPending).where(ChainDayPending.coin_symbol == symbol))
                conn.execute(delete(ChainDailyStats).where(ChainDailyStats.coin_symbol == symbol))
                rebuild_chain_days(conn, symbol, block_days(conn, symbol))
        with self.engine.connect() as conn:
            return {
                table.__tablename__: conn.execute(select(func.count()).select_from(table)).scalar_one()
                for table in (PriceCandle, DailyPriceStats, ChainDailyStats)
            }


def block_days(conn: Connection, coin_symbol: str) -> set[date]:
    """The UTC days a chain's stored blocks fall on, read as a stream (a year of Ethereum is 2.6 million
    block times: never held at once)."""
    stmt = select(BlockchainBlock.time).where(BlockchainBlock.coin_symbol == coin_symbol)
    # Options on the statement, not the connection: they must not outlive this read.
    return {ts.date() for ts in conn.scalars(stmt.execution_options(yield_per=50_000))}


def _daily_point(price: MarketPriceData) -> PricePointData:
    """A `market_prices` row as a daily USD point."""
    return PricePointData(
        coin_id=price.coin_id,
        quote="usd",
        ts=_day_start(price.price_date),
        price=price.price_usd,
        volume_24h=price.volume_usd,
        market_cap=price.market_cap_usd,
        sampling="1d",
    )
