"""Pure chart builders: DataFrame in, plotly Figure out (no Streamlit, so they unit-test on their own).

Days without data are shaded and marked with an "x" on a hidden overlay axis (so the marks sit at the
bottom whatever the scale, log included); the newest REORG_DEPTH blocks are shaded as provisional.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta

import pandas as pd
import plotly.graph_objects as go

STATUS_COLORS = {"success": "#21c354", "partial": "#ffa421", "failed": "#ff4b4b", "running": "#1c83e1"}
MISSING_COLOR = "#ff4b4b"
PROVISIONAL_COLOR = "#ffa421"
MISSING_TRACE = "Missing days"
PROVISIONAL_LABEL = "provisional"
_MARK_AXIS = "y9"
_HALF_DAY = timedelta(hours=12)
# Bar widths on a date axis are in milliseconds; plotly guesses them from the spacing, which fails
# for a single bar (it becomes a hairline), so set them.
DAY_BAR = 0.8 * 86_400_000
HOUR_BAR = 0.8 * 3_600_000


# ---------------------------------------------------------------------------------------------- helpers


def _as_date(value: date | datetime | pd.Timestamp) -> date:
    if isinstance(value, pd.Timestamp):
        return value.date()
    return value.date() if isinstance(value, datetime) else value


def gap_days(days: Iterable[date | datetime | pd.Timestamp]) -> list[date]:
    """Days between the first and last given day that are not in the given days."""
    held = {_as_date(d) for d in days}
    if not held:
        return []
    first, last = min(held), max(held)
    return [
        first + timedelta(days=i)
        for i in range((last - first).days + 1)
        if first + timedelta(days=i) not in held
    ]


def spans(days: Iterable[date]) -> list[tuple[date, date]]:
    """Contiguous runs of days, as (first, last) pairs."""
    result: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if result and (day - result[-1][1]).days == 1:
            result[-1] = (result[-1][0], day)
        else:
            result.append((day, day))
    return result


def _base(fig: go.Figure, *, y_title: str = "", height: int = 320) -> go.Figure:
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        hovermode="x unified",
        yaxis_title=y_title,
    )
    return fig


def day_axis(fig: go.Figure, days: Iterable[date | datetime | pd.Timestamp]) -> go.Figure:
    """A calendar-day x axis: whole-day ticks and half a day of padding (even for one day of data)."""
    stamps = [pd.Timestamp(d) for d in days]
    if not stamps:
        return fig
    first, last = min(stamps), max(stamps)
    fig.update_xaxes(type="date", tickformat="%b %d", range=[first - _HALF_DAY * 1.2, last + _HALF_DAY * 1.2])
    if (last - first).days < 10:
        fig.update_xaxes(dtick=86_400_000)
    return fig


def mark_missing(fig: go.Figure, missing: Mapping[date, list[str]] | Iterable[date]) -> go.Figure:
    """Shade days without data and add an 'x' per missing day (hover names the series it is missing in)."""
    by_day = dict(missing) if isinstance(missing, Mapping) else {d: [] for d in missing}
    if not by_day:
        return fig
    for first, last in spans(by_day):
        fig.add_vrect(
            x0=pd.Timestamp(first) - _HALF_DAY,
            x1=pd.Timestamp(last) + _HALF_DAY,
            fillcolor=MISSING_COLOR,
            opacity=0.12,
            line_width=0,
            layer="below",
        )
    days = sorted(by_day)
    fig.add_trace(
        go.Scatter(
            x=[pd.Timestamp(d) for d in days],
            y=[0.03] * len(days),
            mode="markers",
            marker={"symbol": "x", "size": 9, "color": MISSING_COLOR},
            name=MISSING_TRACE,
            yaxis=_MARK_AXIS,
            hovertext=[", ".join(by_day[d]) or "no data" for d in days],
            hoverinfo="text+x",
        )
    )
    fig.update_layout(yaxis9={"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True})
    return fig


def empty_figure(message: str) -> go.Figure:
    """A blank figure carrying a message (used only as a fallback: pages show empty states instead)."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _base(fig)


# ---------------------------------------------------------------------------------------------- prices


def missing_price_days(prices: pd.DataFrame) -> dict[date, list[str]]:
    """Day -> coins without a price that day, within each coin's first..last day in the frame."""
    missing: dict[date, list[str]] = {}
    for coin, rows in prices.groupby("coin_id", sort=True):
        for day in gap_days(rows["price_date"]):
            missing.setdefault(day, []).append(str(coin))
    return missing


def _lines(
    prices: pd.DataFrame, column: str, *, y_title: str, missing: Mapping[date, list[str]] | None
) -> go.Figure:
    fig = go.Figure()
    for coin, rows in prices.groupby("coin_id", sort=True):
        fig.add_trace(go.Scatter(x=rows["price_date"], y=rows[column], mode="lines", name=str(coin)))
    if prices.empty:
        return empty_figure("No data in this range")
    day_axis(fig, prices["price_date"])
    return mark_missing(_base(fig, y_title=y_title), missing or {})


def price_lines(
    prices: pd.DataFrame, *, log: bool = False, missing: Mapping[date, list[str]] | None = None
) -> go.Figure:
    """USD price per coin and day; `log` switches the y axis to a log scale."""
    fig = _lines(prices, "price_usd", y_title="Price (USD)", missing=missing)
    if log:
        fig.update_layout(yaxis_type="log")
    return fig


def normalise(prices: pd.DataFrame) -> pd.DataFrame:
    """Prices rebased so that each coin's first price in the frame is 100."""
    frame = prices.sort_values(["coin_id", "price_date"]).copy()
    first = frame.groupby("coin_id")["price_usd"].transform("first")
    frame["indexed"] = frame["price_usd"] / first * 100
    return frame


def normalised_prices(
    prices: pd.DataFrame, *, log: bool = False, missing: Mapping[date, list[str]] | None = None
) -> go.Figure:
    """Relative performance: every coin starts at 100 on its first day in the range."""
    fig = _lines(normalise(prices), "indexed", y_title="Index (start = 100)", missing=missing)
    fig.add_hline(y=100, line_dash="dot", opacity=0.4)
    if log:
        fig.update_layout(yaxis_type="log")
    return fig


def volume_chart(prices: pd.DataFrame, *, missing: Mapping[date, list[str]] | None = None) -> go.Figure:
    """24 h trading volume per coin and day."""
    return _lines(prices, "volume_usd", y_title="24 h volume (USD)", missing=missing)


def market_cap_chart(prices: pd.DataFrame, *, missing: Mapping[date, list[str]] | None = None) -> go.Figure:
    """Market capitalisation per coin and day."""
    return _lines(prices, "market_cap_usd", y_title="Market cap (USD)", missing=missing)


# ---------------------------------------------------------------------------------------------- chains


def missing_chain_days(daily: pd.DataFrame) -> list[date]:
    """Days between the first and last day of a per-day frame that have no blocks stored."""
    return gap_days(daily["day"]) if not daily.empty else []


def _bars(daily: pd.DataFrame, column: str, name: str, y_title: str, missing: Iterable[date]) -> go.Figure:
    if daily.empty:
        return empty_figure("No blocks in this range")
    fig = day_axis(go.Figure(go.Bar(x=daily["day"], y=daily[column], name=name, width=DAY_BAR)), daily["day"])
    return mark_missing(_base(fig, y_title=y_title), list(missing))


def blocks_per_day_chart(daily: pd.DataFrame, missing: Iterable[date] = ()) -> go.Figure:
    """Blocks stored per UTC day."""
    return _bars(daily, "blocks", "Blocks", "Blocks per day", missing)


def transactions_per_day_chart(tx_daily: pd.DataFrame, missing: Iterable[date] = ()) -> go.Figure:
    """Chain transactions per day (block headers) with the share stored as rows."""
    if tx_daily.empty:
        return empty_figure("No blocks in this range")
    fig = go.Figure(
        [
            go.Bar(
                x=tx_daily["day"], y=tx_daily["transactions"], name="On chain (block headers)", width=DAY_BAR
            ),
            go.Scatter(x=tx_daily["day"], y=tx_daily["stored"], name="Stored rows", mode="lines+markers"),
        ]
    )
    day_axis(fig, tx_daily["day"])
    return mark_missing(_base(fig, y_title="Transactions per day"), list(missing))


def fees_chart(daily: pd.DataFrame, unit: str, missing: Iterable[date] = ()) -> go.Figure:
    """Total fees per day in coin units (bars) and USD (line, right axis)."""
    if daily.empty:
        return empty_figure("No blocks in this range")
    fig = go.Figure(
        [
            go.Bar(x=daily["day"], y=daily["fees"], name=f"Fees ({unit})", width=DAY_BAR),
            go.Scatter(x=daily["day"], y=daily["fees_usd"], name="Fees (USD)", yaxis="y2", mode="lines"),
        ]
    )
    fig.update_layout(yaxis2={"overlaying": "y", "side": "right", "title": "USD", "showgrid": False})
    day_axis(fig, daily["day"])
    return mark_missing(_base(fig, y_title=f"Fees ({unit})"), list(missing))


def block_size_chart(daily: pd.DataFrame, missing: Iterable[date] = ()) -> go.Figure:
    """Average and largest block size per day, in kB."""
    if daily.empty:
        return empty_figure("No blocks in this range")
    fig = go.Figure(
        [
            go.Scatter(x=daily["day"], y=daily["avg_size"] / 1000, name="Average", mode="lines+markers"),
            go.Scatter(
                x=daily["day"], y=daily["max_size"] / 1000, name="Largest", mode="lines", line_dash="dot"
            ),
        ]
    )
    day_axis(fig, daily["day"])
    return mark_missing(_base(fig, y_title="Block size (kB)"), list(missing))


def latest_blocks_chart(blocks: pd.DataFrame, reorg_depth: int) -> go.Figure:
    """Transactions per block for the newest blocks; the newest `reorg_depth` heights shaded provisional."""
    if blocks.empty:
        return empty_figure("No blocks yet")
    fig = go.Figure(go.Bar(x=blocks["block_id"], y=blocks["transaction_count"], name="Transactions"))
    _base(fig, y_title="Transactions per block")
    fig.update_layout(hovermode="closest", xaxis_title="Height")
    tip = int(blocks["block_id"].max())
    if reorg_depth > 0:
        fig.add_vrect(
            x0=tip - reorg_depth + 0.5,
            x1=tip + 0.5,
            fillcolor=PROVISIONAL_COLOR,
            opacity=0.18,
            line_width=0,
            layer="below",
            annotation_text=f"{PROVISIONAL_LABEL} (last {reorg_depth})",
            annotation_position="top left",
        )
    return fig


# ------------------------------------------------------------------------------------- runs and storage


def runs_by_status_chart(per_hour: pd.DataFrame, *, x: str = "hour") -> go.Figure:
    """Runs per time bucket stacked by status, in the status colours."""
    if per_hour.empty:
        return empty_figure("No runs in this period")
    fig = go.Figure()
    for status, rows in per_hour.groupby("status", sort=True):
        width = DAY_BAR if x == "day" else HOUR_BAR
        color = STATUS_COLORS.get(str(status))
        fig.add_trace(go.Bar(x=rows[x], y=rows["runs"], name=str(status), marker_color=color, width=width))
    fig.update_layout(barmode="stack")
    if x == "day":
        day_axis(fig, per_hour[x])
    else:
        fig.update_xaxes(tickformat="%H:%M")
    return _base(fig, y_title="Runs", height=260)


def growth_chart(per_day: pd.DataFrame, *, group: str = "data_type", value: str = "rows") -> go.Figure:
    """Rows added per day, stacked by data type (or table), with the running total on the right axis."""
    if per_day.empty:
        return empty_figure("No growth recorded in this period")
    fig = go.Figure()
    for name, rows in per_day.groupby(group, sort=True):
        fig.add_trace(go.Bar(x=rows["day"], y=rows[value], name=str(name), width=DAY_BAR))
    total = per_day.groupby("day")[value].sum().cumsum()
    fig.add_trace(go.Scatter(x=total.index, y=total.values, name="Cumulative", yaxis="y2", mode="lines"))
    fig.update_layout(barmode="stack", yaxis2={"overlaying": "y", "side": "right", "showgrid": False})
    day_axis(fig, per_day["day"])
    return _base(fig, y_title="Rows per day")


def row_counts_chart(counts: Mapping[str, int]) -> go.Figure:
    """Rows per table as horizontal bars."""
    items = sorted(counts.items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[k for k, _ in items], orientation="h", name="Rows"))
    fig.update_layout(hovermode="closest")
    return _base(fig, height=max(220, 32 * len(items)))
