"""`dashboard.charts` and `dashboard.urlstate`: pure functions, no Streamlit."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest

from dashboard import charts, urlstate

D = date(2024, 1, 1)


def prices(coins: dict[str, list[int]]) -> pd.DataFrame:
    """A prices frame: coin -> day offsets held (price = 10 * (offset + 1))."""
    rows = [
        {
            "coin_id": coin,
            "price_date": pd.Timestamp(D + timedelta(days=o)),
            "price_usd": 10.0 * (o + 1),
            "volume_usd": 5.0,
            "market_cap_usd": 100.0,
        }
        for coin, offsets in coins.items()
        for o in offsets
    ]
    return pd.DataFrame(rows)


def trace(fig, name: str):  # noqa: ANN001, ANN201
    return next(t for t in fig.data if t.name == name)


def test_gap_days_and_spans():
    days = [D, D + timedelta(days=1), D + timedelta(days=4), D + timedelta(days=6)]
    gaps = charts.gap_days(days)
    assert gaps == [D + timedelta(days=2), D + timedelta(days=3), D + timedelta(days=5)]
    assert charts.spans(gaps) == [(D + timedelta(days=2), D + timedelta(days=3)), (gaps[2], gaps[2])]
    assert charts.gap_days([]) == []


def test_missing_price_days_are_per_coin_within_its_own_span():
    frame = prices({"bitcoin": [0, 1, 4], "ethereum": [2, 3, 4]})
    missing = charts.missing_price_days(frame)
    assert missing == {D + timedelta(days=2): ["bitcoin"], D + timedelta(days=3): ["bitcoin"]}


def test_price_lines_mark_missing_days_and_switch_to_log():
    frame = prices({"bitcoin": [0, 1, 4], "ethereum": [0, 1, 2, 3, 4]})
    fig = charts.price_lines(frame, log=True, missing=charts.missing_price_days(frame))
    assert {t.name for t in fig.data} == {"bitcoin", "ethereum", charts.MISSING_TRACE}
    marks = trace(fig, charts.MISSING_TRACE)
    assert [pd.Timestamp(x).date() for x in marks.x] == [D + timedelta(days=2), D + timedelta(days=3)]
    assert marks.yaxis == "y9"
    assert fig.layout.yaxis.type == "log"
    shaded = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(shaded) == 1  # the two days form one band
    assert charts.price_lines(frame).layout.yaxis.type in (None, "linear", "-")


def test_normalised_prices_start_at_100_for_every_coin():
    frame = prices({"bitcoin": [0, 1, 2], "ethereum": [3, 4]})
    indexed = charts.normalise(frame)
    firsts = indexed.groupby("coin_id")["indexed"].first()
    assert firsts.tolist() == [100.0, 100.0]
    assert indexed.loc[indexed["coin_id"] == "bitcoin", "indexed"].tolist() == [100.0, 200.0, 300.0]
    fig = charts.normalised_prices(frame)
    assert fig.layout.yaxis.title.text == "Index (start = 100)"


def test_volume_and_market_cap_have_one_line_per_coin():
    frame = prices({"bitcoin": [0, 1], "dogecoin": [0, 1]})
    assert len(charts.volume_chart(frame).data) == 2
    assert len(charts.market_cap_chart(frame).data) == 2


def chain_daily(days: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "day": [pd.Timestamp(D + timedelta(days=d)) for d in days],
            "blocks": [144.0] * len(days),
            "transactions": [3000.0] * len(days),
            "stored": [12.0] * len(days),
            "fees": [0.5] * len(days),
            "fees_usd": [30000.0] * len(days),
            "avg_size": [1_200_000.0] * len(days),
            "max_size": [1_900_000.0] * len(days),
        }
    )


def test_chain_charts_mark_days_without_blocks():
    daily = chain_daily([0, 1, 3])
    missing = charts.missing_chain_days(daily)
    assert missing == [D + timedelta(days=2)]
    for fig in (
        charts.blocks_per_day_chart(daily, missing),
        charts.transactions_per_day_chart(daily, missing),
        charts.fees_chart(daily, "BTC", missing),
        charts.block_size_chart(daily, missing),
    ):
        assert [pd.Timestamp(x).date() for x in trace(fig, charts.MISSING_TRACE).x] == missing
    fees = charts.fees_chart(daily, "BTC")
    assert trace(fees, "Fees (USD)").yaxis == "y2"
    assert trace(charts.block_size_chart(daily), "Average").y[0] == pytest.approx(1200)


def test_latest_blocks_shade_the_provisional_heights():
    blocks = pd.DataFrame({"block_id": list(range(100, 120)), "transaction_count": [5] * 20})
    fig = charts.latest_blocks_chart(blocks, reorg_depth=6)
    (band,) = fig.layout.shapes
    assert (band.x0, band.x1) == (113.5, 119.5)  # heights 114..119
    assert "provisional" in fig.layout.annotations[0].text
    assert not charts.latest_blocks_chart(blocks, reorg_depth=0).layout.shapes


def test_runs_chart_uses_status_colours_and_stacks():
    per_hour = pd.DataFrame(
        {
            "hour": pd.to_datetime(["2024-01-01 10:00", "2024-01-01 10:00"]),
            "status": ["failed", "success"],
            "runs": [1, 4],
        }
    )
    fig = charts.runs_by_status_chart(per_hour)
    assert fig.layout.barmode == "stack"
    assert trace(fig, "failed").marker.color == charts.STATUS_COLORS["failed"]


def test_growth_and_row_counts():
    per_day = pd.DataFrame(
        {
            "day": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-02"]),
            "data_type": ["blocks", "prices", "blocks"],
            "rows": [10, 3, 5],
        }
    )
    cumulative = trace(charts.growth_chart(per_day), "Cumulative")
    assert list(cumulative.y) == [13, 18]
    bars = charts.row_counts_chart({"a": 3, "b": 1}).data[0]
    assert list(bars.y) == ["b", "a"]


def test_empty_frames_give_a_message_not_an_error():
    empty = pd.DataFrame(columns=["coin_id", "price_date", "price_usd", "volume_usd", "market_cap_usd"])
    assert charts.price_lines(empty).layout.annotations[0].text == "No data in this range"
    assert charts.blocks_per_day_chart(chain_daily([]).iloc[0:0]).layout.annotations
    assert charts.runs_by_status_chart(pd.DataFrame(columns=["hour", "status", "runs"])).layout.annotations


# ---------------------------------------------------------------------------------------------- urlstate


def test_link_parsing_keeps_valid_values_and_reports_the_rest():
    warnings: list[str] = []
    params = {"coins": ["bitcoin,nope", "ethereum"], "log": ["maybe"], "run": ["x1"]}
    assert urlstate.parse_choices(params, "coins", ["bitcoin", "ethereum"], warnings) == [
        "bitcoin",
        "ethereum",
    ]
    assert urlstate.parse_bool(params, "log", warnings) is None
    assert urlstate.parse_int(params, "run", warnings) is None
    assert len(warnings) == 3
    assert urlstate.parse_bool({"log": ["TRUE"]}, "log", []) is True
    assert urlstate.parse_int({"run": ["42"]}, "run", []) == 42
    assert urlstate.parse_choices({}, "coins", ["bitcoin"], []) is None


def test_link_period_parsing():
    today = date(2024, 6, 30)
    warnings: list[str] = []
    assert urlstate.parse_period({"preset": ["1y"]}, warnings, today) == ("1y", None)
    dates = {"start": ["2024-01-01"], "end": ["2024-02-01"], "preset": ["30d"]}
    assert urlstate.parse_period(dates, warnings, today) == ("custom", (date(2024, 1, 1), date(2024, 2, 1)))
    assert urlstate.parse_period({"start": ["2024-07-01"]}, warnings, today) == (None, None)  # after today
    assert urlstate.parse_period({"start": ["1999-01-01"]}, warnings, today) == (None, None)  # before 2009
    assert urlstate.parse_period({"preset": ["5y"]}, warnings, today) == (None, None)
    assert len(warnings) == 3
