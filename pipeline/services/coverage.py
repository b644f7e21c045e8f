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
from pipeline.store.coverage import height_islands, price_day_ranges, price_run_outcomes

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
    """The state of every day of [start, end] for one coin.

    The stored days come from the database as runs of consecutive days (`price_day_ranges`), so the cost
    follows the window and the gaps in it, not the number of stored rows; only missing days are listed.
    """
    coin_id = coin.coingecko_id or coin.symbol.lower()
    today = utcnow().date()
    first_servable = earliest_servable(coin, settings, today)
    held = price_day_ranges(db, coin_id, start, end)
    states: list[tuple[date, date, CellState]] = []
    missing: list[date] = []
    day = start
    for first, last in [*held, (end + timedelta(days=1), end)]:  # the sentinel closes the last gap
        missing += _unheld(states, day, first - timedelta(days=1), first_servable, today)
        if first <= last:
            states.append((first, last, CellState.PRESENT))
        day = last + timedelta(days=1)
    failed = _failed_days(db, coin_id, missing)
    return PriceCoverage(
        coin_id=coin_id, start=start, end=end, ranges=_merge(_split_failed(states, missing, failed))
    )


def _unheld(
    states: list[tuple[date, date, CellState]], first: date, last: date, first_servable: date, today: date
) -> list[date]:
    """Append the days [first, last], which hold no price, to `states`: unavailable before
    `first_servable` or after `today`, missing in between. Returns the missing days."""
    if first > last:
        return []
    low, high = max(first, first_servable), min(last, today)
    if low > high:
        states.append((first, last, CellState.UNAVAILABLE))
        return []
    if first < low:
        states.append((first, low - timedelta(days=1), CellState.UNAVAILABLE))
    states.append((low, high, CellState.MISSING))
    if high < last:
        states.append((high + timedelta(days=1), last, CellState.UNAVAILABLE))
    return [low + timedelta(days=i) for i in range((high - low).days + 1)]


def _split_failed(
    states: list[tuple[date, date, CellState]], missing: list[date], failed: set[date]
) -> list[tuple[date, date, CellState]]:
    """Missing ranges split into runs of missing and failed days (the other ranges as they are)."""
    if not failed:
        return states
    out: list[tuple[date, date, CellState]] = []
    for first, last, state in states:
        if state != CellState.MISSING:
            out.append((first, last, state))
            continue
        for day in missing[bisect_left(missing, first) : bisect_right(missing, last)]:
            out.append((day, day, CellState.FAILED if day in failed else CellState.MISSING))
    return out


def _merge(states: list[tuple[date, date, CellState]]) -> list[DayRange]:
    """Adjacent ranges of one state made one."""
    merged: list[tuple[date, date, CellState]] = []
    for first, last, state in states:
        if merged and merged[-1][2] == state and merged[-1][1] + timedelta(days=1) == first:
            merged[-1] = (merged[-1][0], last, state)
        else:
            merged.append((first, last, state))
    return [DayRange(start=first, end=last, state=state) for first, last, state in merged]


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
