"""Pages of time series, read through the store's own range reads (price points, candles, analytics).

Those reads return every row of a range (`db.get_price_points`, `db.get_candles`,
`db.get_daily_price_stats`, `db.get_chain_daily_stats`), so a page is read as windows of about `limit`
steps from the cursor's position, oldest first, until it holds `limit` items or the range ends. The
windows grow (doubling) across sparse stretches, and at most MAX_WINDOWS are read per page: a page may
then hold fewer than `limit` items while `next_cursor` is set. For bucketed series (the last sample of
each hour, one row per day) window bounds fall on bucket boundaries, so no bucket is split between two
pages; the next page starts after the last bucket returned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

T = TypeVar("T")
MICRO = timedelta(microseconds=1)
MAX_WINDOWS = 24
MAX_GROWTH = 64  # a window spans at most this many times `limit` steps
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Grid:
    """The spacing of a series: `step` between items at most as dense as it is read, and whether items
    are buckets of `step` aligned on the epoch (hours, days) that a window must not cut."""

    step: timedelta
    bucketed: bool = False

    def floor(self, moment: datetime) -> datetime:
        """The start of the bucket holding `moment` (itself for an unbucketed series)."""
        if not self.bucketed:
            return moment
        return _EPOCH + (moment - _EPOCH) // self.step * self.step

    def after(self, stamp: datetime) -> datetime:
        """Where the series resumes after an item stamped `stamp`."""
        return self.floor(stamp) + self.step if self.bucketed else stamp + MICRO


def series_page(
    fetch: Callable[[datetime, datetime], Sequence[T]],
    stamp: Callable[[T], datetime],
    grid: Grid,
    *,
    start: datetime,
    end: datetime,
    limit: int,
) -> tuple[list[T], datetime | None]:
    """Up to `limit` items stamped in [start, end], oldest first, read by `fetch(low, high)` (both bounds
    included); and where the next page starts, or None when the range is done."""
    items: list[T] = []
    position = start
    span = grid.step * limit
    for _ in range(MAX_WINDOWS):
        if position > end or len(items) > limit:
            break
        if end - position < span:
            high = end
        else:
            boundary = grid.floor(position + span)
            high = (boundary if boundary > position else position + grid.step) - MICRO
        low = position
        items.extend(item for item in fetch(low, high) if low <= stamp(item) <= high)
        position = high + MICRO
        span = min(span * 2, grid.step * limit * MAX_GROWTH)
    if len(items) > limit:
        items = items[:limit]
        return items, grid.after(stamp(items[-1]))
    return items, position if position <= end else None
