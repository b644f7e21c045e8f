"""Pure chart builders: DataFrame in, plotly Figure out (no Streamlit, so they unit-test on their own).

Days without data are shaded and marked with an "x" on a hidden overlay axis (so the marks sit at the
bottom whatever the scale, log included); days or heights named in data-quality findings get a dotted line
and a triangle at the top of that axis; the newest REORG_DEPTH blocks are shaded as provisional.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta

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
            go.Bar(x=daily["day"], y=daily["fees"], name=f"Fees ({plain(unit)})", width=DAY_BAR),
            go.Scatter(x=daily["day"], y=daily["fees_usd"], name="Fees (USD)", yaxis="y2", mode="lines"),
        ]
    )
    fig.update_layout(yaxis2={"overlaying": "y", "side": "right", "title": "USD", "showgrid": False})
    day_axis(fig, daily["day"])
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
