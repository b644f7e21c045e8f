"""Ingestion runs: filter the run log (a table, or a timeline of the units), inspect one run, rerun failed or
partial slices."""

from __future__ import annotations

from datetime import date
from typing import TypedDict

import pandas as pd
import streamlit as st

from dashboard import components as ui
from dashboard import data, gate, run_actions, timeline, urlstate
from pipeline import actors

STATUSES = ["failed", "partial", "success", "running"]
RUNS_LIMIT = 500
FILTERS = {"runs_status": "status", "runs_source": "source", "runs_type": "data_type", "runs_coin": "coin"}
VIEWS = {"table": "Table", "timeline": "Timeline"}  # ?view= -> tab label
VIEW_KEY = "runs_view"
LINK_READ = "_runs_link_read"


class RunFilters(TypedDict):
    """The filter keywords of `data.runs`, as the filter widgets set them (empty = no filter)."""

    statuses: tuple[str, ...]
    sources: tuple[str, ...]
    data_types: tuple[str, ...]
    coins: tuple[str, ...]
    start: date
    end: date


def _link_now() -> str:
    return repr(sorted((k, st.query_params.get_all(k)) for k in st.query_params))


def read_link(options: dict[str, list[str]]) -> None:
    """Seed the filters, the view and the timeline's window and rows (and the selected run) from
    `?status=&source=&data_type=&coin=&view=&window=&by=&run=` whenever the link changes: once when the
    page is opened, and again when another page links to a run (not when the page writes it itself)."""
    params = {k: st.query_params.get_all(k) for k in st.query_params}
    seen = _link_now()
    if st.session_state.get(LINK_READ) == seen:
        return
    st.session_state[LINK_READ] = seen
    warnings: list[str] = []
    for key, name in FILTERS.items():
        values = urlstate.parse_choices(params, name, options[key], warnings)
        if values:
            st.session_state[key] = values
    view = urlstate.parse_choice(params, "view", VIEWS, warnings)
    if view:
        st.session_state[VIEW_KEY] = VIEWS[view]
    timeline.read_link(params, warnings)
    run_id = urlstate.parse_int(params, "run", warnings)
    if run_id:
        run_actions.open_run(run_id)
    if warnings:  # they quote the link's values, which anyone can write
        ignored = ui.literal("; ".join(warnings))
        st.warning(f"Some link parameters were ignored: {ignored}", icon=":material/link_off:")


def render_filters(options: dict[str, list[str]]) -> RunFilters:
    """Status, source, data type, coin and start-date filters."""
    with st.container(border=True):
        cols = st.columns(4)
        labels = {
            "runs_status": "Status",
            "runs_source": "Source",
            "runs_type": "Data type",
            "runs_coin": "Coin",
        }
        for col, key in zip(cols, FILTERS, strict=True):
            ui.keep(key)
            with col:
                st.multiselect(labels[key], options[key], key=key, placeholder="All")
            ui.save(key)
        start, end, _ = ui.date_range_picker("runs", earliest=urlstate.EARLIEST_DAY, default="30d")

    def pick(key: str) -> tuple[str, ...]:
        return tuple(st.session_state.get(key) or ())

    return {
        "statuses": pick("runs_status"),
        "sources": pick("runs_source"),
        "data_types": pick("runs_type"),
        "coins": pick("runs_coin"),
        "start": start,
        "end": end,
    }


def render_table(frame: pd.DataFrame) -> int | None:
    """The matching runs; selecting a row opens it below (the selection is kept by run id)."""
    counts = frame["status"].value_counts()
    failed = frame["status"] == "failed"
    made_good = int((failed & frame["resolved_by_run_id"].notna()).sum())
    figures = [
        ("Failed, unresolved", int(failed.sum()) - made_good),
        ("Failed, made good", made_good),
        *((status.title(), int(counts.get(status, 0))) for status in STATUSES[1:]),
    ]
    for col, (label, value) in zip(st.columns(len(figures)), figures, strict=True):
        col.metric(label, f"{value:,}", border=True)
    ids = tuple(int(i) for i in frame["id"])
    requests = data.open_requests(ids)
    caused = run_actions.caused_by(ids)
    shown = ui.runs_for_table(
        frame.assign(rerun=[requests.get(i, "") for i in ids], caused_by=[caused.get(i, "") for i in ids])
    )
    return ui.selectable_table(
        shown,
        id_column="id",
        key=run_actions.RUNS_TABLE,
        status_column="status",
        column_config=ui.run_column_config(),
        placeholder=ui.MISSING,
    )


def write_link(on_timeline: bool, selected: int | None) -> None:
    """Keep the view, the timeline's window and rows, and the chosen run in the URL, so that the view can
    be shared (the filters stay as the link gave them)."""
    wanted = {"view": "timeline", **timeline.link_params()} if on_timeline else {}
    if selected:
        wanted["run"] = str(selected)
    for key in ("view", "window", "by", "run"):
        value = wanted.get(key)
        if value is None and key in st.query_params:
            del st.query_params[key]
        elif value is not None and st.query_params.get(key) != value:
            st.query_params[key] = value
    st.session_state[LINK_READ] = _link_now()


def render_runs(filters: RunFilters, *, writes: bool) -> int | None:
    """The Table tab: the matching runs, and the rerun of all failed ones; returns the selected run."""
    runs = data.runs(**filters, limit=RUNS_LIMIT)
    if runs.empty:
        st.info("No runs match these filters.", icon=":material/filter_alt_off:")
        return None
    selected = render_table(runs)
    if len(runs) >= RUNS_LIMIT:
        st.caption(f"Showing the newest {RUNS_LIMIT} matching runs; narrow the filters to see older ones.")
    if writes:
        run_actions.render_rerun_all(runs)
    return selected


ui.page_header(
    "Ingestion runs", ":material/history:", "Every ingestion unit, what it fetched, and why it failed."
)
facets = data.run_facets()
if not facets.sources:
    ui.empty_state(
        "No ingestion runs yet",
        "Each ingestion unit logs a run here once it has started.",
        [ui.START_COMMANDS["demo"], ui.START_COMMANDS["scheduler"]],
    )
    st.stop()
options = {
    "runs_status": STATUSES,
    "runs_source": facets.sources,
    "runs_type": facets.data_types,
    "runs_coin": facets.coins,
}
read_link(options)
access = gate.current(data.settings())
reruns = access.allows("rerun")  # and run here: the same role (pipeline.actors.ACTIONS)
alive = data.scheduler_alive()
if notice := st.session_state.pop("runs_notice", None):
    st.success(notice, icon=":material/check_circle:")
if not reruns:
    st.caption(f":material/lock: {access.refusal('rerun', 'reruns', name=ui.literal)}")
elif not alive:
    st.caption(":material/power_off: No scheduler is running: queued reruns wait until one starts.")

filters = render_filters(options)
ui.keep(VIEW_KEY)
table_tab, timeline_tab = st.tabs(list(VIEWS.values()), key=VIEW_KEY, on_change="rerun")
ui.save(VIEW_KEY)
selected = None
if table_tab.open is not False:
    with table_tab:
        selected = render_runs(filters, writes=reruns)
if timeline_tab.open is not False:
    with timeline_tab:
        timeline.render(filters)
selected = selected or st.session_state.get(run_actions.CHOSEN_RUN)
write_link(bool(timeline_tab.open), selected)
run = data.run(int(selected)) if selected else None
if run is not None:
    st.divider()
    run_actions.render_details(run)
    if reruns:
        run_actions.render_actions(run, alive=alive)
    run_actions.render_run_audit(run)
elif selected:
    st.caption(f"Run #{selected} does not exist.")
if actors.may_view(access.role, "audit_log"):  # it names people and their refused attempts
    run_actions.render_audit_log()
