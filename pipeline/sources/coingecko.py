"""CoinGecko: its error codes, its client, the parsers of its price replies and of one coin's description.

Quirks handled here (apis.md 2.4-2.7): the three arrays of `market_chart/range` can differ in length, so
they are joined on timestamp, not position; the last point is "now" rather than a day boundary and is
dropped; timestamps can repeat or arrive out of order; market caps and volumes can be null or 0, which
mean unknown; `/history` has no `market_data` for a day before the coin was tracked.

A day's record is the 00:00 UTC point of that day, the same snapshot `/coins/{id}/history` returns.
Errors carry CoinGecko's own `error_code` in one of two JSON shapes (apis.md 2.6).

Everything here except :func:`coingecko_client` is a pure function of its arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from pipeline.errors import AuthError, PlanLimitError, SourceError
from pipeline.http.auth import NO_AUTH, Auth
from pipeline.http.classify import SourceRules, as_int, as_text, plain_api_error
from pipeline.http.client import ApiClient
from pipeline.http.limits import never
from pipeline.schemas import MarketPriceData, PricePointData
from pipeline.sources.common import ParseResult, Reject, format_error, validate_into, validation_context

if TYPE_CHECKING:
    from pipeline.config import Settings

SOURCE = "coingecko"
MS_PER_DAY = 86_400_000

# ---------------------------------------------------------------- errors (apis.md 2.6)

# error_code values: key missing or wrong (10002), a key used against the wrong host (10010, 10011).
AUTH_CODES: Final = frozenset({10002, 10010, 10011})
# error_code values: endpoint (10005) or time range (10012) not in the plan.
PLAN_CODES: Final = frozenset({10005, 10012})


def api_error(body: Any) -> tuple[int | None, str | None]:
    """(error_code, error_message) from `{"status": {...}}` or `{"error": {"status": {...}}}` (plan
    errors), else the common error shapes."""
    if not isinstance(body, dict):
        return None, None
    error = body.get("error")
    if isinstance(error, dict):
        return api_error(error)
    status = body.get("status")
    if isinstance(status, dict):
        return as_int(status.get("error_code")), as_text(status.get("error_message"))
    return plain_api_error(body)


def error_class(status: int, api_code: int | None, message: str | None) -> type[SourceError] | None:
    """CoinGecko's own codes: a key problem or a plan limit, whatever the HTTP status (10012 comes
    with 400 or 401). None leaves the plain HTTP meaning."""
    if api_code in AUTH_CODES:
        return AuthError
    if api_code in PLAN_CODES:
        return PlanLimitError
    return None


ERROR_RULES: Final = SourceRules(api_error=api_error, error_class=error_class)

# ---------------------------------------------------------------- client


def coingecko_client(settings: Settings, *, should_stop: Callable[[], bool] = never) -> ApiClient:
    """CoinGecko's client from settings: demo keys go in `x-cg-demo-api-key`, pro keys in
    `x-cg-pro-api-key` on the pro host (settings.coingecko_url picks the host by plan)."""
    key = settings.COINGECKO_API_KEY
    auth = NO_AUTH
    if key is not None and key.get_secret_value():
        header = "x-cg-pro-api-key" if settings.COINGECKO_API_PLAN == "pro" else "x-cg-demo-api-key"
        auth = Auth.header(header, key)
    return ApiClient.from_settings(
        settings,
        source=SOURCE,
        base_url=settings.coingecko_url,
        auth=auth,
        requests_per_minute=settings.COINGECKO_RATE_LIMIT_PER_MINUTE,
        rules=ERROR_RULES,
        should_stop=should_stop,
    )


# ---------------------------------------------------------------- parsers


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


# Median spacing of a reply's points up to which it counts as 5-minute, and as hourly, samples.
_FIVE_MINUTE_SPACING_MS = 10 * 60_000
_HOURLY_SPACING_MS = 2 * 3_600_000


def sampling_of(stamps: list[int], default: str = "1h") -> str:
    """'5m', '1h' or '1d': the sampling of a reply, from the median spacing of its sorted timestamps
    (CoinGecko picks it from the window; real hourly replies are spaced irregularly around 3600 s).
    With fewer than three points the spacing says little, and `default` (what the window asked for)
    is the answer."""
    if len(stamps) < 3:
        return default
    gaps = sorted(b - a for a, b in zip(stamps, stamps[1:], strict=False))
    median = gaps[len(gaps) // 2]
    if median <= _FIVE_MINUTE_SPACING_MS:
        return "5m"
    return "1h" if median <= _HOURLY_SPACING_MS else "1d"


def parse_price_points(
    payload: Any,
    *,
    coin_id: str,
    quote: str,
    now: datetime | None = None,
    reaches_now: bool = False,
    daily: bool = False,
    expected_sampling: str = "1h",
    endpoint: str = "/coins/{id}/market_chart/range",
) -> ParseResult[PricePointData]:
    """A `market_chart/range` reply as price points in `quote`, oldest first.

    When the requested window `reaches_now`, the reply's last `prices` entry is CoinGecko's "now" point
    (the current price at the moment of the request, sometimes stamped before the point ahead of it) and
    is dropped, as the daily parser drops it: the sample grid's own points are the stored series. With
    `daily`, only 00:00 UTC points are kept (a daily reply in a quote other than USD). The points'
    sampling is read from their spacing, or is `expected_sampling` for a reply of one or two points.
    """
    if not isinstance(payload, Mapping) or not isinstance(payload.get("prices"), list):
        raise format_error(SOURCE, endpoint, "response has no 'prices' array")
    result: ParseResult[PricePointData] = ParseResult()
    sent = payload["prices"]
    result.rows_seen = len(sent)
    trimmed = dict(payload)
    if reaches_now and sent:
        trimmed["prices"] = sent[:-1]
    prices = _series(trimmed, "prices", result.rejects)
    caps = _series(payload, "market_caps", None)
    volumes = _series(payload, "total_volumes", None)
    stamps = sorted(ts for ts in prices if not daily or ts % MS_PER_DAY == 0)
    sampling = "1d" if daily else sampling_of(stamps, expected_sampling)
    ctx = validation_context(now)
    for ts in stamps:
        fields = {
            "coin_id": coin_id,
            "quote": quote,
            "ts": datetime.fromtimestamp(ts / 1000, UTC),
            "price": prices[ts],
            "market_cap": _unknown_if_not_number(caps.get(ts)),
            "volume_24h": _unknown_if_not_number(volumes.get(ts)),
            "sampling": sampling,
        }
        validate_into(result, PricePointData, [ts, prices[ts]], fields, ctx)
    return result


# ---------------------------------------------------------------- one coin (`crypto-pipeline coins add`)

# `/coins/{id}` without the heavy parts: name, symbol and genesis date are all `coins add` reads.
COIN_PARAMS: Final = {
    "localization": "false",
    "tickers": "false",
    "market_data": "false",
    "community_data": "false",
    "developer_data": "false",
    "sparkline": "false",
}


def coin_path(coin_id: str) -> str:
    """The path of one coin's description."""
    return f"/coins/{coin_id}"


@dataclass(frozen=True)
class CoinDescription:
    """What CoinGecko says about a coin id: its name, ticker and, when it knows it, the chain's first day."""

    id: str
    symbol: str
    name: str
    genesis_date: date | None


def _day(value: Any) -> date | None:
    # CoinGecko sends "YYYY-MM-DD", null, or (for many tokens) "": anything but a date means unknown.
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return None


def parse_coin(payload: Any, *, coin_id: str, endpoint: str = "/coins/{id}") -> CoinDescription:
    """A `/coins/{id}` reply as the coin's description; a reply about another id, or without a name, is
    refused (ResponseFormatError), since `coins add` would store what it says."""
    if not isinstance(payload, Mapping):
        raise format_error(SOURCE, endpoint, "response is not a JSON object")
    if "error" in payload or "status" in payload:
        raise format_error(SOURCE, endpoint, f"error body: {str(payload)[:200]}")
    sent_id, name, symbol = payload.get("id"), payload.get("name"), payload.get("symbol")
    if sent_id != coin_id:
        raise format_error(SOURCE, endpoint, f"reply is about {sent_id!r}, not {coin_id!r}")
    if not isinstance(name, str) or not name.strip():
        raise format_error(SOURCE, endpoint, "reply has no 'name'")
    return CoinDescription(
        id=coin_id,
        symbol=symbol.strip() if isinstance(symbol, str) else "",
        name=name.strip(),
        genesis_date=_day(payload.get("genesis_date")),
    )
