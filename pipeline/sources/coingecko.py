"""Parse CoinGecko responses into daily price records.

Quirks handled here (apis.md 2.4-2.7): the three arrays of `market_chart/range` can differ in length, so
they are joined on timestamp, not position; the last point is "now" rather than a day boundary and is
dropped; timestamps can repeat or arrive out of order; market caps and volumes can be null or 0, which
mean unknown; `/history` has no `market_data` for a day before the coin was tracked.

A day's record is the 00:00 UTC point of that day, the same snapshot `/coins/{id}/history` returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from pipeline.schemas import MarketPriceData
from pipeline.sources.common import ParseResult, Reject, format_error, validate_into, validation_context

SOURCE = "coingecko"
MS_PER_DAY = 86_400_000


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


# Timestamps a calendar date can hold (years 1970..9999); anything else is a malformed point. Checked
# before int(): a Decimal such as 1e1000000 is cheap to send and very expensive to expand.
MAX_TIMESTAMP_MS = 253_402_214_400_000


def _timestamp(value: Any) -> int | None:
    if not _is_number(value) or not 0 <= value < MAX_TIMESTAMP_MS:
        return None
    return int(value)


def _series(payload: Mapping[str, Any], key: str, rejects: list[Reject] | None) -> dict[int, Any]:
    """timestamp (ms) -> value for one array; malformed points are rejected (prices) or ignored (others)."""
    points = payload.get(key)
    series: dict[int, Any] = {}
    if not isinstance(points, list):
        return series
    for point in points:
        ts = _timestamp(point[0]) if isinstance(point, list) and len(point) == 2 else None
        if ts is not None:
            series[ts] = point[1]
        elif rejects is not None:
            rejects.append(Reject(f"malformed {key} point (expected [timestamp_ms, value])", point))
    return series


def _daily(points: dict[int, Any]) -> dict[date, tuple[int, Any]]:
    """The 00:00 UTC point of each day; a day without one keeps nothing (it is an intraday "now" point)."""
    days: dict[date, tuple[int, Any]] = {}
    for ts in sorted(points):
        if ts % MS_PER_DAY == 0:
            days[datetime.fromtimestamp(ts / 1000, UTC).date()] = (ts, points[ts])
    return days


def _unknown_if_not_number(value: Any) -> Any:
    # A null, zero or non-numeric cap or volume means "unknown"; it must not cost the day its price.
    return value if _is_number(value) and value > 0 else None


def parse_market_chart(
    payload: Any,
    *,
    coin_id: str,
    now: datetime | None = None,
    endpoint: str = "/coins/{id}/market_chart/range",
) -> ParseResult[MarketPriceData]:
    """A `market_chart/range` reply (interval=daily) as one record per day."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("prices"), list):
        raise format_error(SOURCE, endpoint, "response has no 'prices' array")
    result: ParseResult[MarketPriceData] = ParseResult()
    prices = _series(payload, "prices", result.rejects)
    caps = _series(payload, "market_caps", None)
    volumes = _series(payload, "total_volumes", None)
    daily = _daily(prices)
    result.rows_seen = len(payload["prices"])  # every point sent, malformed ones included
    ctx = validation_context(now)
    for day, (ts, price) in sorted(daily.items()):
        fields = {
            "coin_id": coin_id,
            "price_date": day,
            "price_usd": price,
            "market_cap_usd": _unknown_if_not_number(caps.get(ts)),
            "volume_usd": _unknown_if_not_number(volumes.get(ts)),
        }
        validate_into(result, MarketPriceData, [ts, price], fields, ctx)
    return result


def _usd(market_data: Mapping[str, Any], key: str) -> Any:
    block = market_data.get(key)
    return block.get("usd") if isinstance(block, Mapping) else None


def parse_history(
    payload: Any,
    *,
    coin_id: str,
    day: date,
    now: datetime | None = None,
    endpoint: str = "/coins/{id}/history",
) -> ParseResult[MarketPriceData]:
    """A `/coins/{id}/history` reply as at most one record; no `market_data` means no data for that day."""
    if not isinstance(payload, Mapping):
        raise format_error(SOURCE, endpoint, "response is not a JSON object")
    if "error" in payload or "status" in payload:
        # An error body that came with a 2xx status must not read as "no data for that day".
        raise format_error(SOURCE, endpoint, f"error body: {str(payload)[:200]}")
    result: ParseResult[MarketPriceData] = ParseResult()
    market_data = payload.get("market_data")
    if market_data is None:
        return result
    result.rows_seen = 1
    if not isinstance(market_data, Mapping):
        result.rejects.append(Reject("market_data is not an object", market_data))
        return result
    fields = {
        "coin_id": coin_id,
        "price_date": day,
        "price_usd": _usd(market_data, "current_price"),
        "market_cap_usd": _unknown_if_not_number(_usd(market_data, "market_cap")),
        "volume_usd": _unknown_if_not_number(_usd(market_data, "total_volume")),
    }
    validate_into(result, MarketPriceData, market_data, fields, validation_context(now))
    return result
