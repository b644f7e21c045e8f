"""The Timeline tab of the Ingestion runs page: a Gantt chart of the units across workers and jobs.

The window (`?window=1h|6h|24h|7d`) and the rows (`?by=worker|job`) come from the link like the page's
other filters and are written back to it; clicking a bar opens its run below, as a `?run=` link does.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import charts, data, run_actions, urlstate
from dashboard import components as ui

WINDOW_KEY = "runs_timeline_window"
ROWS_KEY = "runs_timeline_by"
CHART_KEY = "runs_timeline_chart"
ACTED_KEY = "_runs_timeline_opened"  # the run id of the last click acted on (a selection persists)
DEFAULT_WINDOW = "6h"
DEFAULT_ROWS = "worker"
WINDOW_LABELS = {"1h": "1 h", "6h": "6 h", "24h": "24 h", "7d": "7 days"}
ROW_LABELS = {"worker": "Per worker", "job": "Per job"}
CAPTION = (
    "One bar per run, from its start to its end (running ones reach the dotted *now* line), in the colour of "
    "its status. A finished bar shows where its time went, in order: the rate-limit wait (hatched), HTTP, "
    "the time on the wire (solid), then database & parsing (pale). Runs recorded before HTTP time was "
    "measured show HTTP and database together (dotted). Very short runs are drawn a few pixels long so "
    "that they stay visible: hover for the real times, **click a bar to open the run** below. Zoom with "
    "the chart's toolbar, double-click to zoom out. The status, source, data type and coin filters apply; "
    "the window replaces the dates."
)


def read_link(params: Mapping[str, Any], warnings: list[str]) -> None:
    """Seed the window and the rows from `?window=` and `?by=` (bad values become warnings)."""
    window = urlstate.parse_choice(params, "window", charts.TIMELINE_WINDOWS, warnings)
    rows = urlstate.parse_choice(params, "by", charts.TIMELINE_ROWS, warnings)
    if window:
        st.session_state[WINDOW_KEY] = window
    if rows:
        st.session_state[ROWS_KEY] = rows


def link_params() -> dict[str, str]:
    """The timeline's part of the page link (only what differs from the defaults)."""
    params = {}
    if (window := st.session_state.get(WINDOW_KEY, DEFAULT_WINDOW)) != DEFAULT_WINDOW:
        params["window"] = str(window)
    if (rows := st.session_state.get(ROWS_KEY, DEFAULT_ROWS)) != DEFAULT_ROWS:
        params["by"] = str(rows)
    return params


def picked_run(event: Mapping[str, Any] | None) -> int | None:
    """The run id of the bar a click selected (the bar's customdata), or None when nothing is selected."""
    selection = (event or {}).get("selection") or {}
    for point in selection.get("points") or []:
        custom = point.get("customdata") if isinstance(point, Mapping) else None
        if isinstance(custom, list | tuple):
            custom = custom[0] if custom else None
        try:
            return int(custom)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
    return None


def _clicked() -> None:
    """The chart's on_select callback: it runs before the page does, with the selection of the chart as
    it was drawn. (The page then draws a new chart whenever the data has changed, a chart whose selection
    is empty: reading the return value alone would lose a click made more than a cache period after the
    page was drawn.)"""
    act_on_click(st.session_state.get(CHART_KEY))


def act_on_click(event: Mapping[str, Any] | None) -> int | None:
    """Open the clicked run, once per click: a chart keeps its selection over reruns, and a row chosen in
    the table later must not be taken back by it. Returns the run opened now, if any."""
    run_id = picked_run(event)
    if run_id is None:
        st.session_state.pop(ACTED_KEY, None)  # cleared: the same bar may be clicked again
        return None
    if st.session_state.get(ACTED_KEY) == run_id:
        return None
    st.session_state[ACTED_KEY] = run_id
    run_actions.open_run(run_id)
    return run_id


def split_line(split: Mapping[str, float]) -> str | None:
    """Where the time of the window's finished runs went, as shares: "412 finished runs: 18% rate-limit
    wait · 64% HTTP · 18% database & parsing (of 9.5 min)"; None when no run has its HTTP time."""
    total = split["wait"] + split["http"] + split["rest"]
    if not split["runs"] or total <= 0:
        return None
    shares = " · ".join(
        f"{split[part] / total:.0%} {name}"
        for part, name in (("wait", "rate-limit wait"), ("http", "HTTP"), ("rest", "database & parsing"))
    )
    spent = f"{total / 60:,.1f} min" if total >= 120 else f"{total:,.1f} s"
    runs = int(split["runs"])
    return (
        f"Time of the {runs:,} finished run{'' if runs == 1 else 's'} in this window: {shares} (of {spent})."
    )


def filtered(frame: pd.DataFrame, filters: Mapping[str, tuple[str, ...]]) -> pd.DataFrame:
    """The runs the page's status, source, data type and coin filters let through."""
    columns = {"statuses": "status", "sources": "source", "data_types": "data_type", "coins": "coin"}
    keep = pd.Series(True, index=frame.index)
    for name, column in columns.items():
        if chosen := filters.get(name):
            keep &= frame[column].isin(chosen)
    return frame[keep]


def render(filters: Mapping[str, Any]) -> None:
    """The window and rows pickers, the Gantt chart, and the run a click opens."""
    ui.seed(WINDOW_KEY, DEFAULT_WINDOW)
    ui.seed(ROWS_KEY, DEFAULT_ROWS)
    ui.keep(WINDOW_KEY, ROWS_KEY)
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    with left:
        window = st.segmented_control(
            "Window", list(charts.TIMELINE_WINDOWS), key=WINDOW_KEY, required=True,
            format_func=WINDOW_LABELS.__getitem__,
        )  # fmt: skip
    with right:
        rows = st.segmented_control(
            "Rows",
            list(charts.TIMELINE_ROWS),
            key=ROWS_KEY,
            required=True,
            format_func=ROW_LABELS.__getitem__,
        )
    ui.save(WINDOW_KEY, ROWS_KEY)
    hours = charts.TIMELINE_WINDOWS[window or DEFAULT_WINDOW]
    runs, now = data.run_timeline(hours)
    frame = filtered(runs, filters)
    st.caption(CAPTION)
    if frame.empty:
        st.info(f"No runs in the last {WINDOW_LABELS[window or DEFAULT_WINDOW]}.", icon=":material/timeline:")
        return
    figure = charts.run_timeline(frame, now=now, hours=hours, by=rows or DEFAULT_ROWS)
    event = st.plotly_chart(figure, key=CHART_KEY, on_select=_clicked, selection_mode="points")
    act_on_click(event)
    parts = charts.timeline_segments(frame, now=now, since=now - timedelta(hours=hours))
    if line := split_line(charts.timeline_split(parts)):
        st.caption(line)
    if len(runs) >= data.TIMELINE_LIMIT:
        st.caption(f"Showing the newest {data.TIMELINE_LIMIT:,} runs of this window.")
