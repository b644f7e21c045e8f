"""Pure chart builders: DataFrame in, plotly Figure out (no Streamlit, so they unit-test on their own).

Days without data are shaded and marked with an "x" on a hidden overlay axis (so the marks sit at the
bottom whatever the scale, log included); days or heights named in data-quality findings get a dotted line
and a triangle at the top of that axis; the newest REORG_DEPTH blocks are shaded as provisional.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.coverage_frames import MarkKey, block_range_rows

STATUS_COLORS = {"success": "#21c354", "partial": "#ffa421", "failed": "#ff4b4b", "running": "#1c83e1"}
MISSING_COLOR = "#ff4b4b"
PROVISIONAL_COLOR = "#ffa421"
MISSING_TRACE = "Missing days"
FINDING_TRACE = "Quality findings"
FINDING_COLORS = {"warn": "#ffa421", "error": "#ff4b4b"}
FINDING_LINE_COLOR = "#9b59b6"
MAX_FINDING_LINES = 60
# Coverage states (pipeline.services.coverage.CellState) and block-bucket states, in legend order.
COVERAGE_COLORS = {"present": "#21c354", "missing": "#ffa421", "failed": "#ff4b4b", "unavailable": "#d5dae5"}
HEIGHT_COLORS = {"held": "#21c354", "partly missing": "#ffa421", "missing": "#ff4b4b"}
MAX_HEIGHT_BUCKETS = 120
PROVISIONAL_LABEL = "provisional"
_MARK_AXIS = "y9"
_HALF_DAY = timedelta(hours=12)
# Bar widths on a date axis are in milliseconds; plotly guesses them from the spacing, which fails
# for a single bar (it becomes a hairline), so set them.
DAY_BAR = 0.8 * 86_400_000
CHAIN_MIN_DAYS = 7  # the Blocks page's daily charts (and the Prices analytics) span at least a week
HOUR_BAR = 0.8 * 3_600_000


# ---------------------------------------------------------------------------------------------- helpers


def plain(text: object) -> str:
    """Text from outside (coin ids and names, chains, finding subjects) made literal for plotly.

    Plotly renders a small HTML subset in names, ticks, hovers and annotations (`<a href>` links, `<b>`,
    `<span style>`); it decodes entities only after it has found the tags, so escaping `&`, `<` and `>`
    shows the text exactly as written. (Markdown means nothing to plotly.)
    """
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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


def day_axis(
    fig: go.Figure, days: Iterable[date | datetime | pd.Timestamp], *, min_days: int = 1
) -> go.Figure:
    """A calendar-day x axis: whole-day ticks and half a day of padding (even for one day of data); at
    least `min_days` wide, widened into the past, so that a day or two of data are bars, not blocks."""
    stamps = [pd.Timestamp(d) for d in days]
    if not stamps:
        return fig
    first, last = min(stamps), max(stamps)
    first = min(first, last - timedelta(days=min_days - 1))
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
            hovertext=[plain(", ".join(by_day[d]) or "no data") for d in days],
            hoverinfo="text+x",
        )
    )
    fig.update_layout(yaxis9={"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True})
    return fig


def _mark_x(key: date | int) -> pd.Timestamp | int:
    return pd.Timestamp(key) if isinstance(key, date) else int(key)


def mark_findings(
    fig: go.Figure,
    marks: Mapping[MarkKey, list[str]],
    *,
    severities: Mapping[MarkKey, str] | None = None,
) -> go.Figure:
    """A dotted line and a triangle (top of the overlay axis) per day or height named in findings.

    `marks` maps a day (date axis) or a height (numeric axis) to the finding labels shown on hover;
    `severities` colours a mark red for an error, orange otherwise. Filter `marks` to the x range first:
    marks outside an autoranged axis would stretch it.
    """
    if not marks:
        return fig
    keys = sorted(marks)
    xs = [_mark_x(k) for k in keys]
    for x in xs[:MAX_FINDING_LINES]:
        fig.add_shape(
            type="line", x0=x, x1=x, y0=0, y1=1, xref="x", yref="paper", layer="below",
            line={"color": FINDING_LINE_COLOR, "width": 1, "dash": "dot"}, opacity=0.6,
        )  # fmt: skip
    level = severities or {}
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=[0.97] * len(xs),
            mode="markers",
            marker={
                "symbol": "triangle-down",
                "size": 10,
                "color": [FINDING_COLORS.get(level.get(k, "warn"), FINDING_LINE_COLOR) for k in keys],
                "line": {"color": FINDING_LINE_COLOR, "width": 1},
            },
            name=FINDING_TRACE,
            yaxis=_MARK_AXIS,
            hovertext=["<br>".join(plain(m) for m in marks[k]) for k in keys],
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
        fig.add_trace(go.Scatter(x=rows["price_date"], y=rows[column], mode="lines", name=plain(coin)))
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


def _bars(
    daily: pd.DataFrame,
    column: str,
    name: str,
    y_title: str,
    missing: Iterable[date],
    color: str | None = None,
) -> go.Figure:
    if daily.empty:
        return empty_figure("No blocks in this range")
    bar = go.Bar(
        x=daily["day"], y=daily[column], name=name, width=DAY_BAR, marker_color=color,
        hovertemplate=f"%{{y:,d}} {name.lower()}<extra></extra>",
    )  # fmt: skip
    fig = day_axis(go.Figure(bar), daily["day"], min_days=CHAIN_MIN_DAYS)
    fig.update_xaxes(hoverformat=HOVER_DAY)
    fig.update_yaxes(tickformat=",d")
    return mark_missing(_base(fig, y_title=y_title), list(missing))


def blocks_per_day_chart(
    daily: pd.DataFrame, missing: Iterable[date] = (), color: str | None = None
) -> go.Figure:
    """Blocks stored per UTC day (bars in the coin's colour when given)."""
    return _bars(daily, "blocks", "Blocks", "Blocks per day", missing, color)


def transactions_per_day_chart(
    tx_daily: pd.DataFrame, missing: Iterable[date] = (), color: str | None = None
) -> go.Figure:
    """Chain transactions per day (block headers) with the share stored as rows."""
    if tx_daily.empty:
        return empty_figure("No blocks in this range")
    fig = go.Figure(
        [
            go.Bar(
                x=tx_daily["day"], y=tx_daily["transactions"], name="On chain (block headers)", width=DAY_BAR,
                marker_color=color, hovertemplate="%{y:,.0f} on chain<extra></extra>",
            ),
            go.Scatter(
                x=tx_daily["day"], y=tx_daily["stored"], name="Stored rows", mode="lines+markers",
                line_color="#808495", hovertemplate="%{y:,.0f} stored<extra></extra>",
            ),
        ]
    )  # fmt: skip
    day_axis(fig, tx_daily["day"], min_days=CHAIN_MIN_DAYS)
    fig.update_xaxes(hoverformat=HOVER_DAY)
    fig.update_yaxes(tickformat=",d")
    return mark_missing(_base(fig, y_title="Transactions per day"), list(missing))


def fees_chart(
    daily: pd.DataFrame, unit: str, missing: Iterable[date] = (), color: str | None = None
) -> go.Figure:
    """Total fees per day in coin units (bars) and USD (line, right axis)."""
    if daily.empty:
        return empty_figure("No blocks in this range")
    fees, usd = floats(daily["fees"]), floats(daily["fees_usd"])
    fig = go.Figure(
        [
            go.Bar(
                x=daily["day"], y=fees, name=f"Fees ({plain(unit)})", width=DAY_BAR, marker_color=color,
                text=[f"{compact(v, 6)} {plain(unit)}" for v in fees], textposition="none",
                hovertemplate="%{text}<extra></extra>",
            ),
            go.Scatter(
                x=daily["day"], y=usd, name="Fees (USD)", yaxis="y2", mode="lines", line_color="#808495",
                text=[money(v) for v in usd], hovertemplate="%{text}<extra></extra>",
            ),
        ]
    )  # fmt: skip
    top = float(np.nanmax(usd)) if np.isfinite(usd).any() else 0.0
    ticks = zero_ticks(top)
    fig.update_layout(
        yaxis2={"overlaying": "y", "side": "right", "title": "USD", "showgrid": False, "tickmode": "array",
                "tickvals": ticks, "ticktext": [compact_money(v) for v in ticks],
                "range": [0, max(top, 1) * 1.08]}
    )  # fmt: skip
    day_axis(fig, daily["day"], min_days=CHAIN_MIN_DAYS)
    fig.update_xaxes(hoverformat=HOVER_DAY)
    return mark_missing(_base(fig, y_title=f"Fees ({plain(unit)})"), list(missing))


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
    day_axis(fig, daily["day"], min_days=CHAIN_MIN_DAYS)
    return mark_missing(_base(fig, y_title="Block size (kB)"), list(missing))


def latest_blocks_chart(blocks: pd.DataFrame, reorg_depth: int, color: str | None = None) -> go.Figure:
    """Transactions per block for the newest blocks; the newest `reorg_depth` heights shaded provisional."""
    if blocks.empty:
        return empty_figure("No blocks yet")
    fig = go.Figure(
        go.Bar(
            x=blocks["block_id"], y=blocks["transaction_count"], name="Transactions", marker_color=color,
            hovertemplate="block %{x:d}: %{y:,d} transactions<extra></extra>",
        )
    )  # fmt: skip
    _base(fig, y_title="Transactions per block")
    fig.update_layout(hovermode="closest", xaxis_title="Height")
    fig.update_xaxes(tickformat="d", hoverformat="d")  # heights are integers: never 870,139.0 or 870.1k
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
        fig.add_trace(go.Bar(x=rows[x], y=rows["runs"], name=plain(status), marker_color=color, width=width))
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
        fig.add_trace(go.Bar(x=rows["day"], y=rows[value], name=plain(name), width=DAY_BAR))
    total = per_day.groupby("day")[value].sum().cumsum()
    fig.add_trace(go.Scatter(x=total.index, y=total.values, name="Cumulative", yaxis="y2", mode="lines"))
    fig.update_layout(barmode="stack", yaxis2={"overlaying": "y", "side": "right", "showgrid": False})
    day_axis(fig, per_day["day"])
    return _base(fig, y_title="Rows per day")


def row_counts_chart(counts: Mapping[str, int]) -> go.Figure:
    """Rows per table as horizontal bars."""
    items = sorted(counts.items(), key=lambda kv: kv[1])
    fig = go.Figure(
        go.Bar(x=[v for _, v in items], y=[plain(k) for k, _ in items], orientation="h", name="Rows")
    )
    fig.update_layout(hovermode="closest")
    return _base(fig, height=max(220, 32 * len(items)))


# ---------------------------------------------------------------------------------------------- coverage


def _legend(fig: go.Figure, colors: Mapping[str, str], shown: Iterable[str]) -> None:
    """Legend entries for discrete heatmap colours (a heatmap has a colour bar, not a legend)."""
    for state in [s for s in colors if s in set(shown)]:
        fig.add_trace(
            go.Scatter(
                x=[None], y=[None], mode="markers", name=state, hoverinfo="skip",
                marker={"symbol": "square", "size": 12, "color": colors[state]},
            )
        )  # fmt: skip


def _discrete_scale(colors: Mapping[str, str]) -> list[list[float | str]]:
    """A step colour scale: code i of n (z in [-0.5, n - 0.5]) gets the i-th colour."""
    n = len(colors)
    scale: list[list[float | str]] = []
    for i, color in enumerate(colors.values()):
        scale += [[i / n, color], [(i + 1) / n, color]]
    return scale


def coverage_grid(ranges: pd.DataFrame) -> tuple[list[date], dict[str, list[str]]]:
    """The days from the first to the last range, and per coin the state of each day (ranges of equal
    state with columns coin_id, start, end, state; a day no range covers is 'unavailable')."""
    first = min(_as_date(d) for d in ranges["start"])
    last = max(_as_date(d) for d in ranges["end"])
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    grid: dict[str, list[str]] = {}
    for coin, start, end, state in zip(
        ranges["coin_id"], ranges["start"], ranges["end"], ranges["state"], strict=True
    ):
        row = grid.setdefault(str(coin), ["unavailable"] * len(days))
        a, b = (_as_date(start) - first).days, (_as_date(end) - first).days
        row[a : b + 1] = [str(state)] * (b - a + 1)
    return days, grid


def coverage_heatmap(ranges: pd.DataFrame, names: Mapping[str, str] | None = None) -> go.Figure:
    """Coin x day over the coverage window, coloured present / missing / failed / unavailable.

    `ranges` has one row per run of days in one state (coin_id, start, end, state), as
    `pipeline.services.coverage.PriceCoverage.ranges` gives them; `names` labels the coins. Built from
    plain lists (no per-day frame): a year of ten coins is 3,650 cells.
    """
    if ranges.empty:
        return empty_figure("No coins to show")
    days, grid = coverage_grid(ranges)
    codes = {state: i for i, state in enumerate(COVERAGE_COLORS)}
    coins = sorted(grid, reverse=True)  # the first coin on top
    fig = go.Figure(
        go.Heatmap(
            # numpy arrays: plotly validates (and copies) them far faster than nested lists
            z=np.array([[codes.get(s, codes["unavailable"]) for s in grid[c]] for c in coins], dtype=np.int8),
            x=np.array([d.isoformat() for d in days]),
            y=[plain((names or {}).get(c, c)) for c in coins],
            text=np.array([grid[c] for c in coins]),
            hovertemplate="%{y} · %{x|%Y-%m-%d}: %{text}<extra></extra>",
            colorscale=_discrete_scale(COVERAGE_COLORS),
            zmin=-0.5,
            zmax=len(COVERAGE_COLORS) - 0.5,
            showscale=False,
            ygap=3,
            name="coverage",
        )
    )
    _legend(fig, COVERAGE_COLORS, {s for row in grid.values() for s in set(row)})
    _base(fig, height=110 + 34 * len(coins))
    fig.update_layout(hovermode="closest", plot_bgcolor="rgba(0,0,0,0)", showlegend=True)
    fig.update_xaxes(type="date", tickformat="%b %d", showgrid=False)
    fig.update_yaxes(showgrid=False)
    return fig


def height_buckets(ranges: pd.DataFrame, max_buckets: int = MAX_HEIGHT_BUCKETS) -> pd.DataFrame:
    """Split each chain's stored height span into at most `max_buckets` equal buckets.

    `ranges` has rows (chain, kind, start, end) with kind "held" or "hole" (other kinds are ignored).
    Returns chain, start, end, missing (heights in holes) and state: held / partly missing / missing.
    """
    columns = ["chain", "start", "end", "missing", "state"]
    rows: list[tuple[str, int, int, int, str]] = []
    blocks = ranges[ranges["kind"].isin(["held", "hole"])] if not ranges.empty else ranges
    for chain, spans_ in blocks.groupby("chain", sort=True):
        low, high = int(spans_["start"].min()), int(spans_["end"].max())
        span = high - low + 1
        size = math.ceil(span / min(span, max_buckets))
        count = math.ceil(span / size)
        missing = [0] * count
        for hole in block_range_rows(spans_[spans_["kind"] == "hole"]):
            start, end = int(hole.start), int(hole.end)
            for i in range((start - low) // size, (end - low) // size + 1):
                first, last = low + i * size, min(low + (i + 1) * size - 1, high)
                missing[i] += min(end, last) - max(start, first) + 1
        for i, gone in enumerate(missing):
            first, last = low + i * size, min(low + (i + 1) * size - 1, high)
            state = "held" if not gone else "missing" if gone == last - first + 1 else "partly missing"
            rows.append((str(chain), first, last, gone, state))
    return pd.DataFrame(rows, columns=columns)


def block_coverage_chart(ranges: pd.DataFrame, max_buckets: int = MAX_HEIGHT_BUCKETS) -> go.Figure:
    """One strip per chain over its stored height span, in buckets: held, partly missing or missing."""
    buckets = height_buckets(ranges, max_buckets)
    if buckets.empty:
        return empty_figure("No blocks stored")
    chains = list(dict.fromkeys(buckets["chain"]))
    height = 70 + 100 * len(chains)
    # Leave room for each strip's height ticks (about 50 px) whatever the number of chains.
    fig = make_subplots(rows=len(chains), cols=1, vertical_spacing=min(0.3, 50 / (height - 40)))
    codes = {state: i for i, state in enumerate(HEIGHT_COLORS)}
    for row, chain in enumerate(chains, start=1):
        part = buckets[buckets["chain"] == chain]
        sizes = part["end"] - part["start"] + 1
        columns = (part["start"], part["end"], part["missing"], sizes, part["state"])
        hover = [
            f"{plain(chain)} {a:,}..{b:,}: " + (s if not m else f"{m:,} of {n:,} heights missing")
            for a, b, m, n, s in zip(*columns, strict=True)
        ]
        fig.add_trace(
            go.Heatmap(
                z=[[codes[s] for s in part["state"]]],
                x=list((part["start"] + part["end"]) / 2),
                y=[plain(chain)],
                text=[hover],
                hovertemplate="%{text}<extra></extra>",
                colorscale=_discrete_scale(HEIGHT_COLORS),
                zmin=-0.5,
                zmax=len(HEIGHT_COLORS) - 0.5,
                showscale=False,
                name=plain(chain),
            ),
            row=row,
            col=1,
        )
        fig.update_xaxes(tickformat=",d", showgrid=False, row=row, col=1)
    _legend(fig, HEIGHT_COLORS, buckets["state"])
    _base(fig, height=height)
    fig.update_layout(hovermode="closest", plot_bgcolor="rgba(0,0,0,0)", showlegend=True)
    fig.update_xaxes(title_text="Height", row=len(chains), col=1)
    return fig


# ---------------------------------------------------------------------------------------------- timeline

# The window choices of the runs timeline (hours back from now) and what a row stands for.
TIMELINE_WINDOWS = {"1h": 1, "6h": 6, "24h": 24, "7d": 168}
TIMELINE_ROWS = ("worker", "job")
NO_WORKER = "(no worker recorded)"
# The parts of a finished run, drawn in sequence over its status colour: the rate-limit wait hatched, the
# time on the wire solid, the rest (database and parsing) pale. Runs from before http_seconds was measured
# show the rest dotted ("not split"); a running run is one solid bar up to now.
SEGMENT_WAIT = "rate-limit wait"
SEGMENT_HTTP = "HTTP (on the wire)"
SEGMENT_REST = "database & parsing"
SEGMENT_UNSPLIT = "HTTP + database (older run: not split)"
_WAIT_PATTERN = {"shape": "/", "fgcolor": "rgba(20,20,20,0.6)", "bgcolor": "rgba(0,0,0,0)", "size": 6}
_UNSPLIT_PATTERN = {"shape": ".", "fgcolor": "rgba(20,20,20,0.6)", "bgcolor": "rgba(0,0,0,0)", "size": 5}
_PALE = "rgba(255,255,255,0.6)"
_CLEAR = "rgba(0,0,0,0)"
_KEY_GREY = "#7d8594"
_KEY_PALE = "#c9ccd3"  # the grey key under the pale overlay
_NOW_COLOR = "#808495"
_NO_LINE = {"width": 0}
# A bar is drawn at least this share of the window long, so that a two-second run stays visible (and
# clickable) on a day-long axis; its parts keep their proportions, the hover gives the real times.
MIN_BAR_SHARE = 0.003
HOVER = "%{hovertext}<br><i>click to open the run</i><extra></extra>"
TIMELINE_BAR = 0.72  # bar thickness, share of a row


def _utc(moment: datetime | pd.Timestamp) -> pd.Timestamp:
    """A moment as a tz-aware UTC Timestamp (a naive one is taken to be UTC)."""
    stamp = pd.Timestamp(moment)
    return stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC")


def _numbers(values: pd.Series) -> np.ndarray:
    """A column as floats, NaN for missing."""
    return np.asarray(pd.to_numeric(values, errors="coerce"), dtype=float)


def timeline_rows(runs: pd.DataFrame, by: str = "worker") -> pd.Series:
    """Each run's row label: its worker, or its job (source · data type · coin)."""
    if by == "job":
        coins = runs["coin"].fillna("–").astype(str)
        return runs["source"].astype(str) + " · " + runs["data_type"].astype(str) + " · " + coins
    return runs["worker_id"].fillna(NO_WORKER).astype(str)


def timeline_segments(runs: pd.DataFrame, *, now: datetime, since: datetime) -> pd.DataFrame:
    """Per run: start, end (now while running), real seconds and their split into wait, http and rest,
    and the drawn length (at least MIN_BAR_SHARE of the window) with the drawn milliseconds of each part.

    `wait` is capped at the duration and `http` at what is left; `split` is False while running and for
    runs recorded before http_seconds existed (their rest is HTTP and database together).
    """
    now_ts = _utc(now)
    start = pd.to_datetime(runs["started_at"], utc=True)
    end = pd.to_datetime(runs["finished_at"], utc=True)
    running = (runs["status"] == "running").to_numpy() | end.isna().to_numpy()
    end = end.where(~running, now_ts)
    elapsed = (end - start).dt.total_seconds().to_numpy(dtype=float)
    stored = _numbers(runs["duration_seconds"])
    seconds = np.clip(np.nan_to_num(np.where(running | np.isnan(stored), elapsed, stored)), 0.0, None)
    wait = np.where(running, 0.0, np.clip(np.nan_to_num(_numbers(runs["wait_seconds"])), 0.0, seconds))
    http_raw = _numbers(runs["http_seconds"])
    split = ~np.isnan(http_raw) & ~running
    http = np.where(split, np.clip(np.nan_to_num(http_raw), 0.0, seconds - wait), 0.0)
    window_ms = max((now_ts - _utc(since)).total_seconds(), 1.0) * 1000
    drawn = np.maximum(seconds * 1000, window_ms * MIN_BAR_SHARE)
    scale = np.divide(drawn, seconds * 1000, out=np.zeros_like(drawn), where=seconds > 0)
    wait_ms, http_ms = wait * 1000 * scale, http * 1000 * scale
    return pd.DataFrame(
        {
            "start": start,
            "end": end,
            "running": running,
            "split": split,
            "seconds": seconds,
            "wait": wait,
            "http": http,
            "rest": seconds - wait - http,
            "drawn_ms": drawn,
            "wait_ms": wait_ms,
            "http_ms": http_ms,
            "rest_ms": np.where(running, 0.0, drawn - wait_ms - http_ms),
        },
        index=runs.index,
    )


def timeline_split(parts: pd.DataFrame) -> dict[str, float]:
    """Seconds of the finished runs whose HTTP time is known, per part (wait, http, rest), and their
    count: where the time of a window went, readable whatever the bars' size."""
    known = parts[parts["split"]]
    return {
        "runs": float(len(known)),
        "wait": float(known["wait"].sum()),
        "http": float(known["http"].sum()),
        "rest": float(known["rest"].sum()),
    }


def _timeline_hover(runs: pd.DataFrame, rows: pd.Series, parts: pd.DataFrame) -> list[str]:
    """One hover text per run: which run, its row, when and how long, and the split."""
    texts = []
    columns = (
        runs["id"], runs["status"], runs["resolved_by_run_id"], rows, parts["start"], parts["running"],
        parts["split"], parts["seconds"], parts["wait"], parts["http"], parts["rest"],
    )  # fmt: skip
    for run_id, status, made_good, row, start, running, split, seconds, wait, http, rest in zip(
        *columns, strict=True
    ):
        head = f"<b>Run #{int(run_id)}</b> · {plain(status)}"
        if status == "failed" and pd.notna(made_good):
            head += f" (made good by run #{int(made_good)})"
        took = f"running for {seconds:,.1f} s" if running else f"took {seconds:,.1f} s"
        if running:
            detail = "the split is shown once it ends"
        elif split:
            detail = f"wait {wait:,.1f} s · HTTP {http:,.1f} s · database & parsing {rest:,.1f} s"
        else:
            detail = f"wait {wait:,.1f} s · HTTP + database {rest:,.1f} s (not split)"
        texts.append(f"{head}<br>{plain(row)}<br>started {start:%b %d %H:%M:%S} UTC, {took}<br>{detail}")
    return texts


def _key(fig: go.Figure, name: str, marker: Mapping[str, object], *, first: bool = False) -> None:
    """A legend-only entry for a part of a bar (told by texture, whatever the status colour)."""
    fig.add_trace(
        go.Bar(
            x=[None], y=[None], orientation="h", name=name, marker=dict(marker), hoverinfo="skip",
            legendgroup="parts", legendgrouptitle_text="Parts:" if first else None,
        )
    )  # fmt: skip


def run_timeline(
    runs: pd.DataFrame,
    *,
    now: datetime,
    hours: float,
    by: str = "worker",
    names: Mapping[str, str] | None = None,
) -> go.Figure:
    """A Gantt chart of runs over the last `hours` up to `now`: one row per worker (or per job), a bar per
    run from its start to its end (running ones to now) in its status colour, split in sequence into the
    rate-limit wait (hatched), HTTP (solid) and database & parsing (pale). Each bar's customdata is its
    run id (a click selects it); the hover tells the real times. `names` relabels rows."""
    if runs.empty:
        return empty_figure("No runs in this window")
    now_ts = _utc(now)
    since = now_ts - timedelta(hours=hours)
    rows = timeline_rows(runs, by)
    parts = timeline_segments(runs, now=now_ts, since=since)
    hover = np.array(_timeline_hover(runs, rows, parts), dtype=object)
    labels = rows.map(lambda r: plain((names or {}).get(r, r))).to_numpy(dtype=object)
    ids = runs["id"].to_numpy(dtype=np.int64)
    starts = parts["start"].dt.tz_localize(None).to_numpy()
    drawn = parts["drawn_ms"].to_numpy()
    status = runs["status"].astype(str).to_numpy()
    present = set(status)
    order = [s for s in STATUS_COLORS if s in present] + sorted(present - set(STATUS_COLORS))
    fig = go.Figure()
    for index, name in enumerate(order):
        pick = status == name
        fig.add_trace(
            go.Bar(
                orientation="h", y=labels[pick], x=drawn[pick], base=starts[pick], customdata=ids[pick],
                hovertext=hover[pick], hovertemplate=HOVER, width=TIMELINE_BAR,
                marker={"color": STATUS_COLORS.get(name, _KEY_GREY), "line": _NO_LINE}, name=plain(name),
                legendgroup="status", legendgrouptitle_text="Status:" if index == 0 else None,
            )
        )  # fmt: skip
    # The parts, drawn over the status bars; no hover of their own: the bar underneath answers (and a
    # click selects it).
    wait_ms, http_ms, rest_ms = (parts[c].to_numpy() for c in ("wait_ms", "http_ms", "rest_ms"))
    done, split = ~parts["running"].to_numpy(), parts["split"].to_numpy()
    layers = [
        (SEGMENT_WAIT, wait_ms, np.zeros_like(wait_ms), done & (wait_ms > 0),
         {"color": _CLEAR, "pattern": _WAIT_PATTERN, "line": _NO_LINE}),
        (SEGMENT_REST, rest_ms, wait_ms + http_ms, done & split, {"color": _PALE, "line": _NO_LINE}),
        (SEGMENT_UNSPLIT, rest_ms, wait_ms, done & ~split,
         {"color": _CLEAR, "pattern": _UNSPLIT_PATTERN, "line": _NO_LINE}),
    ]  # fmt: skip
    unsplit = False
    for name, length, offset, pick, marker in layers:
        if not pick.any():
            continue
        unsplit |= name == SEGMENT_UNSPLIT
        base = starts[pick] + (offset[pick] * 1000).astype("timedelta64[us]")
        fig.add_trace(
            go.Bar(
                orientation="h", y=labels[pick], x=length[pick], base=base, width=TIMELINE_BAR,
                marker=marker, hoverinfo="skip", showlegend=False, name=name,
            )
        )  # fmt: skip
    # The keys: grey bars with the texture of each part (a grey under the pattern: legible on any theme).
    wait_key, unsplit_key = (
        {**pattern, "bgcolor": _KEY_GREY} for pattern in (_WAIT_PATTERN, _UNSPLIT_PATTERN)
    )
    _key(fig, SEGMENT_WAIT, {"color": _KEY_GREY, "pattern": wait_key}, first=True)
    _key(fig, SEGMENT_HTTP, {"color": _KEY_GREY})
    _key(fig, SEGMENT_REST, {"color": _KEY_PALE})
    if unsplit:
        _key(fig, SEGMENT_UNSPLIT, {"color": _KEY_GREY, "pattern": unsplit_key})
    right = now_ts.tz_localize(None)
    fig.add_shape(
        type="line", x0=right, x1=right, y0=0, y1=1, xref="x", yref="paper",
        line={"color": _NOW_COLOR, "width": 1, "dash": "dot"},
    )  # fmt: skip
    _base(fig, height=170 + 36 * len(set(labels)))
    fig.update_layout(
        barmode="overlay",
        hovermode="closest",
        legend={"itemclick": False, "itemdoubleclick": False},
        margin={"l": 10, "r": 10, "t": 70, "b": 10},
    )
    fig.update_xaxes(type="date", range=[right - pd.Timedelta(hours=hours), right])
    fig.update_yaxes(type="category", categoryorder="category descending", automargin=True)
    return fig


# ---------------------------------------------------------------------------------------------- coins

# One colour per coin, the same on every page: the brand colours of the seed coins, and for any other coin
# a colour of FALLBACK_COLORS picked by a hash of its id (stable across runs, pages and processes).
COIN_COLORS = {"bitcoin": "#F7931A", "ethereum": "#627EEA", "dogecoin": "#3CB371"}
FALLBACK_COLORS = (
    "#17becf", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#7f7f7f", "#1f77b4", "#ff9896",
    "#c5b0d5", "#f7b6d2", "#dbdb8d",
)  # fmt: skip


def coin_color(coin_id: str) -> str:
    """The colour of a coin on every chart: a fixed one for the seed coins, else a hashed palette pick."""
    if coin_id in COIN_COLORS:
        return COIN_COLORS[coin_id]
    digest = hashlib.sha256(coin_id.encode()).digest()
    return FALLBACK_COLORS[int.from_bytes(digest[:4], "big") % len(FALLBACK_COLORS)]


def rgba(color: str, alpha: float) -> str:
    """A #rrggbb colour with an opacity, as plotly's rgba() text."""
    red, green, blue = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


# ---------------------------------------------------------------------------------------------- numbers

CURRENCY_SIGNS = {"usd": "$", "eur": "€", "gbp": "£", "btc": "₿", "jpy": "¥", "eth": "Ξ", "cny": "¥"}
_SUFFIXES = (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3))


def _finite(value: object) -> float | None:
    """A number as a finite float, or None (None, NaN, text, infinity)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def currency_sign(quote: str) -> str:
    """The sign of a quote currency ('$', '€', '£', '₿'), or '' when it has none we know."""
    return CURRENCY_SIGNS.get(quote.lower(), "")


def price_decimals(value: float) -> int:
    """Decimals that suit a price: 2 from 1 up (97,412.35), else 4 significant digits (0.1834,
    0.00001234), at most 12."""
    size = abs(value)
    if size >= 1 or size == 0:
        return 2
    return min(12, 3 - math.floor(math.log10(size)))


def number_text(value: object, decimals: int | None = None) -> str:
    """A number with thousands separators and precision by magnitude ('–' when missing)."""
    number = _finite(value)
    if number is None:
        return "–"
    places = price_decimals(number) if decimals is None else decimals
    return f"{number:,.{places}f}"


def money(value: object, quote: str = "usd", decimals: int | None = None) -> str:
    """An amount in a quote currency: '$97,412.35', '€0.1834', '₿0.00001234', '12.50 CHF'."""
    number = _finite(value)
    if number is None:
        return "–"
    sign = currency_sign(quote)
    text = number_text(abs(number), decimals)
    minus = "-" if number < 0 else ""
    return f"{minus}{sign}{text}" if sign else f"{minus}{text} {quote.upper()}"


def compact(value: object, digits: int = 3) -> str:
    """A number in few characters: 1k, 10k, 97.4k, 1.23B, 0.01, 0.00001."""
    number = _finite(value)
    if number is None:
        return "–"
    size = abs(number)
    for suffix, scale in _SUFFIXES:
        if size >= scale * 0.9995:
            return f"{float(f'{number / scale:.{digits}g}'):g}{suffix}".replace("e+", "e")
    if size == 0:
        return "0"
    rounded = float(f"{number:.{digits}g}")
    return np.format_float_positional(rounded, trim="-")


def compact_money(value: object, quote: str = "usd") -> str:
    """A large amount in few characters with its currency: '$1.23B', '€950M', '12.4k CHF'."""
    number = _finite(value)
    if number is None:
        return "–"
    sign = currency_sign(quote)
    text = compact(abs(number))
    minus = "-" if number < 0 else ""
    return f"{minus}{sign}{text}" if sign else f"{minus}{text} {quote.upper()}"


def plain_number(value: object) -> str:
    """A number as plain text for a CSV: the shortest digits that read back as the same float, never an
    exponent ('' when missing). Decimals keep all their digits."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        text = format(value, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    number = _finite(value)
    if number is None:
        return ""
    return np.format_float_positional(number, trim="-")


def native_text(value: object, decimals: int) -> str:
    """A coin amount for reading: 8-decimal coins (BTC) with all 8 decimals, 18-decimal coins (ETH) to
    about 6 significant digits (0.100000, 1,234.57); thousands separators; '–' when missing."""
    if value is None:
        return "–"
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    if not number.is_finite():
        return "–"
    if number == 0:
        return "0"
    if decimals <= 8:
        return f"{number:,.{decimals}f}"
    places = max(0, min(decimals, 5 - math.floor(math.log10(abs(number)))))
    return f"{number:,.{places}f}"


def percent(value: object, decimals: int = 2, *, signed: bool = True) -> str:
    """A ratio as a percentage: 0.0123 -> '+1.23%'."""
    number = _finite(value)
    if number is None:
        return "–"
    return f"{number * 100:{'+' if signed else ''},.{decimals}f}%"


def when(moment: datetime | pd.Timestamp, *, time: bool = True) -> str:
    """A UTC moment as 'Tue 2 Dec 2026 14:00 UTC' (or 'Tue 2 Dec 2026')."""
    stamp = _utc(moment)
    day = f"{stamp:%a} {stamp.day} {stamp:%b %Y}"
    return f"{day} {stamp:%H:%M} UTC" if time else day


HOVER_TIME = "%a %-d %b %Y %H:%M UTC"  # plotly's (d3) spelling of `when`
HOVER_DAY = "%a %-d %b %Y"


# ---------------------------------------------------------------------------------------------- axes


def nice_step(span: float, target: int = 5) -> float:
    """A 1-2-5 step that cuts `span` into about `target` parts."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 5.0, 10.0):
        if raw <= factor * magnitude * 1.0000001:
            return factor * magnitude
    return 10 * magnitude


def zero_ticks(top: float, least: int = 3) -> list[float]:
    """Round tick values from zero up to `top` (volumes, fees): 1-2-5 steps, at least `least` of them
    above zero."""
    if not top > 0 or not math.isfinite(top):
        return [0.0]
    step = nice_step(top, least)
    for target in range(least, least + 6):
        step = nice_step(top, target)
        if top / step >= least:
            break
    return [float(f"{step * i:.12g}") for i in range(int(top / step + 1e-9) + 1)]


def _unique_texts(values: list[float]) -> list[str]:
    """Compact tick texts with as many digits as it takes for every tick to read differently."""
    for digits in range(2, 9):
        texts = [compact(v, digits) for v in values]
        if len(set(texts)) == len(texts):
            return texts
    return [compact(v, 9) for v in values]


# Tick mantissas of a log axis, coarsest first: the first set that puts four ticks in range is used.
_MANTISSAS = (("1",), ("1", "3"), ("1", "2", "5"), ("1", "2", "3", "5", "7"), tuple("123456789"))


def log_ticks(low: float, high: float, max_ticks: int = 9) -> tuple[list[float], list[str]]:
    """Tick values and texts for a log axis over [low, high]: powers of ten (1, 10, 100, 1k, 10k...)
    when the range spans several decades, else 1-3, 1-2-5 ... multiples, else evenly spaced round values
    (a range narrower than a decade); at least two ticks in range, at most `max_ticks`."""
    if not (low > 0 and high > 0 and math.isfinite(low) and math.isfinite(high)):
        return [], []
    low, high = min(low, high), max(low, high)
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    values: list[float] = []
    for mantissas in _MANTISSAS:
        values = [
            v for e in range(first, last + 1) for m in mantissas if low <= (v := float(f"{m}e{e}")) <= high
        ]
        if len(values) >= 4:
            break
    if len(values) < 4:
        step = nice_step(high - low, 5)
        start = math.ceil(low / step) * step
        values = [float(f"{start + i * step:.12g}") for i in range(int((high - start) / step + 1e-9) + 1)]
        values = [v for v in values if v > 0]
    if len(values) > max_ticks:
        keep = math.ceil(len(values) / max_ticks)
        values = values[::keep]
    return values, _unique_texts(values)


def value_range(low: float, high: float, *, log: bool = False, pad: float = 0.07) -> list[float]:
    """An axis range around [low, high] with some padding, never thinner than 2% of its middle (one
    candle, or a flat day, then reads as a price, not as '7,815.94-7,817.917'); in log10 units for a
    log axis."""
    low, high = min(low, high), max(low, high)
    if log and low > 0:
        first, last = math.log10(low), math.log10(high)
        middle, span = (first + last) / 2, max(last - first, math.log10(1.02))
        return [middle - span / 2 - span * pad, middle + span / 2 + span * pad]
    middle = (low + high) / 2
    span = max(high - low, abs(middle) * 0.02, 1e-12)
    start, end = middle - span / 2 - span * pad, middle + span / 2 + span * pad
    if low >= 0 and start < 0:  # prices are never negative: keep the axis at or above zero
        start, end = 0.0, end - start
    return [start, end]


def tick_format_stops() -> list[dict[str, object]]:
    """Plotly tick formats by tick step for a linear axis: thousands separators and exactly the decimals
    the step needs (plotly's linear steps are 1, 2 or 5 times a power of ten), so that the ticks read
    0.16, 0.17 ... 0.20 and 97,000, 97,500, however far the user zooms."""
    stops: list[dict[str, object]] = [{"dtickrange": [1, None], "value": ",.0f"}]
    for decimals in range(1, 13):
        low, high = 10.0**-decimals, 10.0 ** -(decimals - 1)
        stops.append({"dtickrange": [low if decimals < 12 else None, high], "value": f",.{decimals}f"})
    return stops


def naive_times(values: Iterable[object]) -> pd.DatetimeIndex:
    """Moments as naive UTC timestamps (plotly's date axes have no time zone)."""
    return pd.DatetimeIndex(pd.to_datetime(pd.Series(list(values), dtype=object), utc=True)).tz_localize(None)


def floats(values: Iterable[object]) -> np.ndarray:
    """Numbers (floats, Decimals, None) as a float array with NaN for missing."""
    return np.asarray(pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce"), dtype=float)


INTERVAL_SPANS = {"1h": pd.Timedelta(hours=1), "4h": pd.Timedelta(hours=4), "1d": pd.Timedelta(days=1),
                  "1w": pd.Timedelta(days=7)}  # fmt: skip
INTERVAL_NAMES = {"1h": "Hourly", "4h": "4-hour", "1d": "Daily", "1w": "Weekly"}
SAMPLING_NAMES = {"5m": "5-minute samples", "1h": "hourly samples", "1d": "daily snapshots"}
MIN_SLOTS = 8  # a chart shows at least this many intervals, so that one candle is a candle, not a block


def time_range(
    first: pd.Timestamp, last: pd.Timestamp, interval: str, window: Sequence[object] | None = None
) -> list[pd.Timestamp]:
    """An x range over the data with room for the first and last bodies, covering the requested
    `window` (start, end) too, so that a range with little data shows where the data is missing; at least
    MIN_SLOTS intervals wide, widened into the past (never into an empty future)."""
    slot = INTERVAL_SPANS.get(interval, pd.Timedelta(days=1))
    left, right = first - slot * 0.7, last + slot * 0.7
    if window is not None:
        start, end = naive_times(window)
        left, right = min(left, start), max(right, min(end, last + slot))
    if right - left < slot * MIN_SLOTS:
        left = right - slot * MIN_SLOTS
    return [left, right]


def time_axis(
    fig: go.Figure,
    first: pd.Timestamp,
    last: pd.Timestamp,
    interval: str,
    window: Sequence[object] | None = None,
) -> go.Figure:
    """A UTC time axis over the data (and the requested window): padded range, hover with weekday, date
    and time, tick labels in days (with the hour when the range is short)."""
    x_range = time_range(first, last, interval, window)
    short = x_range[1] - x_range[0] <= pd.Timedelta(days=3)
    fig.update_xaxes(
        type="date",
        range=x_range,
        hoverformat=HOVER_TIME,
        tickformat="%H:%M\n%-d %b" if short else "%-d %b\n%Y",
        showspikes=True,
        spikemode="across",
        spikethickness=1,
        spikedash="dot",
        spikecolor="#999",
    )
    return fig


# ---------------------------------------------------------------------------------------------- candles

UP_COLOR = "#26a69a"
DOWN_COLOR = "#ef5350"
HISTORY_COLOR = "#8a8f98"
PRICE_HEIGHT = 470
HISTORY_TRACE = "Daily close (no candles)"
MISSING_CANDLES = "Missing candles"


def candle_texts(candles: pd.DataFrame, quote: str, interval: str) -> list[str]:
    """Hover text of each candle: open, high, low, close in the quote's currency, the change, the volume,
    and what it was built from."""
    texts = []
    columns = (candles[c] for c in ("open", "high", "low", "close", "volume", "samples", "sampling"))
    for o, h, lo, c, volume, samples, sampling in zip(*columns, strict=True):
        first, last = _finite(o), _finite(c)
        change = last / first - 1 if first and last is not None else None
        source = SAMPLING_NAMES.get(str(sampling), str(sampling))
        count = int(samples)
        texts.append(
            f"open {money(o, quote)} · high {money(h, quote)}<br>low {money(lo, quote)} · close "
            f"{money(c, quote)} ({percent(change)})<br>volume {compact_money(volume, quote)} · "
            f"{INTERVAL_NAMES.get(interval, interval).lower()} candle from {count:,} "
            f"{source if count != 1 else source.removesuffix('s')}"
        )
    return texts


def split_history(candles: pd.DataFrame, history: pd.DataFrame | None) -> pd.DataFrame:
    """The daily points of each coin from before its first candle (or all of them when it has none):
    the part of the range that only the daily snapshots cover."""
    if history is None or history.empty:
        return pd.DataFrame(columns=["coin_id", "ts", "price", "volume"])
    firsts = candles.groupby("coin_id")["start"].min() if not candles.empty else pd.Series(dtype=object)
    keep = [
        coin not in firsts.index or pd.Timestamp(ts) < pd.Timestamp(firsts[coin])
        for coin, ts in zip(history["coin_id"], history["ts"], strict=True)
    ]
    return history[keep].reset_index(drop=True)


def missing_buckets(candles: pd.DataFrame, interval: str) -> dict[pd.Timestamp, list[str]]:
    """Bucket start -> coins without a candle there, between each coin's first and last candle."""
    slot = INTERVAL_SPANS.get(interval)
    missing: dict[pd.Timestamp, list[str]] = {}
    if slot is None or candles.empty:
        return missing
    for coin, rows in candles.groupby("coin_id", sort=True):
        starts = naive_times(rows["start"])
        held = set(starts)
        expected = pd.date_range(starts.min(), starts.max(), freq=slot)
        for start in expected:
            if start not in held:
                missing.setdefault(start, []).append(str(coin))
    return missing


def mark_missing_buckets(
    fig: go.Figure, missing: Mapping[pd.Timestamp, list[str]], interval: str
) -> go.Figure:
    """Shade buckets without a candle and put an 'x' under each run of them (hover: when, which coins)."""
    if not missing:
        return fig
    slot = INTERVAL_SPANS[interval]
    runs: list[list[pd.Timestamp]] = []
    for start in sorted(missing):
        if runs and start - runs[-1][-1] == slot:
            runs[-1].append(start)
        else:
            runs.append([start])
    for run in runs:
        fig.add_vrect(
            x0=run[0] - slot / 2, x1=run[-1] + slot / 2, fillcolor=MISSING_COLOR, opacity=0.12,
            line_width=0, layer="below",
        )  # fmt: skip
    hover = []
    for run in runs:
        coins = sorted({c for start in run for c in missing[start]})
        hover.append(
            f"{len(run)} × {interval} missing: {when(run[0])} – {when(run[-1] + slot)}<br>"
            + plain(", ".join(coins))
        )
    fig.add_trace(
        go.Scatter(
            x=[run[0] + (run[-1] - run[0]) / 2 for run in runs], y=[0.03] * len(runs), mode="markers",
            marker={"symbol": "x", "size": 9, "color": MISSING_COLOR}, name=MISSING_CANDLES,
            yaxis=_MARK_AXIS, hovertext=hover, hoverinfo="text",
        )
    )  # fmt: skip
    fig.update_layout(yaxis9={"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True})
    return fig


def mark_missing_history(fig: go.Figure, history: pd.DataFrame) -> go.Figure:
    """Mark the days without a daily snapshot inside the daily part of each coin."""
    if history.empty:
        return fig
    days = history.assign(price_date=naive_times(history["ts"]))
    return mark_missing(fig, missing_price_days(days))


def _history_trace(rows: pd.DataFrame, quote: str, color: str, name: str, **extra: object) -> go.Scatter:
    prices = floats(rows["price"])
    return go.Scatter(
        x=naive_times(rows["ts"]), y=prices, mode="lines+markers" if len(rows) < 40 else "lines", name=name,
        line={"color": color, "width": 1.6, "dash": "dot"}, marker={"size": 4},
        text=[money(p, quote) + " (daily snapshot, 00:00 UTC)" for p in prices],
        hovertemplate="%{text}<extra></extra>", **extra,
    )  # fmt: skip


def _add_price_row(
    fig: go.Figure, candles: pd.DataFrame, history: pd.DataFrame, *, quote: str, interval: str, row: int,
    name: str, legend: bool,
) -> tuple[float, float] | None:  # fmt: skip
    """One coin's candles and its daily part in a row of `fig`; returns the low and high drawn."""
    lows, highs = [], []
    if not history.empty:
        fig.add_trace(
            _history_trace(history, quote, HISTORY_COLOR, f"{name}: {HISTORY_TRACE}", showlegend=legend),
            row=row, col=1,
        )  # fmt: skip
        prices = floats(history["price"])
        lows.append(np.nanmin(prices))
        highs.append(np.nanmax(prices))
    if not candles.empty:
        fig.add_trace(
            go.Candlestick(
                x=naive_times(candles["start"]), open=floats(candles["open"]), high=floats(candles["high"]),
                low=floats(candles["low"]), close=floats(candles["close"]), name=name,
                increasing={"line": {"color": UP_COLOR, "width": 1}, "fillcolor": UP_COLOR},
                decreasing={"line": {"color": DOWN_COLOR, "width": 1}, "fillcolor": DOWN_COLOR},
                text=candle_texts(candles, quote, interval), hovertemplate="%{text}<extra></extra>",
                whiskerwidth=0.3, showlegend=legend,
            ),
            row=row, col=1,
        )  # fmt: skip
        lows.append(np.nanmin(floats(candles["low"])))
        highs.append(np.nanmax(floats(candles["high"])))
    if not lows:
        return None
    return float(min(lows)), float(max(highs))


def _x_bounds(*frames: tuple[pd.DataFrame, str]) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    stamps = [s for frame, column in frames if not frame.empty for s in naive_times(frame[column])]
    return (min(stamps), max(stamps)) if stamps else None


def candles_figure(
    candles: pd.DataFrame,
    *,
    quote: str = "usd",
    interval: str = "1d",
    history: pd.DataFrame | None = None,
    log: bool = False,
    name: str = "",
    window: Sequence[object] | None = None,
    height: int = PRICE_HEIGHT,
) -> go.Figure:
    """One coin: candlesticks over a volume panel on a shared time axis.

    `candles` has the columns of `CandleData` (start, open, high, low, close, volume, samples, sampling);
    `history` holds daily points (coin_id, ts, price, volume) of the part of the range before the first
    candle, drawn as a dotted line of daily closes (never as made-up candles); their 24 h volume is drawn
    only on a daily chart, where it compares with a day's candle. Gaps between candles are shaded.
    """
    older = split_history(candles, history)
    bounds = _x_bounds((candles, "start"), (older, "ts"))
    if bounds is None:
        return empty_figure("No prices in this range")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.76, 0.24], vertical_spacing=0.03)
    label = plain(name) or "Price"
    drawn = _add_price_row(
        fig, candles, older, quote=quote, interval=interval, row=1, name=label, legend=not older.empty,
    )  # fmt: skip
    if drawn is not None:
        price_axis(fig, *drawn, quote=quote, log=log, row=1, title=f"Price ({quote.upper()})")
    _volume_row(fig, candles, older, quote=quote, interval=interval)
    time_axis(fig, *bounds, interval, window)
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.01, "x": 0},
        hovermode="x unified",
        hoversubplots="axis",
        xaxis_rangeslider_visible=False,
        showlegend=True,
        bargap=0.15,
    )
    mark_missing_buckets(fig, missing_buckets(candles, interval), interval)
    return mark_missing_history(fig, older)


def _volume_row(
    fig: go.Figure, candles: pd.DataFrame, older: pd.DataFrame, *, quote: str, interval: str
) -> None:
    """Volume bars under the candles: up candles green, down red; the daily part's 24 h volume (grey)
    only on a daily chart."""
    width = INTERVAL_SPANS.get(interval, pd.Timedelta(days=1)).total_seconds() * 1000 * 0.55
    top = 0.0
    if not candles.empty:
        volume = floats(candles["volume"])
        up = floats(candles["close"]) >= floats(candles["open"])
        fig.add_trace(
            go.Bar(
                x=naive_times(candles["start"]), y=volume, width=width, name="Volume", showlegend=False,
                marker={"color": [rgba(UP_COLOR if u else DOWN_COLOR, 0.55) for u in up], "line_width": 0},
                text=[f"volume {compact_money(v, quote)}" for v in volume], textposition="none",
                hovertemplate="%{text}<extra></extra>",
            ),
            row=2, col=1,
        )  # fmt: skip
        top = max(top, float(np.nanmax(volume)) if np.isfinite(volume).any() else 0.0)
    if interval == "1d" and not older.empty and "volume" in older:
        volume = floats(older["volume"])
        if np.isfinite(volume).any():
            fig.add_trace(
                go.Bar(
                    x=naive_times(older["ts"]), y=volume, width=width, name="24 h volume (daily snapshot)",
                    showlegend=False, marker={"color": rgba(HISTORY_COLOR, 0.45), "line_width": 0},
                    text=[f"24 h volume {compact_money(v, quote)}" for v in volume], textposition="none",
                    hovertemplate="%{text}<extra></extra>",
                ),
                row=2, col=1,
            )  # fmt: skip
            top = max(top, float(np.nanmax(volume)))
    if top > 0:
        values = zero_ticks(top)[1:]
        fig.update_yaxes(
            range=[0, top * 1.12], tickvals=values, ticktext=[compact_money(v, quote) for v in values],
            title_text="Volume", row=2, col=1,
        )  # fmt: skip
    else:
        fig.update_yaxes(visible=False, row=2, col=1)


# ---------------------------------------------------------------------------------------------- compare


def value_axis(
    fig: go.Figure, low: float, high: float, *, log: bool, prefix: str = "", row: int | None = None,
    title: str | None = None,
) -> go.Figure:  # fmt: skip
    """A numeric y axis over [low, high]: padded range; on a log scale hand-made ticks (1, 10, 100, 1k
    ...) with `prefix`, else thousands separators and the decimals the step needs."""
    where = {"row": row, "col": 1} if row is not None else {}
    axis: dict[str, object] = {"title_text": title}
    if log and low > 0:
        span = value_range(low, high, log=True)
        values, texts = log_ticks(10 ** span[0], 10 ** span[1])
        axis |= {"type": "log", "range": span, "tickvals": values, "ticktext": [prefix + t for t in texts]}
    else:
        axis |= {"type": "linear", "range": value_range(low, high), "tickformatstops": tick_format_stops(),
                 "tickprefix": prefix, "tickvals": None, "ticktext": None}  # fmt: skip
    fig.update_yaxes(**axis, **where)
    return fig


def price_axis(
    fig: go.Figure, low: float, high: float, *, quote: str, log: bool, row: int | None = None,
    title: str | None = None,
) -> go.Figure:  # fmt: skip
    """A price axis: `value_axis` with the quote's currency sign on the ticks."""
    return value_axis(fig, low, high, log=log, prefix=currency_sign(quote), row=row, title=title)


def close_series(candles: pd.DataFrame, history: pd.DataFrame | None) -> pd.DataFrame:
    """Per coin, its prices as moments in time, oldest first: the daily snapshots from before its first
    candle, then each candle's close at the candle's end (the newest one at most at now), preceded by the
    first candle's open at its start when no snapshot comes before it, so that a line starts at the price
    the range starts with (columns coin_id, ts (naive UTC), close (float), part 'daily' or 'candle')."""
    older = split_history(candles, history)
    columns = ["coin_id", "ts", "close", "part"]
    parts = [pd.DataFrame({"coin_id": older["coin_id"].astype(str), "ts": naive_times(older["ts"]),
                           "close": floats(older["price"]), "part": "daily"})]  # fmt: skip
    if not candles.empty:
        spans = pd.to_timedelta([INTERVAL_SPANS.get(str(i), pd.Timedelta(0)) for i in candles["interval"]])
        starts = naive_times(candles["start"])
        now = pd.Timestamp.now(tz="UTC").tz_localize(None)
        ends = pd.DatetimeIndex(
            np.minimum((starts + spans).to_numpy(), max(now, starts.max()).to_datetime64())
        )
        parts.append(pd.DataFrame({"coin_id": candles["coin_id"].astype(str), "ts": ends,
                                   "close": floats(candles["close"]), "part": "candle"}))  # fmt: skip
        firsts = candles.assign(_start=starts).sort_values("_start").groupby("coin_id", sort=False).head(1)
        firsts = firsts[~firsts["coin_id"].isin(set(older["coin_id"]))]
        parts.append(pd.DataFrame({"coin_id": firsts["coin_id"].astype(str), "ts": firsts["_start"],
                                   "close": floats(firsts["open"]), "part": "candle"}))  # fmt: skip
    present = [p for p in parts if not p.empty]
    frame = pd.concat(present, ignore_index=True) if present else pd.DataFrame(columns=columns)
    return frame.sort_values(["coin_id", "ts"], kind="stable").reset_index(drop=True)


def opening_prices(candles: pd.DataFrame, history: pd.DataFrame | None) -> dict[str, float]:
    """Each coin's price at the start of the range: its first daily snapshot when the range starts
    before its candles, else its first candle's open (what a change "over the range" is measured from)."""
    older = split_history(candles, history)
    first: dict[str, float] = {}
    for coin, price in zip(older["coin_id"], floats(older["price"]), strict=True):
        if np.isfinite(price):
            first.setdefault(str(coin), float(price))
    for coin, price in zip(candles["coin_id"], floats(candles["open"]), strict=True):
        if np.isfinite(price):
            first.setdefault(str(coin), float(price))
    return first


def spread(levels: Mapping[str, float]) -> float:
    """How many times the highest of some positive prices is the lowest (1.0 for fewer than two)."""
    values = [v for v in levels.values() if _finite(v) and v > 0]
    return max(values) / min(values) if len(values) > 1 else 1.0


def should_normalise(levels: Mapping[str, float]) -> bool:
    """Whether coins whose prices are `levels` compare only when rebased to 100: more than 10x apart."""
    return spread(levels) > 10


def resolve_mode(mode: str, levels: Mapping[str, float]) -> str:
    """The compare view to draw: 'auto' becomes 'index' when the prices are more than 10x apart, else
    'price'; 'index', 'price' and 'multiples' stay."""
    if mode == "auto":
        return "index" if should_normalise(levels) else "price"
    return mode


def compare_figure(
    candles: pd.DataFrame,
    *,
    quote: str = "usd",
    interval: str = "1d",
    history: pd.DataFrame | None = None,
    mode: str = "index",
    log: bool = False,
    names: Mapping[str, str] | None = None,
    window: Sequence[object] | None = None,
    coins: Sequence[str] = (),
    height: int = PRICE_HEIGHT,
) -> go.Figure:
    """Several coins on one axis, one line each in its own colour (in the order of `coins`): closes in
    `quote` (mode 'price') or rebased to 100 at each coin's price at the range's start (mode 'index'). Each
    coin's daily part (before its first candle) is dotted; gaps are marked."""
    series = close_series(candles, history)
    if series.empty:
        return empty_figure("No prices in this range")
    fig = go.Figure()
    index = mode == "index"
    lows, highs = [], []
    present = list(dict.fromkeys(series["coin_id"]))
    order = [c for c in coins if c in present] + [c for c in present if c not in coins]
    for coin in order:
        rows = series[series["coin_id"] == coin]
        name = plain((names or {}).get(str(coin), coin))
        color = coin_color(str(coin))
        closes = rows["close"].to_numpy(dtype=float)
        base = closes[np.isfinite(closes)][0] if np.isfinite(closes).any() else np.nan  # the range's start
        values = closes / base * 100 if index else closes
        texts = [
            f"{name} {v:,.1f} ({money(c, quote)})" if index else f"{name} {money(c, quote)}"
            for v, c in zip(values, closes, strict=True)
        ]
        daily = (rows["part"] == "daily").to_numpy()
        if daily.any():
            # Up to and including the first candle, so that the dotted daily part meets the solid line.
            upto = int(np.argmin(daily)) + 1 if not daily.all() else len(rows)
            fig.add_trace(
                go.Scatter(
                    x=rows["ts"].iloc[:upto], y=values[:upto], mode="lines", name=f"{name} (daily closes)",
                    line={"color": color, "width": 1.6, "dash": "dot"}, legendgroup=str(coin),
                    showlegend=bool(daily.all()), text=texts[:upto], hovertemplate="%{text}<extra></extra>",
                )
            )  # fmt: skip
        if not daily.all():
            fig.add_trace(
                go.Scatter(
                    x=rows["ts"][~daily], y=values[~daily], mode="lines", name=name, legendgroup=str(coin),
                    line={"color": color, "width": 2}, hovertemplate="%{text}<extra></extra>",
                    text=[t for t, d in zip(texts, daily, strict=True) if not d],
                )
            )  # fmt: skip
        lows.append(np.nanmin(values))
        highs.append(np.nanmax(values))
    if index:
        fig.add_hline(y=100, line={"color": "#888", "width": 1, "dash": "dot"})
        value_axis(fig, min(lows), max(highs), log=log, title="Index (range start = 100)")
    else:
        price_axis(fig, min(lows), max(highs), quote=quote, log=log, title=f"Price ({quote.upper()})")
    time_axis(fig, series["ts"].min(), series["ts"].max(), interval, window)
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.01, "x": 0},
        hovermode="x unified",
        showlegend=True,
    )
    mark_missing_buckets(fig, missing_buckets(candles, interval), interval)
    return mark_missing_history(fig, split_history(candles, history))


def multiples_figure(
    candles: pd.DataFrame,
    *,
    quote: str = "usd",
    interval: str = "1d",
    history: pd.DataFrame | None = None,
    log: bool = False,
    coins: Sequence[str] = (),
    names: Mapping[str, str] | None = None,
    window: Sequence[object] | None = None,
) -> go.Figure:
    """Small multiples: one row of candles per coin, each with its own price axis, on one time axis."""
    older = split_history(candles, history)
    shown = [c for c in coins if (candles["coin_id"] == c).any() or (older["coin_id"] == c).any()]
    bounds = _x_bounds((candles, "start"), (older, "ts"))
    if not shown or bounds is None:
        return empty_figure("No prices in this range")
    titles = [plain((names or {}).get(c, c)) for c in shown]
    height = max(PRICE_HEIGHT, 210 * len(shown) + 40)
    fig = make_subplots(
        rows=len(shown), cols=1, shared_xaxes=True, subplot_titles=titles,
        vertical_spacing=min(0.08, 60 / height),
    )  # fmt: skip
    for row, coin in enumerate(shown, start=1):
        drawn = _add_price_row(
            fig, candles[candles["coin_id"] == coin], older[older["coin_id"] == coin], quote=quote,
            interval=interval, row=row, name=titles[row - 1], legend=False,
        )  # fmt: skip
        if drawn is not None:
            price_axis(fig, *drawn, quote=quote, log=log, row=row)
    for annotation in fig.layout.annotations:  # the coin names, left-aligned in their colour
        if annotation.text in titles:
            color = coin_color(shown[titles.index(annotation.text)])
            annotation.update(x=0, xanchor="left", font={"color": color, "size": 13})
    time_axis(fig, *bounds, interval, window)
    fig.update_xaxes(rangeslider_visible=False)
    fig.update_layout(
        height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10}, hovermode="x unified",
        hoversubplots="axis", showlegend=False,
    )  # fmt: skip
    return mark_missing_buckets(fig, missing_buckets(candles, interval), interval)


# ---------------------------------------------------------------------------------------------- analytics

ANALYTICS_HEIGHT = 300
YEAR_ROOT = math.sqrt(365)  # crypto trades every day: annualise a daily sigma with sqrt(365)


def _stat_lines(
    stats: pd.DataFrame,
    column: str,
    *,
    names: Mapping[str, str] | None,
    text: str,
    coins: Sequence[str] = (),
    fill: bool = False,
    width: float = 1.6,
) -> go.Figure:
    fig = go.Figure()
    present = list(dict.fromkeys(str(c) for c in stats["coin_id"]))
    for coin in [c for c in coins if c in present] + [c for c in present if c not in coins]:
        rows = stats[stats["coin_id"] == coin]
        values = floats(rows[column])
        if not np.isfinite(values).any():
            continue
        name = plain((names or {}).get(str(coin), coin))
        color = coin_color(str(coin))
        texts = [text.format(name=name, v=percent(v, signed=column == "daily_return"),
                             year=percent(v * YEAR_ROOT, 0, signed=False)) for v in values]  # fmt: skip
        fig.add_trace(
            go.Scatter(
                x=naive_times(rows["day"]), y=values, mode="lines", name=name,
                line={"color": color, "width": width}, fill="tozeroy" if fill else None,
                fillcolor=rgba(color, 0.12) if fill else None, text=texts,
                hovertemplate="%{text}<extra></extra>", connectgaps=False,
            )
        )  # fmt: skip
    if not fig.data:
        return empty_figure("Not enough daily closes in this range")
    day_axis(fig, stats["day"], min_days=CHAIN_MIN_DAYS)
    fig.update_xaxes(hoverformat=HOVER_DAY, tickformat="%-d %b\n%Y")
    return _base(fig, height=ANALYTICS_HEIGHT)


def returns_chart(
    stats: pd.DataFrame, names: Mapping[str, str] | None = None, coins: Sequence[str] = ()
) -> go.Figure:
    """Daily return (close over the previous day's close) per coin, in percent."""
    fig = _stat_lines(stats, "daily_return", names=names, text="{name} {v}", coins=coins, width=1.0)
    if fig.data:
        fig.add_hline(y=0, line={"color": "#888", "width": 1})
        fig.update_yaxes(tickformat=".0%", title_text="Daily return")
    return fig


def volatility_chart(
    stats: pd.DataFrame, names: Mapping[str, str] | None = None, coins: Sequence[str] = ()
) -> go.Figure:
    """30-day volatility per coin: the standard deviation of the last 30 daily returns (not annualised;
    the hover adds the annualised figure, times the square root of 365)."""
    text = "{name} σ {v} a day (≈ {year} a year)"
    fig = _stat_lines(stats, "volatility_30d", names=names, text=text, coins=coins)
    if fig.data:
        fig.update_yaxes(tickformat=".1%", rangemode="tozero", title_text="30-day σ of daily returns")
    return fig


def drawdown_chart(
    stats: pd.DataFrame, names: Mapping[str, str] | None = None, coins: Sequence[str] = ()
) -> go.Figure:
    """Drawdown per coin: how far the close is below the highest close so far (0 at a new peak)."""
    fig = _stat_lines(stats, "drawdown", names=names, text="{name} {v} from its peak", coins=coins, fill=True)
    if fig.data:
        deepest = float(np.nanmin(floats(stats["drawdown"])))
        fig.update_yaxes(
            tickformat=".0%", range=[min(deepest * 1.1, -0.01), 0.005], title_text="Below running peak"
        )
    return fig


def shared_return_days(stats: pd.DataFrame, coins: Sequence[str]) -> pd.DataFrame:
    """Coin x coin: the days on which both coins have a daily return (what a correlation stands on)."""
    if stats.empty:
        return pd.DataFrame(0, index=list(coins), columns=list(coins))
    held = stats.pivot_table(index="day", columns="coin_id", values="daily_return", aggfunc="first")
    held = held.reindex(columns=list(coins)).notna().astype(int)
    return held.T.dot(held)


def correlation_heatmap(
    matrix: pd.DataFrame, names: Mapping[str, str] | None = None, counts: pd.DataFrame | None = None
) -> go.Figure:
    """Coin x coin Pearson correlation of daily returns, -1..1 on a diverging scale (red negative, blue
    positive), each cell annotated; a pair with too few shared days reads 'n/a'."""
    coins = [str(c) for c in matrix.columns]
    if not coins:
        return empty_figure("No coins")
    labels = [plain((names or {}).get(c, c)) for c in coins]
    z = matrix.reindex(index=coins, columns=coins).to_numpy(dtype=float)
    text = [["n/a" if not np.isfinite(v) else f"{v:.2f}" for v in row] for row in z]
    shared = None if counts is None else counts.reindex(index=coins, columns=coins).fillna(0).to_numpy()
    hover = []
    for i, row in enumerate(z):
        line = []
        for j, value in enumerate(row):
            days = int(shared[i, j]) if shared is not None else None
            over = f" over {days:,} shared days" if days is not None else ""
            reading = f"ρ = {value:.2f}" if np.isfinite(value) else "too few shared days"
            line.append(f"{labels[i]} × {labels[j]}<br>{reading}{over}")
        hover.append(line)
    fig = go.Figure(
        go.Heatmap(
            z=z, x=labels, y=labels, zmin=-1, zmax=1, zmid=0, colorscale="RdBu", text=text,
            texttemplate="%{text}", textfont={"size": 14}, customdata=hover,
            hovertemplate="%{customdata}<extra></extra>", xgap=2, ygap=2,
            colorbar={"title": {"text": "ρ"}, "tickvals": [-1, -0.5, 0, 0.5, 1], "thickness": 12},
        )
    )  # fmt: skip
    fig.update_layout(
        height=max(300, 90 + 70 * len(coins)), margin={"l": 10, "r": 10, "t": 30, "b": 10},
        hovermode="closest", plot_bgcolor="rgba(0,0,0,0)",
    )  # fmt: skip
    fig.update_yaxes(autorange="reversed", showgrid=False)
    fig.update_xaxes(showgrid=False, side="bottom")
    return fig


# ---------------------------------------------------------------------------------------------- tables

TABLE_COLUMNS = ["coin_id", "quote", "interval", "kind", "time_utc", "open", "high", "low", "close", "volume",
                 "samples", "sampling"]  # fmt: skip


def price_rows(
    candles: pd.DataFrame, history: pd.DataFrame | None, *, quote: str, interval: str, index: bool = False
) -> pd.DataFrame:
    """What the chart shows, one row per candle or daily snapshot, with raw values (Decimals stay exact):
    coin_id, quote, interval, kind ('candle' or 'daily snapshot'), time_utc, open, high, low, close,
    volume, samples, sampling, and index_100 when the chart is rebased."""
    older = split_history(candles, history)
    frames = []
    if not older.empty:
        frames.append(
            pd.DataFrame({
                "coin_id": older["coin_id"], "quote": quote, "interval": "1d", "kind": "daily snapshot",
                "time_utc": pd.to_datetime(older["ts"], utc=True), "open": None, "high": None, "low": None,
                "close": older["price"], "volume": older.get("volume"), "samples": 1, "sampling": "1d",
            })
        )  # fmt: skip
    if not candles.empty:
        frames.append(
            pd.DataFrame({
                "coin_id": candles["coin_id"], "quote": quote, "interval": interval, "kind": "candle",
                "time_utc": pd.to_datetime(candles["start"], utc=True), "open": candles["open"],
                "high": candles["high"], "low": candles["low"], "close": candles["close"],
                "volume": candles["volume"], "samples": candles["samples"], "sampling": candles["sampling"],
            })
        )  # fmt: skip
    if not frames:
        return pd.DataFrame(columns=TABLE_COLUMNS + (["index_100"] if index else []))
    rows = pd.concat(frames, ignore_index=True).sort_values(["coin_id", "time_utc"], kind="stable")
    rows = rows.reset_index(drop=True)[TABLE_COLUMNS]
    if index:
        closes = pd.Series(floats(rows["close"]), index=rows.index)
        opening = opening_prices(candles, history)
        rows["index_100"] = closes / rows["coin_id"].map(lambda c: opening.get(str(c), np.nan)) * 100
    return rows


def csv_text(rows: pd.DataFrame) -> str:
    """`price_rows` as CSV: ISO UTC times, numbers in plain notation with all their digits."""
    out = rows.copy()
    out["time_utc"] = [pd.Timestamp(t).strftime("%Y-%m-%dT%H:%M:%SZ") for t in out["time_utc"]]
    for column in ("open", "high", "low", "close", "volume", "index_100"):
        if column in out:
            out[column] = [plain_number(v) for v in out[column]]
    return out.to_csv(index=False)


def display_rows(rows: pd.DataFrame, names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """`price_rows` formatted to read: the coin's name, the time as 'Tue 2 Dec 2026 14:00', prices with
    the currency sign and precision by magnitude, volume with thousands separators."""
    quote = str(rows["quote"].iloc[0]) if not rows.empty else "usd"
    shown = pd.DataFrame({
        "coin": [(names or {}).get(str(c), str(c)) for c in rows["coin_id"]],
        "time (UTC)": [when(t).removesuffix(" UTC") for t in rows["time_utc"]],
        "interval": rows["interval"], "kind": rows["kind"],
        **{c: [money(v, quote) if v is not None else "" for v in rows[c]]
           for c in ("open", "high", "low", "close")},
        "volume": [money(v, quote, 0) for v in rows["volume"]],
        "samples": rows["samples"],
        "sampling": [SAMPLING_NAMES.get(str(s), str(s)) for s in rows["sampling"]],
    })  # fmt: skip
    if "index_100" in rows:
        shown.insert(8, "index (=100)", [number_text(v, 2) for v in rows["index_100"]])
    return shown


# ---------------------------------------------------------------------------------------------- chains


def block_interval_chart(
    daily: pd.DataFrame, missing: Iterable[date] = (), color: str | None = None
) -> go.Figure:
    """Mean block interval per day (minutes, or seconds for fast chains) from the daily rollups."""
    if daily.empty or not np.isfinite(floats(daily["mean_block_interval_s"])).any():
        return empty_figure("No block intervals in this range")
    seconds = floats(daily["mean_block_interval_s"])
    typical = float(np.nanmedian(seconds))
    size, unit = (3600, "h") if typical >= 7200 else (60, "min") if typical >= 120 else (1, "s")
    values = seconds / size
    fig = go.Figure(
        go.Scatter(
            x=daily["day"], y=values, mode="lines+markers", name="Mean interval",
            line={"color": color or "#1c83e1", "width": 2}, marker={"size": 5},
            hovertemplate=f"%{{y:,.1f}} {unit}<extra></extra>",
        )
    )  # fmt: skip
    day_axis(fig, daily["day"], min_days=CHAIN_MIN_DAYS)
    fig.update_yaxes(rangemode="tozero")
    return mark_missing(_base(fig, y_title=f"Mean block interval ({unit})"), list(missing))
