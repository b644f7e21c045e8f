"""Coverage computed from the data itself: which coin-days and block heights we hold, and what is missing.

Run logs say which jobs ran; this module says which data exists. A price day is `present`, `missing`,
`failed` (missing, and the last run that covered it failed) or `unavailable` (before the coin's listing,
beyond the plan's history, or in the future). Block coverage is the ranges of heights held and the holes
between the lowest and highest stored height; transaction coverage compares stored transactions with
each block's `transaction_count` inside the transaction window.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from datetime import date, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel

from pipeline.config import Settings
from pipeline.database import DatabaseService
from pipeline.ranges import HOUR, contiguous_ranges, earliest_servable, hour_floor, utcnow
from pipeline.schemas import CoinMetadataData, IngestionStatus
from pipeline.store.coverage import height_islands, price_run_outcomes

PRICE_DATA_TYPES = ("prices", "price_by_date")


class CellState(StrEnum):
    """The state of one coin-day."""

    PRESENT = "present"
    MISSING = "missing"
    FAILED = "failed"
    UNAVAILABLE = "unavailable"


class DayRange(BaseModel):
    """Consecutive days in one state."""

    start: date
    end: date
    state: CellState

    @property
    def days(self) -> int:
        """Days in the range."""
        return (self.end - self.start).days + 1


class PriceCoverage(BaseModel):
    """Every day of a coin's range, compressed into runs of equal state."""

    coin_id: str
    start: date
    end: date
    ranges: list[DayRange]

    def days_in(self, state: CellState) -> list[date]:
        """Each day in the given state."""
        return [r.start + timedelta(days=i) for r in self.ranges if r.state == state for i in range(r.days)]

    @property
    def gaps(self) -> list[DayRange]:
        """Ranges that should hold data and do not (missing or failed)."""
        return [r for r in self.ranges if r.state in (CellState.MISSING, CellState.FAILED)]


class HeightRange(BaseModel):
    """An inclusive range of block heights."""

    start: int
    end: int

    @property
    def size(self) -> int:
        """Heights in the range."""
        return self.end - self.start + 1


class TransactionGap(HeightRange):
    """Consecutive blocks with fewer stored transactions than their count."""

    missing: int  # transactions not stored
    total: int  # transactions of these blocks (what re-reading them whole costs)


class BlockCoverage(BaseModel):
    """The heights a chain holds, and the holes between its lowest and highest stored height."""

    coin_symbol: str
    chain: str
    held: list[HeightRange]
    holes: list[HeightRange]
    incomplete_transactions: list[TransactionGap]

    @property
    def missing_transactions(self) -> int:
        """Transactions missing in the window, in all."""
        return sum(gap.missing for gap in self.incomplete_transactions)


def _compress(days: list[tuple[date, CellState]]) -> list[DayRange]:
    ranges: list[DayRange] = []
    for day, state in days:
        if ranges and ranges[-1].state == state and ranges[-1].end + timedelta(days=1) == day:
            ranges[-1].end = day
        else:
            ranges.append(DayRange(start=day, end=day, state=state))
    return ranges


def _failed_days(db: DatabaseService, coin_id: str, missing: list[date]) -> set[date]:
    """Missing days whose most recent covering run failed."""
    if not missing:
        return set()
    last_status: dict[date, str] = {}
    for start, end, status in price_run_outcomes(db, coin_id, missing[0], missing[-1], PRICE_DATA_TYPES):
        for day in missing[bisect_left(missing, start) : bisect_right(missing, end)]:
            last_status[day] = status
    return {day for day, status in last_status.items() if status == IngestionStatus.FAILED}


def missing_price_days(db: DatabaseService, coin_id: str, low: date, high: date) -> list[date]:
    """Days in [low, high] with no stored price, oldest first."""
    held = db.price_dates(coin_id, low, high)
    days = (low + timedelta(days=i) for i in range((high - low).days + 1))
    return [day for day in days if day not in held]


def missing_price_hours(
    db: DatabaseService, coin_id: str, quote: str, start: datetime, end: datetime
) -> list[datetime]:
    """Hour starts in [start, end) without an intraday price point, oldest first; the hour still under
    way is never missing (its point is not due yet)."""
    end = min(end, hour_floor(utcnow()))
    held = db.price_point_hours(coin_id, quote, start, end)
    hours = (start + HOUR * i for i in range(max(0, int((end - start) / HOUR))))
    return [hour for hour in hours if hour not in held]


def hourly_window_gaps(
    db: DatabaseService, settings: Settings, coin: CoinMetadataData, quote: str, now: datetime | None = None
) -> list[datetime]:
    """The hours of the HOURLY_DAYS window without a price point in `quote`, oldest first.

    The window's first day is left out when only partly inside (the incremental run starts the window
    there), and so are days the plan cannot serve. A series not started yet (no point in that quote)
    has no gaps: its first incremental run fetches the whole window, and a backfill of it would fetch
    it twice.
    """
    now = now or utcnow()
    coin_id = coin.coingecko_id or coin.symbol.lower()
    if db.get_latest_price(coin_id, quote) is None:
        return []
    first_day = (now - timedelta(days=settings.hourly_days)).date() + timedelta(days=1)
    low = max(first_day, earliest_servable(coin, settings, now.date()))
    start = datetime.combine(low, datetime.min.time(), now.tzinfo)
    return missing_price_hours(db, coin_id, quote, start, hour_floor(now))


def price_coverage(
    db: DatabaseService, settings: Settings, coin: CoinMetadataData, start: date, end: date
) -> PriceCoverage:
    """The state of every day of [start, end] for one coin."""
    coin_id = coin.coingecko_id or coin.symbol.lower()
    today = utcnow().date()
    first_servable = earliest_servable(coin, settings, today)
    present = db.price_dates(coin_id, start, end)
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    missing = [d for d in days if d not in present and first_servable <= d <= today]
    failed = _failed_days(db, coin_id, missing)
    states = []
    for day in days:
        if day in present:
            states.append((day, CellState.PRESENT))
        elif day < first_servable or day > today:
            states.append((day, CellState.UNAVAILABLE))
        else:
            states.append((day, CellState.FAILED if day in failed else CellState.MISSING))
    return PriceCoverage(coin_id=coin_id, start=start, end=end, ranges=_compress(states))


def held_height_ranges(db: DatabaseService, coin_symbol: str) -> list[HeightRange]:
    """Islands of consecutive stored heights, found in SQL (height - row_number is constant per island)."""
    return [HeightRange(start=low, end=high) for low, high in height_islands(db, coin_symbol)]


def holes_between(held: list[HeightRange]) -> list[HeightRange]:
    """The gaps between consecutive held ranges."""
    return [HeightRange(start=a.end + 1, end=b.start - 1) for a, b in zip(held, held[1:], strict=False)]


def transaction_gaps(db: DatabaseService, coin_symbol: str, low: int, high: int) -> list[TransactionGap]:
    """Ranges of heights in [low, high] with fewer stored transactions than the block says."""
    counts = {
        height: (expected, stored)
        for height, expected, stored in db.transaction_deficits(coin_symbol, low, high)
    }
    gaps = []
    for a, b in contiguous_ranges(counts):
        in_range = [counts[h] for h in range(a, b + 1)]
        gaps.append(
            TransactionGap(
                start=a, end=b, missing=sum(e - s for e, s in in_range), total=sum(e for e, _ in in_range)
            )
        )
    return gaps


def block_coverage(db: DatabaseService, settings: Settings, coin: CoinMetadataData) -> BlockCoverage:
    """Held heights, holes, and incomplete transactions inside the transaction window."""
    held = held_height_ranges(db, coin.symbol)
    incomplete: list[TransactionGap] = []
    if held and settings.TRANSACTIONS_WINDOW_BLOCKS:
        top = held[-1].end
        incomplete = transaction_gaps(
            db, coin.symbol, max(top - settings.TRANSACTIONS_WINDOW_BLOCKS + 1, 0), top
        )
    return BlockCoverage(
        coin_symbol=coin.symbol,
        chain=coin.blockchair_chain or coin.symbol,
        held=held,
        holes=holes_between(held),
        incomplete_transactions=incomplete,
    )
