"""Analytics read from the maintained rollups: each is one query over a rollup table, never the raw rows.

The rollups themselves are defined in `pipeline.rollups` and kept current by the writes (`store/rollups`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import pandas as pd

from pipeline.database import DatabaseService

MIN_SHARED_RETURNS = 10


def price_stats_frame(db: DatabaseService, coin_ids: Sequence[str], start: date, end: date) -> pd.DataFrame:
    """Daily return, 30-day volatility, running peak and drawdown per coin and day (floats, for charts;
    the exact values are `db.get_daily_price_stats`)."""
    rows = db.get_daily_price_stats(coin_ids, start, end)
    columns = ["coin_id", "day", "close", "daily_return", "volatility_30d", "running_peak", "drawdown"]
    frame = pd.DataFrame([r.model_dump() for r in rows], columns=columns)
    for column in columns[2:]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame


def return_correlation(db: DatabaseService, coin_ids: Sequence[str], start: date, end: date) -> pd.DataFrame:
    """Pearson correlation of the coins' daily returns over [start, end], on the days both coins have a
    return; a pair with fewer than MIN_SHARED_RETURNS such days is NaN (too few to mean anything)."""
    frame = price_stats_frame(db, coin_ids, start, end)
    if frame.empty:
        return pd.DataFrame(index=list(coin_ids), columns=list(coin_ids), dtype=float)
    returns = frame.pivot_table(index="day", columns="coin_id", values="daily_return")
    returns = returns.reindex(columns=list(coin_ids))
    return returns.corr(min_periods=MIN_SHARED_RETURNS)


def chain_stats_frame(db: DatabaseService, coin_symbol: str, start: date, end: date) -> pd.DataFrame:
    """A chain's daily totals: blocks, transactions, fees (base units and USD), mean block interval and
    size, first and last height."""
    rows = db.get_chain_daily_stats(coin_symbol, start, end)
    columns = [
        "day",
        "blocks",
        "transactions",
        "fees_native",
        "fees_usd",
        "mean_block_interval_s",
        "mean_block_size",
        "first_height",
        "last_height",
    ]
    frame = pd.DataFrame([r.model_dump() for r in rows], columns=columns)
    frame["fees_usd"] = pd.to_numeric(frame["fees_usd"], errors="coerce").astype(float)
    return frame
