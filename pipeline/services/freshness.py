"""Freshness against the source: how far stored data lags behind what the APIs report.

Block lag = the chain tip seen in the last Blockchair reply (`context.state`) minus the newest stored height.
Price age = now minus the newest stored daily point (00:00 UTC of its day). Each gets a level (ok, warn,
fail) from the thresholds in settings, for the overview page, `crypto-pipeline status` and monitors.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from enum import StrEnum

from pydantic import BaseModel

from pipeline.config import Settings
from pipeline.ranges import utcnow
from pipeline.schemas import CoinMetadataData


class Level(StrEnum):
    """Traffic-light level of one freshness measure."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    UNKNOWN = "unknown"


class Freshness(BaseModel):
    """One measure for one coin and source."""

    source: str
    data_type: str
    coin: str
    value: float | None
    unit: str
    level: Level
    detail: str


def _level(value: float | None, warn: float, fail: float) -> Level:
    if value is None:
        return Level.UNKNOWN
    if value >= fail:
        return Level.FAIL
    return Level.WARN if value >= warn else Level.OK


def block_freshness(coin: CoinMetadataData, settings: Settings) -> Freshness:
    """Lag of stored blocks behind the last tip the source reported."""
    lag = None
    if coin.chain_tip_height is not None and coin.block_bookmark is not None:
        lag = max(coin.chain_tip_height - coin.block_bookmark, 0)
    detail = (
        f"newest {coin.block_bookmark}, tip {coin.chain_tip_height}"
        if lag is not None
        else "no blocks ingested yet"
    )
    return Freshness(
        source="blockchair",
        data_type="blocks",
        coin=coin.blockchair_chain or coin.symbol,
        value=lag,
        unit="blocks",
        level=_level(lag, settings.BLOCK_LAG_WARN_BLOCKS, settings.BLOCK_LAG_FAIL_BLOCKS),
        detail=detail,
    )


def price_freshness(coin: CoinMetadataData, settings: Settings, now: datetime | None = None) -> Freshness:
    """Age of the newest stored daily price."""
    now = now or utcnow()
    age = None
    if coin.price_bookmark is not None:
        newest = datetime.combine(coin.price_bookmark, time(0), UTC)
        age = round((now - newest).total_seconds() / 3600, 1)
    return Freshness(
        source="coingecko",
        data_type="prices",
        coin=coin.coingecko_id or coin.symbol,
        value=age,
        unit="hours",
        level=_level(age, settings.PRICE_AGE_WARN_HOURS, settings.PRICE_AGE_FAIL_HOURS),
        detail=f"newest day {coin.price_bookmark}" if coin.price_bookmark else "no prices ingested yet",
    )


def freshness_report(coins: list[CoinMetadataData], settings: Settings) -> list[Freshness]:
    """Every measure for every active coin."""
    now = utcnow()
    report = []
    for coin in coins:
        if coin.blockchair_chain:
            report.append(block_freshness(coin, settings))
        if coin.coingecko_id:
            report.append(price_freshness(coin, settings, now))
    return report
