"""CoinGecko endpoints: ping, simple/price, coins/{id}, coins/{id}/history and coins/{id}/market_chart/range.

`market_chart/range` follows apis.md 2.4:

- Without ``interval`` the granularity is automatic: a window of at most 1 day ending now (within one
  5-minute step of the simulated clock) gets 5-minute points; any other window of at most 90 days gets
  hourly points; longer windows get daily 00:00 UTC points. A trailing "now" point follows when the
  window reaches now (on the 5-minute grid it is sometimes out of order, see `Market.chart`).
- ``interval=daily`` works on every plan. ``hourly`` and ``5m`` are Enterprise-only in the docs we
  follow: the ``public`` and ``demo`` plans get the 10005 plan error (HTTP 401), ``pro`` gets them, up to
  100 days (hourly) or 10 days (5m) per request, longer windows a 422.
- ``vs_currency`` is one of `QUOTES` (usd, eur, gbp at fixed rates, btc through bitcoin's price at the
  same second); anything else is a 422.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pipeline.simulator.envelope import CG_10012_MESSAGE, Reply, cg_plan_error
from pipeline.simulator.market import (
    COINS,
    DAY,
    FIAT_RATES,
    FIVE_MINUTES,
    HOUR,
    QUOTES,
    Market,
    day_ts,
    ts_day,
)

_HISTORY_DATE = re.compile(r"(\d{2})-(\d{2})-(\d{4})")
# interval value -> grid step; "" is auto-granularity.
_INTERVALS: dict[str, int | None] = {"": None, "daily": DAY, "hourly": HOUR, "5m": FIVE_MINUTES}
# Enterprise-only intervals (served on the pro plan here) and their longest window per request, in days.
_PAID_INTERVAL_DAYS = {"hourly": 100, "5m": 10}
# A window "ends now" for auto-granularity when its end is at most one 5-minute step before now, so a
# client that computed `to` from its own clock a moment earlier still gets 5-minute points.
_NOW_SLACK = FIVE_MINUTES
CG_10005_MESSAGE = (
    "Your API Key has no access to this endpoint/param. "
    "Please upgrade your plan at https://www.coingecko.com/en/api/pricing to access it."
)


def _missing(name: str) -> Reply:
    return Reply(422, {"error": f"Missing parameter {name}"})


class CoinGeckoApi:
    """Answers CoinGecko requests from the deterministic market model."""

    def __init__(self, market: Market, plan: str, history_days: int, now: Callable[[], float]) -> None:
        self._market = market
        self._plan = plan
        self._history_days = history_days
        self._now = now

    def handle(self, kind: str, parts: list[str], params: dict[str, str]) -> Reply:
        """Route one request; ``parts`` is the path after /api/v3."""
        if kind == "ping":
            return Reply(200, {"gecko_says": "(V3) To the Moon!"})
        if kind == "simple_price":
            return self._simple_price(params)
        if kind in ("market_chart_range", "history", "coin"):
            coin = parts[1]
            if coin not in COINS:
                return Reply(404, {"error": "coin not found"})
            if kind == "coin":
                return self._coin(coin)
            if kind == "history":
                return self._history(coin, params)
            return self._range(coin, params)
        return Reply(404, {"error": "Not Found"})

    def _oldest_allowed(self) -> int | None:
        """Return the oldest timestamp keyless/demo users may ask for (None = unlimited)."""
        if self._plan == "pro":
            return None
        # Whole-day granularity, so a client computing now-365d a moment earlier is not refused.
        return day_ts(ts_day(self._now()) - timedelta(days=self._history_days))

    def _too_old(self) -> Reply:
        return cg_plan_error(401, 10012, CG_10012_MESSAGE.format(days=self._history_days))

    def _range(self, coin: str, params: dict[str, str]) -> Reply:
        for name in ("vs_currency", "from", "to"):
            if not params.get(name):
                return _missing(name)
        quote = params["vs_currency"].lower()
        if quote not in QUOTES:
            return Reply(422, {"error": "invalid vs_currency"})
        interval = params.get("interval", "").lower()
        if interval not in _INTERVALS:
            return Reply(422, {"error": "invalid interval"})
        if interval in _PAID_INTERVAL_DAYS and self._plan != "pro":
            return cg_plan_error(401, 10005, CG_10005_MESSAGE)
        try:
            start, end = float(params["from"]), float(params["to"])
        except ValueError:
            return Reply(422, {"error": "invalid from/to"})
        if start > end or not (math.isfinite(start) and math.isfinite(end)):
            return Reply(422, {"error": "invalid from/to"})
        oldest = self._oldest_allowed()
        if oldest is not None and start < oldest:
            return self._too_old()
        max_days = _PAID_INTERVAL_DAYS.get(interval)
        if max_days is not None and end - start > max_days * DAY:
            return Reply(422, {"error": f"interval={interval} allows at most {max_days} days per request"})
        now = self._now()
        step = _INTERVALS[interval] or self._auto_step(start, end, now)
        body = self._market.chart(coin, math.ceil(start), math.floor(end), now, step=step, quote=quote)
        return Reply(200, body)

    @staticmethod
    def _auto_step(start: float, end: float, now: float) -> int:
        """Return CoinGecko's automatic granularity for the window [start, end] seen at ``now``."""
        if end - start > 90 * DAY:
            return DAY
        if end - start <= DAY and end >= now - _NOW_SLACK:
            return FIVE_MINUTES
        return HOUR

    def _coin(self, coin: str) -> Reply:
        """`/coins/{id}` as asked with every heavy part off (the top-level fields of the real reply); the
        genesis date is the first day the simulated market has prices."""
        spec = COINS[coin]
        body = {
            "id": spec.id,
            "symbol": spec.symbol,
            "name": spec.name,
            "asset_platform_id": None,
            "platforms": {"": ""},
            "block_time_in_minutes": 0,
            "hashing_algorithm": None,
            "categories": ["Cryptocurrency"],
            "public_notice": None,
            "additional_notices": [],
            "genesis_date": spec.start.isoformat(),
            "market_cap_rank": None,
            "last_updated": datetime.fromtimestamp(self._now(), UTC).isoformat(timespec="milliseconds"),
        }
        return Reply(200, body)

    def _history(self, coin: str, params: dict[str, str]) -> Reply:
        raw = params.get("date")
        if not raw:
            return _missing("date")
        match = _HISTORY_DATE.fullmatch(raw.strip())
        try:
            if match is None:
                raise ValueError(raw)
            day = date(int(match.group(3)), int(match.group(2)), int(match.group(1)))
        except ValueError:
            return Reply(400, {"error": "invalid date"})
        oldest = self._oldest_allowed()
        if oldest is not None and day_ts(day) < oldest:
            return self._too_old()
        spec = COINS[coin]
        body: dict[str, Any] = {"id": spec.id, "symbol": spec.symbol, "name": spec.name}
        if params.get("localization", "true").lower() != "false":
            body["localization"] = {"en": spec.name, "de": spec.name, "es": spec.name, "fr": spec.name}
        body["image"] = {
            "thumb": f"https://assets.coingecko.com/coins/images/1/thumb/{spec.id}.png",
            "small": f"https://assets.coingecko.com/coins/images/1/small/{spec.id}.png",
        }
        values = self._market.day_values(coin, day) if day <= ts_day(self._now()) else None
        if values is not None:
            price, mcap, volume = values
            body["market_data"] = {
                "current_price": self._fiat(price, coin, day),
                "market_cap": {"usd": mcap} if mcap is None else self._fiat(mcap, coin, day),
                "total_volume": self._fiat(volume, coin, day),
            }
        body["community_data"] = {
            "facebook_likes": None,
            "twitter_followers": None,
            "reddit_average_posts_48h": 0.0,
            "reddit_average_comments_48h": 0.0,
            "reddit_subscribers": None,
            "reddit_accounts_active_48h": "14074.0",
        }
        body["developer_data"] = {"forks": None, "stars": None, "subscribers": None, "total_issues": None}
        body["public_interest_stats"] = {"alexa_rank": None, "bing_matches": None}
        return Reply(200, body)

    def _fiat(self, usd: float, coin: str, day: date) -> dict[str, float]:
        out = {"usd": usd}
        out.update({code: usd * rate for code, rate in FIAT_RATES.items() if code != "usd"})
        btc = self._market.price_on("bitcoin", day)
        if btc:
            out["btc"] = usd / btc
        return out

    def _simple_price(self, params: dict[str, str]) -> Reply:
        for name in ("ids", "vs_currencies"):
            if not params.get(name):
                return _missing(name)
        ids = [i.strip() for i in params["ids"].split(",") if i.strip()]
        asked = [c.strip().lower() for c in params["vs_currencies"].split(",")]
        # Known quotes in the order asked, once each; an unknown one is ignored as the real API does.
        quotes = [q for q in dict.fromkeys(asked) if q in QUOTES]
        flags = {
            k: params.get(k, "false").lower() == "true"
            for k in (
                "include_market_cap",
                "include_24hr_vol",
                "include_24hr_change",
                "include_last_updated_at",
            )
        }
        now = self._now()
        body: dict[str, dict[str, Any]] = {}
        for coin in ids:
            if coin not in COINS:
                continue
            entry: dict[str, Any] = {}
            for quote in quotes:
                values = self._market.value_in(coin, now, quote)
                if values is None:
                    continue
                price, mcap, volume = values
                entry[quote] = price if quote == "btc" else round(price, 8)
                if flags["include_market_cap"]:
                    entry[f"{quote}_market_cap"] = mcap
                if flags["include_24hr_vol"]:
                    entry[f"{quote}_24h_vol"] = volume
                if flags["include_24hr_change"]:
                    previous = self._market.value_in(coin, now - DAY, quote)
                    entry[f"{quote}_24h_change"] = (price / previous[0] - 1) * 100 if previous else None
            # An unknown currency yields an empty object, as the real API does.
            if entry and flags["include_last_updated_at"]:
                entry["last_updated_at"] = int(now)
            body[coin] = entry
        return Reply(200, body)
