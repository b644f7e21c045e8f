"""The simulator's CoinGecko market_chart/range: auto-granularity, paid intervals and quote currencies.

Real HTTP to started simulators (one per plan, shared by the module: no test here adds faults).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from pipeline.errors import PlanLimitError
from pipeline.simulator import Simulator, SimulatorConfig
from pipeline.simulator.market import FIVE_MINUTES, Market
from pipeline.sources.coingecko import api_error, error_class

DAY = 86_400
HOUR_MS = 3_600_000
FIVE_MIN_MS = 300_000
DAY_MS = 86_400_000


def _start(plan: str) -> Simulator:
    return Simulator(SimulatorConfig(tip_growth=False, coingecko_plan=plan)).start()


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, Simulator]]:
    started = {plan: _start(plan) for plan in ("public", "demo", "pro")}
    yield started
    for sim in started.values():
        sim.stop()


@pytest.fixture(scope="module")
def public(sims: dict[str, Simulator]) -> Simulator:
    return sims["public"]


def cg_range(sim: Simulator, coin: str, start: float, end: float, **extra: Any) -> requests.Response:
    params = {"vs_currency": "usd", "from": int(start), "to": int(end), **extra}
    return requests.get(f"{sim.coingecko_url}/coins/{coin}/market_chart/range", params=params, timeout=10)


def chart(sim: Simulator, coin: str, start: float, end: float, **extra: Any) -> dict[str, Any]:
    response = cg_range(sim, coin, start, end, **extra)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def stamps(body: dict[str, Any]) -> list[int]:
    return [int(p[0]) for p in body["prices"]]


def steps(ms: list[int]) -> set[int]:
    return {b - a for a, b in zip(ms, ms[1:], strict=False)}


def points(body: dict[str, Any], key: str = "prices") -> dict[int, Any]:
    return {int(ms): value for ms, value in body[key]}


# ---------------------------------------------------------------- auto-granularity


def test_one_day_ending_now_is_five_minutes(public: Simulator) -> None:
    now = time.time()
    # `to` a minute ahead, so the window reaches the server's clock and ends with the "now" point.
    body = chart(public, "bitcoin", now + 60 - DAY, now + 60)
    ms = stamps(body)
    grid, last = ms[:-1], ms[-1]
    assert len(grid) in (287, 288)
    assert all(t % FIVE_MIN_MS == 0 for t in grid)
    assert steps(grid) == {FIVE_MIN_MS}
    # The trailing "now" point: current time, sometimes stamped up to 1 s before the last grid point.
    assert abs(last / 1000 - now) < 30
    assert last > grid[-1] or grid[-1] - last < 1000
    assert len(body["total_volumes"]) == len(body["prices"])
    # `to` computed a moment before the server's clock still counts as ending now (no "now" point then).
    assert steps(stamps(chart(public, "bitcoin", now - DAY, now))) == {FIVE_MIN_MS}
    # The same model as the coarser grids: equal values at the same second.
    hourly = points(chart(public, "bitcoin", now - 30 * DAY, now + 60))
    on_the_hour = {t: v for t, v in points(body).items() if t % HOUR_MS == 0}
    assert len(on_the_hour) >= 23
    assert all(hourly[t] == v for t, v in on_the_hour.items())
    daily = points(chart(public, "bitcoin", now - 120 * DAY, now + 60))
    midnights = [t for t in grid if t % DAY_MS == 0]
    assert len(midnights) == 1
    assert daily[midnights[0]] == points(body)[midnights[0]]


def test_one_day_in_the_past_is_hourly(public: Simulator) -> None:
    now = time.time()
    ms = stamps(chart(public, "ethereum", now - 3 * DAY, now - 2 * DAY))
    assert len(ms) in (24, 25)
    assert all(t % HOUR_MS == 0 for t in ms)
    assert steps(ms) == {HOUR_MS}


def test_thirty_days_is_hourly_and_120_days_daily(public: Simulator) -> None:
    now = time.time()
    ms = stamps(chart(public, "dogecoin", now - 30 * DAY, now + 60))
    assert len(ms[:-1]) in (720, 721)
    assert steps(ms[:-1]) == {HOUR_MS}
    # the "now" point, never out of order on the hourly grid
    assert abs(ms[-1] / 1000 - now) < 30
    assert ms[-1] > ms[-2]
    ms = stamps(chart(public, "dogecoin", now - 120 * DAY, now + 60))
    assert len(ms[:-1]) in (120, 121)
    assert steps(ms[:-1]) == {DAY_MS}
    assert all(t % DAY_MS == 0 for t in ms[:-1])


# ---------------------------------------------------------------- explicit intervals and plans


@pytest.mark.parametrize("plan", ["public", "demo"])
@pytest.mark.parametrize("interval", ["hourly", "5m"])
def test_paid_intervals_are_refused_on_free_plans(
    sims: dict[str, Simulator], plan: str, interval: str
) -> None:
    now = time.time()
    response = cg_range(sims[plan], "bitcoin", now - 2 * DAY, now, interval=interval)
    assert response.status_code == 401
    body = response.json()
    status = body["error"]["status"]
    assert set(status) == {"timestamp", "error_code", "error_message"}
    assert status["error_code"] == 10005
    assert "has no access to this endpoint/param" in status["error_message"]
    code, message = api_error(body)
    assert code == 10005
    assert error_class(response.status_code, code, message) is PlanLimitError
    # daily is open to every plan
    daily = stamps(chart(sims[plan], "bitcoin", now - 5 * DAY, now - DAY, interval="daily"))
    assert all(t % DAY_MS == 0 for t in daily)


def test_paid_intervals_are_served_on_pro(sims: dict[str, Simulator]) -> None:
    pro = sims["pro"]
    now = time.time()
    hourly = stamps(chart(pro, "litecoin", now - 100 * DAY, now - DAY, interval="hourly"))
    assert steps(hourly) == {HOUR_MS}
    assert len(hourly) in (99 * 24, 99 * 24 + 1)
    five = chart(pro, "litecoin", now - 10 * DAY, now - 8 * DAY, interval="5m")
    assert steps(stamps(five)) == {FIVE_MIN_MS}
    assert len(five["prices"]) in (576, 577)
    auto = points(chart(pro, "litecoin", now - 9 * DAY, now - 8 * DAY))  # hourly, the same model
    assert all(points(five)[t] == v for t, v in auto.items())


@pytest.mark.parametrize(("interval", "days"), [("hourly", 101), ("5m", 11)])
def test_paid_interval_window_limits_on_pro(sims: dict[str, Simulator], interval: str, days: int) -> None:
    now = time.time()
    response = cg_range(sims["pro"], "bitcoin", now - days * DAY, now, interval=interval)
    assert response.status_code == 422
    assert isinstance(response.json()["error"], str)


def test_unknown_interval_is_422(public: Simulator) -> None:
    now = time.time()
    response = cg_range(public, "bitcoin", now - DAY, now, interval="minutely")
    assert response.status_code == 422
    assert response.json() == {"error": "invalid interval"}


# ---------------------------------------------------------------- quote currencies


def test_fiat_quotes_are_fixed_rates_of_usd(public: Simulator) -> None:
    now = time.time()
    window = (now - 10 * DAY, now - 5 * DAY)
    usd = chart(public, "ethereum", *window)
    for quote, rate in (("eur", 0.92), ("gbp", 0.79), ("EUR", 0.92)):
        other = chart(public, "ethereum", *window, vs_currency=quote)
        for key in ("prices", "market_caps", "total_volumes"):
            base = points(usd, key)
            converted = points(other, key)
            assert converted.keys() == base.keys()
            for t, value in converted.items():
                assert value == (None if base[t] is None else pytest.approx(base[t] * rate, rel=1e-12))


def test_btc_quote_divides_by_bitcoin_at_the_same_second(public: Simulator) -> None:
    now = time.time()
    window = (now - 10 * DAY, now - 5 * DAY)
    assert {v for _, v in chart(public, "bitcoin", *window, vs_currency="btc")["prices"]} == {1.0}
    btc_usd = points(chart(public, "bitcoin", *window))
    eth_usd = chart(public, "ethereum", *window)
    eth_btc = chart(public, "ethereum", *window, vs_currency="btc")
    for key in ("prices", "market_caps", "total_volumes"):
        base = points(eth_usd, key)
        converted = points(eth_btc, key)
        assert converted.keys() == base.keys()
        for t, value in converted.items():
            assert value == (None if base[t] is None else pytest.approx(base[t] / btc_usd[t], rel=1e-12))
    # The "now" point converts at its own second too: bitcoin stays exactly 1.
    assert {v for _, v in chart(public, "bitcoin", now - DAY, now, vs_currency="btc")["prices"]} == {1.0}


def test_unknown_currency_is_422(public: Simulator) -> None:
    now = time.time()
    response = cg_range(public, "bitcoin", now - DAY, now, vs_currency="xyz")
    assert response.status_code == 422
    assert response.json() == {"error": "invalid vs_currency"}


def test_simple_price_serves_the_same_quotes(public: Simulator) -> None:
    params = {"ids": "bitcoin,ethereum", "vs_currencies": "usd,eur,btc,xyz", "include_market_cap": "true"}
    body = requests.get(f"{public.coingecko_url}/simple/price", params=params, timeout=10).json()
    assert set(body["bitcoin"]) == {"usd", "usd_market_cap", "eur", "eur_market_cap", "btc", "btc_market_cap"}
    assert body["bitcoin"]["btc"] == 1.0
    eth = body["ethereum"]
    assert eth["eur"] == pytest.approx(eth["usd"] * 0.92, rel=1e-9)
    assert eth["btc"] == pytest.approx(eth["usd"] / body["bitcoin"]["usd"], rel=1e-9)


# ---------------------------------------------------------------- the model itself


def price(values: tuple[float, float, float] | None) -> float:
    assert values is not None
    return values[0]


def test_value_in_and_the_out_of_order_now_point() -> None:
    market = Market(42)
    ts = 1_700_000_100  # a 5-minute grid point
    assert ts % FIVE_MINUTES == 0
    usd = market.value_in("ethereum", ts)
    assert usd == market.value_at("ethereum", ts)
    assert usd is not None
    assert market.value_in("ethereum", ts, "gbp") == tuple(v * 0.79 for v in usd)
    assert price(market.value_in("bitcoin", ts, "btc")) == 1.0
    assert market.value_in("ethereum", 1_000_000_000, "btc") is None  # before ethereum existed
    with pytest.raises(ValueError, match="unknown quote"):
        market.value_in("bitcoin", ts, "xyz")
    # now 45 ms past a grid point: the "now" point is stamped 1 s early, 955 ms before that point.
    late = market.chart("bitcoin", ts - DAY, ts + 60, ts + 0.045, step=FIVE_MINUTES)
    assert [p[0] for p in late["prices"][-2:]] == [ts * 1000, ts * 1000 - 955]
    assert late["prices"][-1][1] == price(market.value_at("bitcoin", ts - 0.955))
    # further from the grid point, and on the hourly grid, it stays in order
    calm = market.chart("bitcoin", ts - DAY, ts + 60, ts + 1.5, step=FIVE_MINUTES)
    assert calm["prices"][-1][0] == ts * 1000 + 1500
    hourly = market.chart("bitcoin", ts - DAY, ts + 60, ts + 0.045, step=3_600)
    assert hourly["prices"][-1][0] == ts * 1000 + 45
    # the grid values are the same whichever grid or range asked for them
    assert late["prices"][-2] == [ts * 1000, price(market.value_at("bitcoin", ts))]
    with pytest.raises(ValueError, match="chart step"):
        market.chart("bitcoin", ts - DAY, ts, ts, step=60)
