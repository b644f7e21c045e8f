"""Pure arithmetic of the maintained rollups: candles from price samples, analytics of daily closes, and
a chain's daily totals from its blocks.

The store calls these in the transaction that writes the raw rows (`store/rollups.py`), and the tests
recompute the same figures from the raw rows, so every definition lives here once:

- A candle covers [start, start + interval). Its `open` is the last sample of the bucket just before it
  when that bucket has one (so consecutive candles join up and a bucket with a single hourly sample still
  has a body), else the bucket's first sample; `high` and `low` include the open; `close` is the bucket's
  last sample. 1h candles are built from the samples; 4h and 1d candles aggregate their 1h candles and 1w
  candles (Monday 00:00 UTC) their 1d candles, so an aggregate equals its parts exactly.
- Candle volume: CoinGecko reports a rolling 24 h volume at each sample, not the volume inside a bucket,
  so a 1h candle's volume is its last sample's 24 h volume / 24 (quantized to 1e-8) and larger candles
  sum their parts: a 1d candle from hourly samples then holds the day's mean 24 h volume.
- Daily analytics (USD closes): `daily_return` = close / previous day's close - 1 (None after a missing
  day); `volatility_30d` = sample standard deviation of the daily returns of the 30 days ending that day,
  when at least 20 of them exist; `running_peak` = the highest close so far; `drawdown` = close /
  running_peak - 1. Ratios are quantized to 1e-12.
- Chain days: blocks, transactions and fees summed over the blocks stored for the UTC day; the mean
  block interval is (last time - first time) / (last height - first height), which missing blocks in
  between do not distort; the mean block size is over the blocks that report one.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

HOUR = timedelta(hours=1)
INTERVALS: Mapping[str, timedelta] = {
    "1h": HOUR,
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
    "1w": timedelta(days=7),
}
# What each interval is aggregated from (1h comes from the samples themselves).
PARTS: Mapping[str, str] = {"4h": "1h", "1d": "1h", "1w": "1d"}
_COARSENESS = {"5m": 0, "1h": 1, "1d": 2}
VOLUME_QUANTUM = Decimal("1e-8")
RATIO_QUANTUM = Decimal("1e-12")
VOLATILITY_WINDOW = 30
VOLATILITY_MIN_RETURNS = 20
# Enough digits that a ratio of any two storable prices (up to 1e20, down to 1e-30 and below) quantizes
# to RATIO_QUANTUM without running out of precision (the default context has 28).
PRECISION = 120
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MONDAY = datetime(1970, 1, 5, tzinfo=UTC)  # the first Monday after the epoch


def bucket_start(ts: datetime, interval: str) -> datetime:
    """The first instant of the bucket of `interval` that holds `ts` (UTC; weeks start on Monday)."""
    origin = _MONDAY if interval == "1w" else _EPOCH
    size = INTERVALS[interval]
    return origin + ((ts - origin) // size) * size


def coarsest(samplings: Iterable[str]) -> str:
    """The coarsest of some samplings ('1d' over '1h' over '5m')."""
    return max(samplings, key=_COARSENESS.__getitem__)


def finest(samplings: Iterable[str]) -> str:
    """The finest of some samplings."""
    return min(samplings, key=_COARSENESS.__getitem__)


@dataclass(frozen=True)
class Sample:
    """One stored price point, as the candle builder needs it."""

    ts: datetime
    price: Decimal
    volume_24h: Decimal | None
    sampling: str


@dataclass(frozen=True)
class Candle:
    """One candle (the columns of `price_candles` without coin and quote)."""

    interval: str
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal | None
    samples: int
    sampling: str


def hourly_candles(samples: Sequence[Sample], hours: Iterable[datetime]) -> list[Candle]:
    """The 1h candles of the given hour starts that hold samples; `samples` must cover each hour and the
    hour before it. Hours without a sample get no candle."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return _hourly_candles(samples, hours)


def _hourly_candles(samples: Sequence[Sample], hours: Iterable[datetime]) -> list[Candle]:
    ordered = sorted(samples, key=lambda s: s.ts)
    by_hour: dict[datetime, list[Sample]] = {}
    for sample in ordered:
        by_hour.setdefault(bucket_start(sample.ts, "1h"), []).append(sample)
    candles = []
    for hour in sorted(set(hours)):
        inside = by_hour.get(hour)
        if not inside:
            continue
        before = by_hour.get(hour - HOUR)
        first = before[-1] if before else inside[0]
        prices = [first.price, *(s.price for s in inside)]
        last = inside[-1]
        volume = None if last.volume_24h is None else (last.volume_24h / 24).quantize(VOLUME_QUANTUM)
        candles.append(
            Candle(
                "1h",
                hour,
                first.price,
                max(prices),
                min(prices),
                last.price,
                volume,
                len(inside),
                finest(s.sampling for s in inside),
            )
        )
    return candles


def aggregate_candles(parts: Sequence[Candle], interval: str) -> list[Candle]:
    """Candles of `interval` from their parts (1h for 4h and 1d, 1d for 1w); one per bucket with parts."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return _aggregate_candles(parts, interval)


def _aggregate_candles(parts: Sequence[Candle], interval: str) -> list[Candle]:
    buckets: dict[datetime, list[Candle]] = {}
    for part in sorted(parts, key=lambda c: c.start):
        buckets.setdefault(bucket_start(part.start, interval), []).append(part)
    out = []
    for start, group in sorted(buckets.items()):
        volumes = [c.volume for c in group if c.volume is not None]
        out.append(
            Candle(
                interval,
                start,
                group[0].open,
                max(c.high for c in group),
                min(c.low for c in group),
                group[-1].close,
                sum(volumes, Decimal(0)) if volumes else None,
                sum(c.samples for c in group),
                coarsest(c.sampling for c in group),
            )
        )
    return out


@dataclass(frozen=True)
class DailyStats:
    """Analytics of one day's close (the columns of `daily_price_stats` without the coin)."""

    day: date
    close: Decimal
    daily_return: Decimal | None
    volatility_30d: Decimal | None
    running_peak: Decimal
    drawdown: Decimal


def daily_stats(
    closes: Mapping[date, Decimal], first_day: date, peak_before: Decimal | None
) -> list[DailyStats]:
    """Stats of the days >= `first_day` in `closes`, which must also hold the 30 days before `first_day`
    (for returns and volatility); `peak_before` is the running peak of the days before `first_day`."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return _daily_stats(closes, first_day, peak_before)


def _daily_stats(
    closes: Mapping[date, Decimal], first_day: date, peak_before: Decimal | None
) -> list[DailyStats]:
    returns: dict[date, Decimal] = {}
    for day, close in closes.items():
        previous = closes.get(day - timedelta(days=1))
        if previous:
            returns[day] = (close / previous - 1).quantize(RATIO_QUANTUM)
    out = []
    peak = peak_before
    for day in sorted(d for d in closes if d >= first_day):
        close = closes[day]
        peak = close if peak is None or close > peak else peak
        window = [
            returns[d] for d in (day - timedelta(days=k) for k in range(VOLATILITY_WINDOW)) if d in returns
        ]
        volatility = (
            statistics.stdev(window).quantize(RATIO_QUANTUM)
            if len(window) >= VOLATILITY_MIN_RETURNS
            else None
        )
        out.append(
            DailyStats(
                day,
                close,
                returns.get(day),
                volatility,
                peak,
                (close / peak - 1).quantize(RATIO_QUANTUM),
            )
        )
    return out


@dataclass(frozen=True)
class ChainDay:
    """A chain's totals for one UTC day (the columns of `chain_daily_stats` without the coin)."""

    day: date
    blocks: int
    transactions: int
    fees_native: int
    fees_usd: Decimal | None
    mean_block_interval_s: float | None
    mean_block_size: float | None
    first_height: int
    last_height: int


def chain_day(day: date, blocks: Sequence[Mapping[str, Any]]) -> ChainDay | None:
    """Totals of the blocks of one day (mappings with block_id, time, transaction_count, size, fee_total,
    fee_total_usd); None for a day without blocks."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return _chain_day(day, blocks)


def _chain_day(day: date, blocks: Sequence[Mapping[str, Any]]) -> ChainDay | None:
    if not blocks:
        return None
    ordered = sorted(blocks, key=lambda b: b["block_id"])
    first, last = ordered[0], ordered[-1]
    steps = last["block_id"] - first["block_id"]
    interval = (last["time"] - first["time"]).total_seconds() / steps if steps else None
    sizes = [b["size"] for b in ordered if b["size"] is not None]
    usd = [b["fee_total_usd"] for b in ordered if b["fee_total_usd"] is not None]
    return ChainDay(
        day,
        len(ordered),
        sum(b["transaction_count"] for b in ordered),
        sum(b["fee_total"] or 0 for b in ordered),
        sum(usd, Decimal(0)) if usd else None,
        interval,
        sum(sizes) / len(sizes) if sizes else None,
        first["block_id"],
        last["block_id"],
    )
