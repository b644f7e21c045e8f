"""Pure helpers for time and ranges: the current UTC time, contiguous height ranges, day windows and the
first day a price plan serves. No I/O, no database: coverage, gap filling and the ingestors share them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.config import Settings
    from pipeline.schemas import CoinMetadataData

# CoinGecko's market_chart/range returns daily points for any span above 90 days; one request per window
# of at most a year keeps a long backfill to a handful of calls.
MAX_WINDOW_DAYS = 365
# Without an interval, a window of 2-90 days gets hourly points (above 90 days, daily ones).
MAX_HOURLY_WINDOW = timedelta(days=90)
HOUR = timedelta(hours=1)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def contiguous_ranges(heights: Iterable[int]) -> list[tuple[int, int]]:
    """[3, 4, 5, 9, 10] -> [(3, 5), (9, 10)]."""
    ranges: list[tuple[int, int]] = []
    for height in sorted(set(heights)):
        if ranges and height == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], height)
        else:
            ranges.append((height, height))
    return ranges


def day_windows(days: Iterable[date], max_days: int = MAX_WINDOW_DAYS) -> list[tuple[date, date]]:
    """Cover the given days with the fewest windows of at most `max_days` days each."""
    windows: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if windows and (day - windows[-1][0]).days < max_days:
            windows[-1] = (windows[-1][0], day)
        else:
            windows.append((day, day))
    return windows


def hour_windows(
    hours: Iterable[datetime], max_span: timedelta = MAX_HOURLY_WINDOW
) -> list[tuple[datetime, datetime]]:
    """Cover the given hour starts with the fewest windows [first, end) spanning at most `max_span`
    (greedy from the oldest hour, which is optimal for windows of a fixed length on a line)."""
    windows: list[tuple[datetime, datetime]] = []
    for hour in sorted(set(hours)):
        if windows and hour + HOUR - windows[-1][0] <= max_span:
            windows[-1] = (windows[-1][0], hour + HOUR)
        else:
            windows.append((hour, hour + HOUR))
    return windows


def contiguous_hours(hours: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    """Runs of consecutive hour starts as [first, end) spans."""
    runs: list[tuple[datetime, datetime]] = []
    for hour in sorted(set(hours)):
        if runs and hour == runs[-1][1]:
            runs[-1] = (runs[-1][0], hour + HOUR)
        else:
            runs.append((hour, hour + HOUR))
    return runs


def hour_floor(ts: datetime) -> datetime:
    """The start of the UTC hour holding `ts`."""
    return ts.replace(minute=0, second=0, microsecond=0)


def earliest_servable(coin: CoinMetadataData, settings: Settings, today: date) -> date:
    """The first day the price plan (and the coin's listing) can serve."""
    earliest = coin.listed_since or date.min
    if settings.coingecko_history_days is not None:
        earliest = max(earliest, today - timedelta(days=settings.coingecko_history_days - 1))
    return earliest


def servable_range(
    coin: CoinMetadataData, settings: Settings, start: date, end: date, today: date
) -> tuple[date, date]:
    """Clamp [start, end] to what the price plan serves and the coin's listing; empty when start > end."""
    return max(start, earliest_servable(coin, settings, today)), min(end, today)
