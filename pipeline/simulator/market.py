"""Deterministic daily price, market-cap and volume series for the simulated coins.

Values exist at any second (`Market.value_at`): a daily log-price walk, interpolated within the day, plus
an intraday wiggle that vanishes at 00:00 UTC. Charts on any grid (daily, hourly, 5-minute) sample that
one function, so a point at a given second has the same value whatever grid or range asked for it.
Quotes other than USD are fixed fiat rates (`FIAT_RATES`) or bitcoin's own price at the same second.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import date, timedelta

from pipeline.simulator.detrand import digest_int, rng_for

DAY = 86_400
HOUR = 3_600
FIVE_MINUTES = 300
CHART_STEPS = (FIVE_MINUTES, HOUR, DAY)
# Fixed USD -> fiat rates; "btc" is priced from the bitcoin series instead (see `Market.value_in`).
FIAT_RATES: dict[str, float] = {"usd": 1.0, "eur": 0.92, "gbp": 0.79}
QUOTES: tuple[str, ...] = (*FIAT_RATES, "btc")
_EPOCH = date(1970, 1, 1)
NULL_MCAP_EVERY = 97
MISSING_MCAP_EVERY = 113
_REVERSION = 0.003


@dataclass(frozen=True)
class CoinSpec:
    """Static description of one coin and the rough price levels its walk passes through."""

    id: str
    symbol: str
    name: str
    start: date
    anchors: tuple[tuple[date, float], ...]
    supply_start: float
    supply_end: float
    sigma: float
    turnover: float


def _d(text: str) -> date:
    return date.fromisoformat(text)


# Anchors keep the walk near historical levels; a Brownian bridge fills the days between.
COINS: dict[str, CoinSpec] = {
    c.id: c
    for c in (
        CoinSpec(
            "bitcoin",
            "btc",
            "Bitcoin",
            _d("2013-04-28"),
            (
                (_d("2013-04-28"), 135.0),
                (_d("2013-12-04"), 1150.0),
                (_d("2015-01-14"), 180.0),
                (_d("2017-12-17"), 19000.0),
                (_d("2018-12-15"), 3200.0),
                (_d("2021-04-14"), 63000.0),
                (_d("2022-11-21"), 16000.0),
                (_d("2024-03-14"), 73000.0),
                (_d("2025-06-01"), 104000.0),
            ),
            11.0e6,
            19.87e6,
            0.032,
            0.035,
        ),
        CoinSpec(
            "ethereum",
            "eth",
            "Ethereum",
            _d("2015-08-07"),
            (
                (_d("2015-08-07"), 2.8),
                (_d("2018-01-13"), 1400.0),
                (_d("2018-12-15"), 85.0),
                (_d("2021-11-10"), 4800.0),
                (_d("2022-06-18"), 1000.0),
                (_d("2024-03-12"), 4000.0),
                (_d("2025-06-01"), 2500.0),
            ),
            72.0e6,
            120.7e6,
            0.042,
            0.06,
        ),
        CoinSpec(
            "dogecoin",
            "doge",
            "Dogecoin",
            _d("2013-12-15"),
            (
                (_d("2013-12-15"), 0.00056),
                (_d("2018-01-07"), 0.017),
                (_d("2020-12-01"), 0.0033),
                (_d("2021-05-08"), 0.70),
                (_d("2022-06-18"), 0.05),
                (_d("2024-12-08"), 0.47),
                (_d("2025-06-01"), 0.19),
            ),
            13.0e9,
            149.0e9,
            0.055,
            0.05,
        ),
        CoinSpec(
            "litecoin",
            "ltc",
            "Litecoin",
            _d("2013-04-28"),
            (
                (_d("2013-04-28"), 4.3),
                (_d("2017-12-19"), 360.0),
                (_d("2018-12-15"), 24.0),
                (_d("2021-05-10"), 410.0),
                (_d("2022-06-18"), 45.0),
                (_d("2025-06-01"), 90.0),
            ),
            15.0e6,
            75.8e6,
            0.045,
            0.06,
        ),
        CoinSpec(
            "bitcoin-cash",
            "bch",
            "Bitcoin Cash",
            _d("2017-08-01"),
            (
                (_d("2017-08-01"), 290.0),
                (_d("2017-12-20"), 3800.0),
                (_d("2018-12-15"), 80.0),
                (_d("2021-05-12"), 1500.0),
                (_d("2023-06-10"), 100.0),
                (_d("2025-06-01"), 400.0),
            ),
            16.5e6,
            19.87e6,
            0.05,
            0.05,
        ),
        CoinSpec(
            "dash",
            "dash",
            "Dash",
            _d("2014-02-14"),
            (
                (_d("2014-02-14"), 0.32),
                (_d("2017-12-20"), 1550.0),
                (_d("2018-12-15"), 55.0),
                (_d("2021-05-08"), 450.0),
                (_d("2023-06-10"), 30.0),
                (_d("2025-06-01"), 22.0),
            ),
            3.6e6,
            12.3e6,
            0.05,
            0.04,
        ),
    )
}


def day_ts(d: date) -> int:
    """Return the UNIX timestamp of 00:00 UTC on ``d``."""
    return (d - _EPOCH).days * DAY


def ts_day(ts: float) -> date:
    """Return the UTC date containing the UNIX timestamp ``ts``."""
    return _EPOCH + timedelta(days=int(ts // DAY))


class _Series:
    """Log prices and volume turnover per day index (0 = coin start)."""

    __slots__ = ("logp", "turn")

    def __init__(self, logp: list[float], turn: list[float]) -> None:
        self.logp = logp
        self.turn = turn


class Market:
    """Seeded price model; a (coin, second, quote) value never depends on which range is asked for."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._series: dict[str, _Series] = {}

    def _build(self, coin: CoinSpec, days: int) -> _Series:
        logp: list[float] = []
        for i, ((d0, p0), (d1, p1)) in enumerate(zip(coin.anchors, coin.anchors[1:], strict=False)):
            rng = rng_for(self._seed, coin.id, "segment", i)
            n = (d1 - d0).days
            walk = [0.0]
            for _ in range(n):
                walk.append(walk[-1] + rng.gauss(0.0, coin.sigma))
            x0, x1 = math.log(p0), math.log(p1)
            # Brownian bridge: pinned at both anchors, random in between.
            logp.extend(x0 + (x1 - x0) * k / n + walk[k] - walk[n] * k / n for k in range(n))
        last = math.log(coin.anchors[-1][1])
        logp.append(last)
        tail = rng_for(self._seed, coin.id, "tail")
        while len(logp) < days:
            x = logp[-1]
            logp.append(x + tail.gauss(0.0, coin.sigma) - _REVERSION * (x - last))
        turn_rng = rng_for(self._seed, coin.id, "turnover")
        turn = [coin.turnover * math.exp(turn_rng.gauss(0.0, 0.4)) for _ in range(len(logp))]
        return _Series(logp, turn)

    def _series_for(self, coin: CoinSpec, index: int) -> _Series:
        with self._lock:
            series = self._series.get(coin.id)
            if series is None or len(series.logp) <= index + 1:
                # Regenerating from the same seeds keeps every earlier day identical.
                series = self._build(coin, max(index + 400, 0))
                self._series[coin.id] = series
            return series

    def _supply(self, coin: CoinSpec, index: float) -> float:
        span = (coin.anchors[-1][0] - coin.start).days
        return coin.supply_start + (coin.supply_end - coin.supply_start) * index / span

    def value_at(self, coin_id: str, ts: float) -> tuple[float, float, float] | None:
        """Return (price, market cap, 24h volume) at UNIX time ``ts``, or None before the coin existed."""
        coin = COINS[coin_id]
        offset = ts - day_ts(coin.start)
        if offset < 0:
            return None
        index = int(offset // DAY)
        frac = (offset - index * DAY) / DAY
        series = self._series_for(coin, index)
        x0, x1 = series.logp[index], series.logp[index + 1]
        x = x0 + (x1 - x0) * frac
        if frac:
            # Intraday wiggle that vanishes at midnight so hourly and daily points agree there.
            wiggle = (digest_int(self._seed, coin.id, "wiggle", int(ts)) % 2001 - 1000) / 1000
            x += wiggle * coin.sigma * 0.25 * math.sin(math.pi * frac)
        price = math.exp(x)
        turn = series.turn[index] + (series.turn[index + 1] - series.turn[index]) * frac
        mcap = price * self._supply(coin, index + frac)
        return price, mcap, mcap * turn

    def quirk(self, coin_id: str, ts: int) -> str | None:
        """Return 'null' or 'missing' when the market cap at grid time ``ts`` is defective."""
        if digest_int(self._seed, coin_id, "null-mcap", ts) % NULL_MCAP_EVERY == 0:
            return "null"
        if digest_int(self._seed, coin_id, "missing-mcap", ts) % MISSING_MCAP_EVERY == 0:
            return "missing"
        return None

    def day_values(self, coin_id: str, day: date) -> tuple[float, float | None, float] | None:
        """Return a day's 00:00 UTC (price, market cap or None when defective, volume)."""
        ts = day_ts(day)
        values = self.value_at(coin_id, ts)
        if values is None:
            return None
        price, mcap, volume = values
        return price, (None if self.quirk(coin_id, ts) else mcap), volume

    def price_on(self, coin_id: str, day: date) -> float:
        """Return the day's USD price, 0.0 before the coin was priced (Blockchair does the same)."""
        values = self.value_at(coin_id, day_ts(day))
        return values[0] if values else 0.0

    def value_in(self, coin_id: str, ts: float, quote: str = "usd") -> tuple[float, float, float] | None:
        """Return (price, market cap, 24h volume) at UNIX time ``ts`` in ``quote`` (one of `QUOTES`).

        Fiat quotes apply the fixed `FIAT_RATES` to the USD values; ``btc`` divides them by bitcoin's
        USD price at the same ``ts`` (so bitcoin's own btc price is exactly 1.0). None before the coin
        (or, for ``btc``, bitcoin) was priced. An unknown quote raises ValueError.
        """
        if quote == "btc":
            values = self.value_at(coin_id, ts)
            btc = values if coin_id == "bitcoin" else self.value_at("bitcoin", ts)
            if values is None or btc is None:
                return None
            return values[0] / btc[0], values[1] / btc[0], values[2] / btc[0]
        rate = FIAT_RATES.get(quote)
        if rate is None:
            raise ValueError(f"unknown quote currency {quote!r}")
        values = self.value_at(coin_id, ts)
        if values is None or quote == "usd":
            return values
        return values[0] * rate, values[1] * rate, values[2] * rate

    def chart(
        self, coin_id: str, start: int, end: int, now: float, *, step: int = HOUR, quote: str = "usd"
    ) -> dict[str, list[list[float | None]]]:
        """Build the market_chart/range body for [start, end] seconds, as seen at time ``now``.

        Points sit on the ``step`` grid (`CHART_STEPS`: 5 minutes, hourly or daily at 00:00 UTC), valued
        in ``quote`` (see `value_in`). When the window reaches ``now``, a trailing "now" point follows,
        as in the real API; its value is the model's value at its own (millisecond) timestamp. On the
        5-minute grid, when ``now`` is less than 1 s past the last grid point, that "now" point is
        stamped 1 s early, so it lands BEFORE the grid point it follows (the real 1-day sample had it
        955 ms early): deterministic in ``now``, and clients must sort.
        """
        if step not in CHART_STEPS:
            raise ValueError(f"chart step must be one of {CHART_STEPS}, not {step!r}")
        if quote not in QUOTES:
            raise ValueError(f"unknown quote currency {quote!r}")
        coin = COINS[coin_id]
        first = max(-(-start // step) * step, day_ts(coin.start))
        last = min(end, int(now))
        grid = list(range(first, last + 1, step))
        # Points are [ms, value] pairs as the real API sends them; a market cap may be null.
        prices: list[list[float | None]] = []
        caps: list[list[float | None]] = []
        volumes: list[list[float | None]] = []
        for ts in grid:
            values = self.value_in(coin_id, ts, quote)
            if values is None:
                continue
            price, mcap, volume = values
            ms = ts * 1000
            prices.append([ms, price])
            volumes.append([ms, volume])
            quirk = self.quirk(coin_id, ts)
            if quirk != "missing":
                caps.append([ms, None if quirk == "null" else mcap])
        if end >= now and (not grid or grid[-1] != now):
            # The trailing "now" point of the real API: current time, not a grid boundary.
            ms = int(now * 1000)
            if step == FIVE_MINUTES and grid and now - grid[-1] < 1:
                ms -= 1000
            values = self.value_in(coin_id, ms / 1000, quote)
            if values is not None:
                prices.append([ms, values[0]])
                caps.append([ms, values[1]])
                volumes.append([ms, values[2]])
        return {"prices": prices, "market_caps": caps, "total_volumes": volumes}

    def expected_daily(
        self, coin_id: str, start: date, end: date, today: date
    ) -> list[tuple[date, float, float | None, float | None]]:
        """Return the daily points a full-history daily chart holds for [start, end]."""
        coin = COINS[coin_id]
        day = max(start, coin.start)
        out: list[tuple[date, float, float | None, float | None]] = []
        while day <= min(end, today):
            values = self.day_values(coin_id, day)
            if values is not None:
                out.append((day, values[0], values[1], values[2]))
            day += timedelta(days=1)
        return out
