"""The Prices page's pure parts: number and currency formatting, log ticks, colours, the candle, compare
and analytics figures, the rows behind the CSV (`dashboard.charts`) and the link parsing (`urlstate`)."""

from __future__ import annotations

import io
import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from dashboard import charts, urlstate

T0 = datetime(2025, 12, 2, 14, 0, tzinfo=UTC)  # a Tuesday


def candles(
    coin: str = "bitcoin", n: int = 5, *, start: datetime = T0, price: str = "97412.35", interval: str = "1h"
) -> pd.DataFrame:
    """`n` consecutive candles of one coin (exact Decimals, as `data.candles` gives them)."""
    step = charts.INTERVAL_SPANS[interval]
    base = Decimal(price)
    rows = []
    for i in range(n):
        o = base * (1 + Decimal(i) / 100)
        c = o * Decimal("1.004")
        rows.append(
            {
                "coin_id": coin, "quote": "usd", "interval": interval,
                "start": pd.Timestamp(start) + i * step, "open": o, "high": c * Decimal("1.002"),
                "low": o * Decimal("0.997"), "close": c,
                "volume": Decimal("1234567890.12345678"), "samples": 1, "sampling": "1h",
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


def history(coin: str, days: list[date], price: float = 60_000.0) -> pd.DataFrame:
    """Daily 00:00 UTC points of one coin."""
    return pd.DataFrame(
        {
            "coin_id": coin,
            "ts": [pd.Timestamp(d, tz="UTC") for d in days],
            "price": [Decimal(str(price + i)) for i in range(len(days))],
            "volume": [Decimal("5e9")] * len(days),
        }
    )


# ---------------------------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("value", "quote", "text"),
    [
        (97412.3456, "usd", "$97,412.35"),
        (0.183421, "usd", "$0.1834"),
        (0.0000123412, "usd", "$0.00001234"),
        (3400, "eur", "€3,400.00"),
        (Decimal("1.5"), "gbp", "£1.50"),
        (0.03452, "btc", "₿0.03452"),
        (12.5, "chf", "12.50 CHF"),
        (-2.5, "usd", "-$2.50"),
        (None, "usd", "–"),
        (float("nan"), "usd", "–"),
    ],
)
def test_money_has_the_currency_sign_and_precision_by_magnitude(value, quote, text):
    assert charts.money(value, quote) == text


def test_compact_numbers_and_plain_csv_numbers():
    assert [charts.compact(v) for v in (1000, 10_000, 97_412, 1.234e9, 0.01, 0.00001, 0)] == [
        "1k", "10k", "97.4k", "1.23B", "0.01", "0.00001", "0",
    ]  # fmt: skip
    assert charts.compact_money(2.04e10) == "$20.4B"
    assert charts.plain_number(Decimal("0.000012340")) == "0.00001234"
    assert charts.plain_number(Decimal("1E-8")) == "0.00000001"
    assert charts.plain_number(1.234e-05) == "0.00001234"
    assert charts.plain_number(None) == ""
    assert charts.percent(0.01234) == "+1.23%"
    assert charts.percent(-0.5, 0, signed=False) == "-50%"


def test_native_amounts_btc_to_8_decimals_eth_to_6_significant_digits():
    assert charts.native_text(Decimal("0.12345678"), 8) == "0.12345678"
    assert charts.native_text(Decimal("1234.5"), 8) == "1,234.50000000"
    assert charts.native_text(Decimal("0.100000000000000017"), 18) == "0.100000"
    assert charts.native_text(Decimal("1234.56789"), 18) == "1,234.57"
    assert charts.native_text(Decimal("0.000021"), 18) == "0.0000210000"
    assert charts.native_text(Decimal(0), 18) == "0"
    assert charts.native_text(None, 8) == "–"


def test_when_names_the_weekday_date_and_time_in_utc():
    assert charts.when(T0) == "Tue 2 Dec 2025 14:00 UTC"
    assert charts.when(pd.Timestamp("2025-12-02 14:00")) == "Tue 2 Dec 2025 14:00 UTC"  # naive is UTC
    assert charts.when(T0, time=False) == "Tue 2 Dec 2025"


# ---------------------------------------------------------------------------------------------- axes


def test_log_ticks_are_round_and_readable():
    values, texts = charts.log_ticks(0.1, 150_000)
    assert values == [0.1, 1, 10, 100, 1_000, 10_000, 100_000]
    assert texts == ["0.1", "1", "10", "100", "1k", "10k", "100k"]
    values, texts = charts.log_ticks(45_000, 101_000)  # less than a decade: 1-9 multiples
    assert texts == ["50k", "60k", "70k", "80k", "90k", "100k"]
    values, texts = charts.log_ticks(80, 130)  # narrower still: round steps
    assert texts == ["80", "90", "100", "110", "120", "130"]
    for low, high in [(0.00001, 0.5), (1, 10), (3_000, 3_500), (0.17, 0.19), (96_900, 97_100), (1, 1e12)]:
        values, texts = charts.log_ticks(low, high)
        assert 2 <= len(values) <= 9, (low, high, values)
        assert values == sorted(values)
        assert all(low <= v <= high for v in values)
        assert len(set(texts)) == len(texts), texts  # never '2, 100k, 5, 2, 10k'
        assert not any("e" in t for t in texts), texts


def test_value_range_pads_and_never_collapses_to_a_sliver():
    low, high = charts.value_range(7815.94, 7817.917)
    assert low < 7815.94
    assert high > 7817.917
    assert high - low >= 0.02 * 7816  # at least 2% of the price: ticks read 7,750 .. 7,900
    flat = charts.value_range(100.0, 100.0)
    assert flat[0] < 100 < flat[1]
    log_low, log_high = charts.value_range(0.1, 100_000, log=True)
    assert log_low < -1
    assert log_high > 5


def test_zero_based_ticks_are_round_and_at_least_three():
    assert charts.zero_ticks(8.95e9) == [0, 2e9, 4e9, 6e9, 8e9]
    assert charts.zero_ticks(1.9e9) == [0, 5e8, 1e9, 1.5e9]
    assert charts.zero_ticks(300.25) == [0, 100, 200, 300]
    assert charts.zero_ticks(0) == [0]


def test_linear_ticks_show_the_decimals_their_step_needs():
    stops = {tuple(s["dtickrange"]): s["value"] for s in charts.tick_format_stops()}
    assert stops[(1, None)] == ",.0f"
    assert stops[(0.01, 0.1)] == ",.2f"  # 0.16, 0.17 ... 0.20, never 0.2 beside 0.19
    assert stops[(0.001, 0.01)] == ",.3f"


# ---------------------------------------------------------------------------------------------- colours


def test_coin_colours_are_stable_and_distinct():
    seed = [charts.coin_color(c) for c in ("bitcoin", "ethereum", "dogecoin")]
    assert seed == ["#F7931A", "#627EEA", charts.COIN_COLORS["dogecoin"]]
    assert len(set(seed)) == 3
    other = charts.coin_color("litecoin")
    assert other == charts.coin_color("litecoin")  # hashed, not random: the same on every page and run
    assert other in charts.FALLBACK_COLORS
    assert not set(charts.FALLBACK_COLORS) & set(charts.COIN_COLORS.values())
    assert len({charts.coin_color(c) for c in ("solana", "cardano", "ripple", "tron", "polkadot")}) >= 3


def test_normalise_when_prices_are_more_than_10x_apart():
    assert charts.should_normalise({"bitcoin": 97_000.0, "ethereum": 3_400.0})
    assert not charts.should_normalise({"a": 100.0, "b": 12.0})
    assert not charts.should_normalise({"bitcoin": 97_000.0})
    assert charts.resolve_mode("auto", {"bitcoin": 97_000.0, "dogecoin": 0.18}) == "index"
    assert charts.resolve_mode("auto", {"a": 100.0, "b": 50.0}) == "price"
    assert charts.resolve_mode("multiples", {"bitcoin": 97_000.0, "dogecoin": 0.18}) == "multiples"


# ---------------------------------------------------------------------------------------------- figures


def test_candles_figure_has_a_volume_panel_on_a_shared_time_axis():
    fig = charts.candles_figure(candles(n=24), quote="usd", interval="1h")
    kinds = [t.type for t in fig.data]
    assert kinds[:2] == ["candlestick", "bar"]
    assert fig.data[0].yaxis == "y"
    assert fig.data[1].yaxis == "y2"
    assert fig.layout.xaxis.matches == "x2" or fig.layout.xaxis2.matches == "x"  # one time axis
    assert fig.layout.yaxis.domain[0] > fig.layout.yaxis2.domain[1]  # price over volume
    assert fig.layout.height >= 450
    assert fig.layout.xaxis.rangeslider.visible is False
    assert fig.layout.yaxis.tickprefix == "$"
    assert fig.data[1].textposition == "none"  # volume bars carry hover text, not labels
    assert list(fig.layout.yaxis2.ticktext)[0].startswith("$")


def test_hover_shows_the_full_date_and_time_and_the_currency():
    fig = charts.candles_figure(candles(n=3, price="0.1834"), quote="eur", interval="1h")
    assert fig.layout.hovermode == "x unified"
    for axis in (fig.layout.xaxis, fig.layout.xaxis2):
        assert axis.hoverformat == charts.HOVER_TIME == "%a %-d %b %Y %H:%M UTC"
    text = fig.data[0].text[0]
    assert fig.data[0].hovertemplate == "%{text}<extra></extra>"
    assert "open €0.1834" in text
    assert "close €0.1841" in text
    assert "volume €1.23B" in text
    assert text.endswith("hourly candle from 1 hourly sample")
    compare = charts.compare_figure(
        pd.concat([candles(), candles("dogecoin", price="0.18")]), quote="usd", mode="price"
    )
    assert compare.layout.xaxis.hoverformat == charts.HOVER_TIME
    assert compare.data[0].text[0] == "bitcoin $97,412.35"  # the price the range starts with, in dollars


def test_one_candle_reads_as_a_candle():
    one = candles(n=1, price="7816.93", interval="1d")
    fig = charts.candles_figure(one, interval="1d")
    low, high = fig.layout.yaxis.range
    assert low < float(one["low"][0])
    assert high > float(one["high"][0])
    assert (high - low) >= 0.02 * 7816  # padded: no axis labelled 7,815.94-7,817.917
    assert "tickformatstops" in fig.layout.yaxis.to_plotly_json()
    x0, x1 = (pd.Timestamp(x) for x in fig.layout.xaxis.range)
    assert x1 - x0 >= pd.Timedelta(days=charts.MIN_SLOTS)  # one candle among room for several: not fat
    assert x1 <= pd.Timestamp(one["start"][0]).tz_localize(None) + pd.Timedelta(days=1)  # no empty future
    assert fig.data[1].width == pytest.approx(0.55 * 86_400_000)


def test_log_scale_sets_its_own_ticks():
    frame = pd.concat([candles(price="0.18", coin="dogecoin"), candles(price="97000")])
    fig = charts.compare_figure(frame, quote="usd", mode="price", log=True, coins=["bitcoin", "dogecoin"])
    assert fig.layout.yaxis.type == "log"
    assert list(fig.layout.yaxis.ticktext) == ["$0.1", "$1", "$10", "$100", "$1k", "$10k", "$100k"]
    assert [t.name for t in fig.data] == ["bitcoin", "dogecoin"]  # in the order asked for
    assert fig.data[0].line.color == charts.coin_color("bitcoin")


def test_compare_rebases_to_100_and_dots_the_daily_part():
    days = [date(2025, 11, 28) + timedelta(days=i) for i in range(4)]
    frame = candles(start=datetime(2025, 12, 2, tzinfo=UTC), interval="1d")
    fig = charts.compare_figure(
        frame, history=history("bitcoin", days), mode="index", names={"bitcoin": "Bitcoin"}
    )
    dotted = next(t for t in fig.data if t.line.dash == "dot")
    solid = next(t for t in fig.data if t.name == "Bitcoin")
    assert dotted.y[0] == pytest.approx(100)
    assert len(dotted.x) == 5  # the four daily closes and the first candle, so that the lines meet
    assert solid.line.color == dotted.line.color == charts.coin_color("bitcoin")
    assert "Index" in fig.layout.yaxis.title.text


def test_daily_history_is_only_the_part_before_the_candles():
    days = [date(2025, 11, 28) + timedelta(days=i) for i in range(7)]
    frame = candles(start=datetime(2025, 12, 2, tzinfo=UTC), interval="1d")
    older = charts.split_history(frame, history("bitcoin", days))
    assert [pd.Timestamp(t).date() for t in older["ts"]] == days[:4]
    assert charts.split_history(frame.iloc[0:0], history("bitcoin", days)).shape[0] == 7
    fig = charts.candles_figure(frame, history=history("bitcoin", days), interval="1d", name="Bitcoin")
    assert any(charts.HISTORY_TRACE in t.name for t in fig.data)


def test_missing_candles_are_marked():
    frame = candles(n=6).drop(index=[2, 3])
    missing = charts.missing_buckets(frame, "1h")
    assert sorted(missing) == [pd.Timestamp(T0).tz_localize(None) + timedelta(hours=h) for h in (2, 3)]
    fig = charts.candles_figure(frame, interval="1h")
    marks = next(t for t in fig.data if t.name == charts.MISSING_CANDLES)
    assert len(marks.x) == 1
    assert "2 × 1h missing" in marks.hovertext[0]


def test_multiples_give_every_coin_its_own_axis():
    frame = pd.concat([candles(), candles("dogecoin", price="0.18")])
    fig = charts.multiples_figure(frame, coins=["bitcoin", "dogecoin"], names={"dogecoin": "Dogecoin"})
    assert fig.layout.yaxis.range[0] > 1_000
    assert fig.layout.yaxis2.range[1] < 1
    assert [a.text for a in fig.layout.annotations] == ["bitcoin", "Dogecoin"]


def test_analytics_charts_and_the_correlation_heatmap():
    days = pd.date_range("2025-01-01", periods=40, freq="D")
    rng = np.random.default_rng(1)
    common = rng.normal(0, 0.02, len(days))
    stats = pd.concat(
        pd.DataFrame({
            "coin_id": coin, "day": days, "close": 100.0,
            "daily_return": common + rng.normal(0, s, len(days)),
            "volatility_30d": 0.02, "running_peak": 100.0, "drawdown": -rng.uniform(0, 0.3, len(days)),
        })
        for coin, s in (("bitcoin", 0.005), ("ethereum", 0.01))
    )  # fmt: skip
    assert [t.name for t in charts.returns_chart(stats, coins=["ethereum", "bitcoin"]).data] == [
        "ethereum", "bitcoin",
    ]  # fmt: skip
    assert "a year" in charts.volatility_chart(stats).data[0].text[0]
    assert charts.drawdown_chart(stats).layout.yaxis.range[1] > 0
    matrix = stats.pivot_table(index="day", columns="coin_id", values="daily_return").corr()
    matrix.loc["bitcoin", "ethereum"] = matrix.loc["ethereum", "bitcoin"] = np.nan
    counts = charts.shared_return_days(stats, ["bitcoin", "ethereum"])
    assert counts.loc["bitcoin", "ethereum"] == 40
    fig = charts.correlation_heatmap(matrix, {"bitcoin": "Bitcoin"}, counts)
    heat = fig.data[0]
    assert (heat.zmin, heat.zmax, heat.zmid) == (-1, 1, 0)
    assert heat.texttemplate == "%{text}"
    assert heat.text[0][0] == "1.00"
    assert heat.text[0][1] == "n/a"
    assert "over 40 shared days" in heat.customdata[0][0]
    assert math.isnan(heat.z[0][1])


# ---------------------------------------------------------------------------------------------- rows


def test_price_rows_and_their_csv_keep_every_digit():
    days = [date(2025, 12, 1)]
    frame = candles(n=2, start=datetime(2025, 12, 2, tzinfo=UTC), interval="1d")
    rows = charts.price_rows(frame, history("bitcoin", days), quote="usd", interval="1d", index=True)
    assert rows["kind"].tolist() == ["daily snapshot", "candle", "candle"]
    assert rows["interval"].tolist() == ["1d", "1d", "1d"]
    assert rows["index_100"].iloc[0] == pytest.approx(100)
    csv = pd.read_csv(io.StringIO(charts.csv_text(rows)), dtype=str, keep_default_na=False)
    assert list(csv.columns) == [*charts.TABLE_COLUMNS, "index_100"]
    assert csv["time_utc"].tolist() == [
        "2025-12-01T00:00:00Z",
        "2025-12-02T00:00:00Z",
        "2025-12-03T00:00:00Z",
    ]
    assert csv["volume"].iloc[1] == "1234567890.12345678"  # exact, no float rounding
    assert [Decimal(v) for v in csv["close"].iloc[1:]] == frame["close"].tolist()
    assert csv["open"].iloc[0] == ""  # a snapshot is a price, not a candle
    shown = charts.display_rows(rows, {"bitcoin": "Bitcoin"})
    assert shown["coin"].tolist() == ["Bitcoin"] * 3
    assert shown["time (UTC)"].iloc[1] == "Tue 2 Dec 2025 00:00"
    assert shown["close"].iloc[1].startswith("$97,")


# ---------------------------------------------------------------------------------------------- links


def test_price_links_parse_every_parameter_and_report_bad_ones():
    today = date(2025, 12, 2)
    params = {"coins": ["ethereum,nope"], "quote": ["EUR"], "interval": ["4H"], "preset": ["7d"],
              "tab": ["Analytics"], "log": ["1"], "mode": ["multiples"]}  # fmt: skip
    link = urlstate.parse_price_link(
        params, coins=["bitcoin", "ethereum"], quotes=["usd", "eur"], today=today
    )
    assert (link.coins, link.quote, link.interval, link.preset, link.tab, link.log, link.mode) == (
        ["ethereum"], "eur", "4h", "7d", "analytics", True, "multiples",
    )  # fmt: skip
    assert len(link.warnings) == 1
    assert "nope" in link.warnings[0]
    bad = {"quote": ["xyz"], "interval": ["2m"], "tab": ["x"], "mode": ["y"], "preset": ["5y"]}
    link = urlstate.parse_price_link(bad, coins=[], quotes=["usd"], today=today)
    assert (link.quote, link.interval, link.tab, link.mode, link.preset) == (None,) * 5
    assert len(link.warnings) == 5
    custom = {"start": ["2025-11-01"], "end": ["2025-11-20"]}
    link = urlstate.parse_price_link(custom, coins=[], quotes=["usd"], today=today)
    assert (link.preset, link.dates, link.interval) == (
        "custom",
        (date(2025, 11, 1), date(2025, 11, 20)),
        "4h",
    )


def test_default_interval_per_range():
    assert [urlstate.default_interval(p) for p in urlstate.PRICE_PRESETS] == [
        "1h",
        "1h",
        "4h",
        "1d",
        "1d",
        "1w",
    ]
    assert urlstate.default_interval("custom", 2) == "1h"
    assert urlstate.default_interval("custom", 120) == "1d"
    assert urlstate.default_interval("custom", 1000) == "1w"
