"""Overview: open incidents first (or "All healthy"), then scheduler status, freshness per source and coin,
the last 24 h of runs, and the failures nothing has made good yet."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import charts, data, outage
from dashboard import components as ui
from dashboard.incident_frames import open_incidents_frame

LIVE_SECONDS = 10
WORKER_STATES = ("up", "stale", "down", "stopped")  # stopped: signed off cleanly (grey), not down
INCIDENTS_PAGE = "app_pages/incidents.py"


def render_incidents() -> None:
    """What is wrong now: the open incidents (a row opens it on the Incidents page) or a green "All
    healthy"; how many were resolved in the last day; failed runs unresolved versus made good."""
    now = datetime.now(UTC)
    opened = data.incidents(open_only=True)
    if not opened:
        st.success("**All healthy**: no open incidents.", icon=":material/check_circle:")
    else:
        ui.section(
            f"{len(opened):,} open incident{'' if len(opened) == 1 else 's'}",
            ":material/e911_emergency:",
            "Select one to see its story, acknowledge or silence it.",
        )
        frame = open_incidents_frame(opened, now)
        ids = frame["id"].tolist()
        shown, level = ui.status_cells(frame, "level")
        event = st.dataframe(
            shown,
            hide_index=True,
            key=f"overview_incidents_{hashlib.sha1(repr(ids).encode()).hexdigest()[:10]}",
            on_select="rerun",
            selection_mode="single-row",
            height=ui.table_height(len(shown), most=250),
            placeholder=ui.MISSING,
            column_config={
                **level,
                "id": st.column_config.NumberColumn("incident", format="#%d", width="small"),
                "summary": st.column_config.TextColumn("summary", width="large"),
                "opened_at": st.column_config.DatetimeColumn("opened", format="distance"),
                "acknowledged": st.column_config.TextColumn("acknowledged by"),
                "silenced": st.column_config.TextColumn("silenced"),
            },
        )
        rows = event.selection.rows
        if rows and rows[0] < len(ids):
            st.switch_page(INCIDENTS_PAGE, query_params={"incident": str(ids[rows[0]])})
    resolved = len(data.resolved_incidents(24))
    st.page_link(
        INCIDENTS_PAGE,
        label=f"{resolved:,} incident{'' if resolved == 1 else 's'} resolved in the last 24 h",
        icon=":material/history:",
        query_params={"show": "all"},
    )
    failures = data.failures_by_resolution(24)
    figures = [
        ("Open incidents", len(opened)),
        ("Resolved (24 h)", resolved),
        ("Failed runs unresolved (24 h)", failures["unresolved"]),
        ("Failed runs made good (24 h)", failures["made_good"]),
    ]
    for col, (label, value) in zip(st.columns(len(figures)), figures, strict=True):
        col.metric(label, f"{value:,}", border=True)


def render_scheduler() -> None:
    """Worker states from the heartbeats: up / stale / down / stopped, with each worker's current job."""
    workers = data.workers()
    if not workers:
        ui.empty_state(
            "No scheduler has reported yet",
            "The scheduler runs the ingestion jobs and beats every few seconds.",
            [ui.START_COMMANDS["demo"], ui.START_COMMANDS["scheduler"]],
        )
        return
    counts = {state: sum(w.state == state for w in workers) for state in WORKER_STATES}
    cols = st.columns(len(counts))
    for col, (state, n) in zip(cols, counts.items(), strict=True):
        col.metric(f"Workers {state}", n, border=True)
    rows = [
        {
            "state": w.state.value,
            "worker": w.worker_id,
            "current job": w.current_job or "idle",
            "last beat": ui.age(w.last_beat),
            "host": w.host,
        }
        for w in workers
    ]
    table, config = ui.status_cells(pd.DataFrame(rows), "state")
    st.dataframe(table, hide_index=True, column_config=config)


def render_recent_runs() -> None:
    """The newest runs, whatever their status."""
    recent = data.runs(limit=8)
    if recent.empty:
        return
    columns = ["id", "started_at", "status", "source", "data_type", "coin", "records_inserted"]
    table, config = ui.status_cells(ui.runs_for_table(recent)[columns])
    st.dataframe(
        table, hide_index=True, placeholder=ui.MISSING, column_config={**ui.run_column_config(), **config}
    )


def restart_lines(state: dict[str, Any] | None) -> list[str]:
    """One sentence per process `crypto-pipeline up` had to restart (or is restarting), from its state
    file; nothing when the dashboard was not started by `up` or nothing has died. The file is written by
    another process and may be mid-change, so every field is optional."""
    children = (state or {}).get("children")
    lines = []
    for name, child in children.items() if isinstance(children, dict) else ():
        if not isinstance(child, dict):
            continue
        restarts = child.get("restarts") or 0
        waiting = child.get("state") == "restarting"
        if not restarts and not waiting:
            continue
        facts = [f"restarted {restarts} time{'' if restarts == 1 else 's'} so far"]
        if child.get("last_exit_code") is not None:
            when = str(child.get("last_exit_at") or "")[11:19]  # HH:MM:SS of the ISO time
            facts.append(f"last exit code {child['last_exit_code']}" + (f" at {when} UTC" if when else ""))
        if waiting:
            delay = child.get("restart_in_seconds")
            soon = f"in {delay:.0f} s" if isinstance(delay, int | float) else "shortly"
            lines.append(f"The {name} is down; crypto-pipeline up restarts it {soon} ({'; '.join(facts)}).")
        else:
            lines.append(f"The {name} was restarted by crypto-pipeline up ({'; '.join(facts)}).")
    return lines


def render_restarts() -> None:
    """Processes `crypto-pipeline up` restarted: a scheduler that keeps dying is worth a look at its log."""
    for line in restart_lines(data.launcher_state()):
        st.warning(ui.literal(line), icon=":material/restart_alt:")


def demo_steps(progress: dict[str, Any]) -> list[str]:
    """One markdown line per step of the demo: done (and how it went) or due, and where to look. The file is
    written by another process, so every field is optional; its text is shown literally."""
    lines = []
    for step in progress.get("steps") or []:
        if not isinstance(step, dict):
            continue
        index, name, look = step.get("index", "?"), ui.literal(step.get("name") or ""), step.get("look")
        if not step.get("done_at"):
            mark, state = ":material/schedule:", "due"
            due = step.get("due_in")
            if isinstance(due, int | float):
                state = f"due at {int(due) // 60}:{int(due) % 60:02d}"
        elif step.get("ok") is False:
            mark, state = ":red[:material/error:]", "failed"
        else:
            mark, state = ":green[:material/check_circle:]", "done"
        line = f"{mark} **{ui.literal(index)}. {name}** · {state}"
        if look:
            line += f"  \n:material/visibility: Look at: {ui.literal(look)}"
        if step.get("done_at") and step.get("outcome"):
            line += f"  \n{ui.literal(step['outcome'])}"
        lines.append(line)
    return lines


def render_demo() -> None:
    """Under `up --demo`: how far the scripted tour has come, and each step with where to look."""
    progress = data.demo_progress()
    if progress is None:
        return
    st.info(ui.literal(data.demo_line(progress)), icon=":material/tour:")
    with st.expander("Demo steps and where to look", icon=":material/map:"):
        for line in demo_steps(progress):
            st.markdown(line)


@st.fragment(run_every=LIVE_SECONDS)
def render_demo_live() -> None:
    """The demo's progress, refreshed in place: its steps come every minute or so."""
    render_demo()


@st.fragment(run_every=LIVE_SECONDS)
@outage.guarded
def render_live_panel() -> None:
    """Scheduler state and the last runs, refreshed in place every few seconds."""
    ui.section("Scheduler", ":material/monitor_heart:", f"Live: refreshes every {LIVE_SECONDS} s.")
    render_restarts()
    render_scheduler()
    render_recent_runs()
    st.caption(f"Updated {datetime.now(UTC):%H:%M:%S} UTC")


def render_freshness() -> None:
    """Age of the newest price and lag of the newest block per coin, coloured by level."""
    ui.section(
        "Freshness", ":material/schedule:", "Green is fresh, amber late, red stale (thresholds in settings)."
    )
    report = data.freshness()
    if not report:
        ui.empty_state("No active coins", "Add coins to coin_metadata to ingest them.")
        return
    cols = st.columns(min(len(report), 6))
    for i, item in enumerate(report):
        what = "newest price" if item.data_type == "prices" else "blocks behind tip"
        value = "–" if item.value is None else f"{item.value:g} {item.unit}"
        with cols[i % len(cols)]:
            ui.freshness_card(item.coin, what, value, item.level.value, item.detail)


def render_runs_24h() -> None:
    """Runs started in the last 24 hours per status, as metrics and an hourly chart."""
    ui.section("Runs in the last 24 h", ":material/bar_chart:", "Ingestion runs per hour, stacked by status.")
    counts = data.runs_by_status(24)
    if not any(counts.values()):
        ui.empty_state(
            "No runs in the last 24 hours",
            "Runs appear here once ingestion starts.",
            [ui.START_COMMANDS["demo"], ui.START_COMMANDS["scheduler"]],
        )
        return
    cols = st.columns(4)
    for col, status in zip(cols, ("success", "partial", "failed", "running"), strict=True):
        col.metric(status.title(), counts.get(status, 0), border=True)
    st.plotly_chart(charts.runs_by_status_chart(data.runs_per_hour(24)), key="runs_24h_chart")


def render_failures() -> None:
    """The newest failed runs nothing has made good yet, with their stored (redacted) error."""
    ui.section(
        "Latest failures",
        ":material/error:",
        "Failed runs no later run has made good. Open *Ingestion runs* to inspect or rerun one.",
    )
    failures = data.latest_failures(8)
    if failures.empty:
        st.success("No unresolved failed runs.", icon=":material/check_circle:")
        return
    config = ui.run_column_config()
    config["started_at"] = st.column_config.DatetimeColumn("started (UTC)", format="MMM D, HH:mm")
    shown = ui.runs_for_table(failures, ui.FAILURE_COLUMN_ORDER)
    st.dataframe(shown, hide_index=True, placeholder=ui.MISSING, column_config=config)


ui.page_header("Overview", ":material/dashboard:", "Is the pipeline running, and is its data fresh?")
if data.demo_progress() is not None:  # only under `up --demo`: no fragment rerunning for nothing
    render_demo_live()
render_incidents()
render_live_panel()
render_freshness()
left, right = st.columns(2)
with left:
    render_runs_24h()
with right:
    render_failures()
