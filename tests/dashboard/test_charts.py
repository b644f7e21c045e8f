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


# ---------------------------------------------------------------------------------------------- coverage


def coverage_ranges() -> pd.DataFrame:
    """bitcoin: 2 days unavailable, 3 present, 1 failed, 1 missing; ethereum: 7 present."""
    rows = [
        ("bitcoin", D, D + timedelta(days=1), "unavailable"),
        ("bitcoin", D + timedelta(days=2), D + timedelta(days=4), "present"),
        ("bitcoin", D + timedelta(days=5), D + timedelta(days=5), "failed"),
        ("bitcoin", D + timedelta(days=6), D + timedelta(days=6), "missing"),
        ("ethereum", D, D + timedelta(days=6), "present"),
    ]
    return pd.DataFrame(rows, columns=["coin_id", "start", "end", "state"])


def test_coverage_grid_expands_ranges_to_one_state_per_day():
    days, grid = charts.coverage_grid(coverage_ranges())
    assert days == [D + timedelta(days=i) for i in range(7)]
    assert grid["bitcoin"] == ["unavailable"] * 2 + ["present"] * 3 + ["failed", "missing"]
    assert grid["ethereum"] == ["present"] * 7
    short = coverage_ranges().iloc[[1, 4]]  # bitcoin's ranges do not cover the whole window
    assert (
        charts.coverage_grid(short)[1]["bitcoin"]
        == ["unavailable"] * 2 + ["present"] * 3 + ["unavailable"] * 2
    )


def test_coverage_heatmap_colours_each_state_and_has_a_legend():
    fig = charts.coverage_heatmap(coverage_ranges(), {"bitcoin": "Bitcoin"})
    heatmap = next(t for t in fig.data if t.type == "heatmap")
    assert list(heatmap.y) == ["ethereum", "Bitcoin"]  # names where known, first coin on top
    assert len(heatmap.x) == 7
    codes = {state: i for i, state in enumerate(charts.COVERAGE_COLORS)}
    bitcoin_row = list(heatmap.z[1])
    assert bitcoin_row == [codes[s] for s in ["unavailable"] * 2 + ["present"] * 3 + ["failed", "missing"]]
    assert list(heatmap.text[1])[5] == "failed"
    # The step colour scale maps code i to the i-th colour.
    scale = {tuple(step) for step in heatmap.colorscale}
    n = len(charts.COVERAGE_COLORS)
    for state, i in codes.items():
        assert ((i + 0.5) / n - 0.5 / n, charts.COVERAGE_COLORS[state]) in scale
    legend = [t for t in fig.data if t.type == "scatter"]
    assert [t.name for t in legend] == list(charts.COVERAGE_COLORS)
    assert [t.marker.color for t in legend] == list(charts.COVERAGE_COLORS.values())
    assert charts.coverage_heatmap(coverage_ranges().iloc[0:0]).layout.annotations


def height_ranges(rows: list[tuple[str, str, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["chain", "kind", "start", "end"])


def test_height_buckets_keep_the_figure_small_and_show_every_hole():
    ranges = height_ranges(
        [
            ("bitcoin", "held", 0, 499),
            ("bitcoin", "hole", 500, 504),  # 5 heights: part of one bucket
            ("bitcoin", "held", 505, 799),
            ("bitcoin", "hole", 800, 899),  # whole buckets
            ("bitcoin", "held", 900, 999_999),
            ("bitcoin", "incomplete", 999_990, 999_999),  # not a hole
            ("ethereum", "held", 10, 14),
        ]
    )
    buckets = charts.height_buckets(ranges, max_buckets=100)
    btc = buckets[buckets["chain"] == "bitcoin"]
    assert len(btc) == 100
    assert (btc["end"] - btc["start"] + 1).iloc[0] == 10_000
    assert btc["missing"].sum() == 105
    assert btc["state"].iloc[0] == "partly missing"
    assert set(btc["state"].iloc[1:]) == {"held"}
    small = charts.height_buckets(
        height_ranges([("x", "held", 0, 9), ("x", "hole", 10, 19), ("x", "held", 20, 29)]), 3
    )
    assert small[["start", "end", "missing", "state"]].values.tolist() == [
        [0, 9, 0, "held"],
        [10, 19, 10, "missing"],
        [20, 29, 0, "held"],
    ]
    eth = buckets[buckets["chain"] == "ethereum"]
    assert eth[["start", "end", "state"]].values.tolist() == [[h, h, "held"] for h in range(10, 15)]
    assert charts.height_buckets(height_ranges([])).empty


def test_block_coverage_chart_has_one_strip_per_chain():
    ranges = height_ranges(
        [("bitcoin", "held", 0, 99), ("bitcoin", "hole", 100, 149), ("bitcoin", "held", 150, 99_999),
         ("ethereum", "held", 5, 9)]
    )  # fmt: skip
    fig = charts.block_coverage_chart(ranges, max_buckets=50)
    strips = [t for t in fig.data if t.type == "heatmap"]
    assert [t.y[0] for t in strips] == ["bitcoin", "ethereum"]
    assert len(strips[0].x) == 50
    assert strips[0].xaxis != strips[1].xaxis  # each chain keeps its own height axis
    assert "50 of 2,000 heights missing" in strips[0].text[0][0]
    assert {t.name for t in fig.data if t.type == "scatter"} == {"held", "partly missing"}
    only_held = charts.block_coverage_chart(height_ranges([("x", "held", 0, 9)]))
    assert only_held.layout.showlegend is True  # plotly hides a one-entry legend unless asked
    assert charts.block_coverage_chart(height_ranges([])).layout.annotations


def test_mark_findings_on_days_and_heights():
    frame = prices({"bitcoin": [0, 1, 2, 3]})
    day = D + timedelta(days=2)
    fig = charts.mark_findings(
        charts.price_lines(frame), {day: ["bitcoin: price_move (warn)"]}, severities={day: "error"}
    )
    marks = trace(fig, charts.FINDING_TRACE)
    assert [pd.Timestamp(x).date() for x in marks.x] == [day]
    assert marks.yaxis == "y9"
    assert list(marks.marker.color) == [charts.FINDING_COLORS["error"]]
    assert marks.hovertext == ("bitcoin: price_move (warn)",)
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(lines) == 1
    assert pd.Timestamp(lines[0].x0).date() == day
    blocks = pd.DataFrame({"block_id": list(range(100, 120)), "transaction_count": [5] * 20})
    heights = charts.mark_findings(charts.latest_blocks_chart(blocks, 6), {105: ["BTC: x (warn)"]})
    assert list(trace(heights, charts.FINDING_TRACE).x) == [105]
    assert list(trace(heights, charts.FINDING_TRACE).marker.color) == [charts.FINDING_COLORS["warn"]]
    untouched = charts.price_lines(frame)
    assert charts.mark_findings(untouched, {}) is untouched
    assert charts.FINDING_TRACE not in {t.name for t in untouched.data}


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
