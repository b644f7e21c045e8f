"""The run detail panel and the rerun actions of the Ingestion runs page.

Every write names the run id it acts on ("Rerun run #123"), and buttons are keyed by that id, so a click
can only ever act on the run whose id the user saw on the button.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import components as ui
from dashboard import data, outage
from pipeline.schemas import AuditEntryData, DataIngestionLogData, ReplayRequestData

OPEN = ("pending", "running")
RERUNNABLE = ("failed", "partial")
PROGRESS_SECONDS = 2
RUNS_TABLE = "runs"  # the selectable_table of the runs page
CHOSEN_RUN = f"{RUNS_TABLE}_selected"
INCIDENTS_PAGE = "app_pages/incidents.py"


def open_run(run_id: int) -> None:
    """Show this run's view (a link or a button chose it, not a table row)."""
    ui.choose_row(RUNS_TABLE, run_id)


def render_details(run: DataIngestionLogData) -> None:
    """Counts, timing, error, replay parameters, rejected samples, parent and child reruns."""
    # Everything but the ids and figures is stored text (the run log quotes sources): shown literally.
    what = " / ".join(ui.literal(v) for v in (run.source, run.data_type))
    st.subheader(f":material/receipt_long: Run #{run.id} · {what} · {ui.literal(run.coin or '–')}")
    ui.status_badge(run.status.value)
    cols = st.columns(6)
    figures = [
        ("Fetched", run.records_fetched),
        ("Inserted", run.records_inserted),
        ("Updated", run.records_updated),
        ("Rejected", run.records_rejected),
        ("Requests", run.requests_made),
        ("Retries", run.retries),
    ]
    for col, (label, value) in zip(cols, figures, strict=True):
        col.metric(label, f"{value:,}", border=True)
    if run.start_date:
        span = f"{run.start_date} .. {run.end_date or 'today'}"
    elif run.start_height is not None:
        # An open slice runs to the chain's tip, whatever that is when the run reads it.
        span = f"{run.start_height:,} .. {'tip' if run.end_height is None else f'{run.end_height:,}'}"
    else:
        span = "–"  # a run that failed before it knew its slice (the parameters below still say it)
    duration = "–" if run.duration_seconds is None else f"{run.duration_seconds:.1f} s"
    http = "" if run.http_seconds is None else f" · HTTP {run.http_seconds:.1f} s"  # not measured on old runs
    st.caption(
        f"Slice {ui.literal(span)} · trigger {ui.literal(run.trigger)} · "
        f"started {run.started_at:%Y-%m-%d %H:%M:%S} UTC · duration {duration} · "
        f"waited {run.wait_seconds:.1f} s{http} · worker {ui.literal(run.worker_id or '–')}"
    )
    if run.error_class:
        message = ui.literal(run.error_message or "")
        st.error(f"**{ui.literal(run.error_class)}**: {message}", icon=":material/error:")
    elif run.error_message:
        st.warning(ui.literal(run.error_message), icon=":material/warning:")
    render_resolution(run)
    left, right = st.columns(2)
    with left, st.expander("Replay parameters", icon=":material/tune:"):
        st.dataframe(params_table(run.params), hide_index=True)
    with right, st.expander(f"Rejected samples ({len(run.rejected_samples or [])})", icon=":material/block:"):
        samples = samples_table(run.rejected_samples or [])
        if samples.empty:
            st.caption("No record was rejected.")
        else:
            st.dataframe(samples, hide_index=True)
    render_lineage(run)


def _text(value: Any) -> str:
    """A cell's text: strings as they are, anything else as compact JSON (never a Python repr)."""
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def params_table(params: dict[str, Any]) -> pd.DataFrame:
    """A run's replay parameters as `parameter | value` rows."""
    return pd.DataFrame({"parameter": list(params), "value": [_text(v) for v in params.values()]})


def samples_table(samples: list[dict[str, Any]]) -> pd.DataFrame:
    """Rejected records as a table: the reason first, then one column per field of the record.

    A sample keeps the record as JSON text, cut at a size bound; a record that no longer parses (cut, or
    not an object) stays whole in a `record` column.
    """
    rows = []
    for sample in samples:
        row = {"reason": _text(sample.get("reason", ""))}
        raw = sample.get("record")
        try:
            record = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            record = None
        if isinstance(record, dict):
            row |= {str(k): _text(v) for k, v in record.items()}
        elif raw is not None:
            row["record"] = _text(raw)
        rows.append(row)
    return pd.DataFrame(rows).fillna("–") if rows else pd.DataFrame()


def render_resolution(run: DataIngestionLogData) -> None:
    """For a failed run: whether a later run made it good, and the incident it is part of."""
    if run.status.value != "failed":
        return
    row = st.container(horizontal=True, vertical_alignment="center")
    if run.resolved_by_run_id:
        with row:
            ui.status_badge("success", label=f"Made good by run #{run.resolved_by_run_id}")
        row.button(
            f"Open run #{run.resolved_by_run_id}",
            key=f"made_good_{run.id}",
            icon=":material/task_alt:",
            on_click=open_run,
            args=(run.resolved_by_run_id,),
        )
    else:
        with row:
            ui.status_badge("failed", label="Not made good yet")
    incident = data.incident_for_run(run.id)
    if incident is not None:
        state = "open" if incident.is_open else "resolved"
        row.page_link(
            INCIDENTS_PAGE,
            label=f"Incident #{incident.id} ({state})",
            icon=":material/e911_emergency:",
            query_params={"incident": str(incident.id)},
        )


def _who(entry: AuditEntryData) -> str:
    """"alice@example.com (operator, dashboard)": the actor as recorded, shown literally."""
    how = ", ".join(v for v in (entry.role, entry.via) if v)
    return f"{ui.literal(entry.actor)} ({how})"


def caused_by(run_ids: tuple[int, ...]) -> dict[int, str]:
    """Run id -> who asked for the replay that produced it (runs nobody asked for are left out)."""
    found = data.run_audit(run_ids)
    return {
        run_id: entry.actor
        for run_id, entries in found.items()
        for entry in entries
        if entry.run_id != run_id and entry.outcome == "ok"
    }


def render_run_audit(run: DataIngestionLogData) -> None:
    """Who asked for this run, and who acted on it since (reruns requested, refused attempts). Rendered
    after the actions, so a rerun clicked in this script run is already listed."""
    for entry in data.run_audit((run.id,)).get(run.id, []):
        when = f"{entry.at:%Y-%m-%d %H:%M:%S} UTC"
        action = ui.literal(entry.action.replace("_", " "))
        if entry.run_id != run.id:
            st.caption(f":material/person: Requested by {_who(entry)} · {action} · {when}")
        elif entry.outcome == "denied":
            st.caption(f":material/block: {action.capitalize()} refused for {_who(entry)} · {when}")
        else:
            st.caption(f":material/person: {action.capitalize()} requested by {_who(entry)} · {when}")


AUDIT_COLUMNS = ["at", "actor", "via", "role", "action", "target", "outcome", "detail"]


def render_audit_log() -> None:
    """The newest write actions of every kind, in an expander at the foot of the page."""
    entries = data.audit_log()
    with st.expander(f"Audit log ({len(entries)} newest actions)", icon=":material/fact_check:"):
        if not entries:
            st.caption("No write action yet: reruns, gap fills, acknowledgements and coin changes show here.")
            return
        frame = pd.DataFrame([e.model_dump() for e in entries], columns=[*AUDIT_COLUMNS, "params"])
        frame["params"] = [json.dumps(p, sort_keys=True, default=str) if p else "" for p in frame["params"]]
        st.dataframe(
            frame,
            hide_index=True,
            column_config={"at": st.column_config.DatetimeColumn("at (UTC)", format="MMM D, HH:mm:ss")},
        )
        st.caption("The whole log: `crypto-pipeline audit` (filters: --actor, --action, --run, --since).")


def render_lineage(run: DataIngestionLogData) -> None:
    """Links to the run this one reran, and to the reruns made from it."""
    if run.parent_run_id:
        st.button(
            f"Open parent run #{run.parent_run_id}",
            key=f"parent_{run.id}",
            icon=":material/north_west:",
            on_click=open_run,
            args=(run.parent_run_id,),
        )
    children = data.child_runs(run.id)
    if children:
        st.markdown(f"**Reruns of this run** ({len(children)})")
        cols = st.columns(min(len(children), 6))
        for col, child in zip(cols, children[-6:], strict=False):
            col.button(
                f"#{child.id} {child.status.value}",
                key=f"child_{child.id}",
                on_click=open_run,
                args=(child.id,),
                icon=":material/subdirectory_arrow_right:",
            )


def render_actions(run: DataIngestionLogData, *, alive: bool) -> None:
    """Rerun (queue for the scheduler) and, without a live scheduler, Run here; then the progress."""
    request = data.rerun_request(run.id)
    is_open = request is not None and request.status in OPEN
    if run.status.value in RERUNNABLE:
        left, right = st.columns(2)
        if left.button(
            f"Rerun run #{run.id}",
            key=f"rerun_{run.id}",
            type="primary",
            icon=":material/replay:",
            disabled=is_open,
            help="Queue this run's slice for the scheduler to replay.",
        ):
            try:
                request = data.request_rerun(run.id)
            except PermissionError as exc:  # the role changed or the login expired since the page was drawn
                st.error(ui.literal(str(exc)), icon=":material/lock:")
        if not alive:
            st.warning(
                "No scheduler is running, so a queued rerun waits until one starts (`crypto-pipeline run`). "
                "**Run here** replays the slice in this dashboard process now.",
                icon=":material/power_off:",
            )
            running = request is not None and request.status == "running"
            if right.button(
                f"Run here: run #{run.id}",
                key=f"run_here_{run.id}",
                icon=":material/play_arrow:",
                disabled=running,
            ):
                request = _run_here(run.id) or request
    render_progress(run.id, request)


def _run_here(run_id: int) -> ReplayRequestData | None:
    """Replay the run here; a refusal (still running, held by another process, over budget) or a failure
    is shown as one line, never a traceback. Returns the run's request, or None when none was made."""
    try:
        with st.spinner(f"Replaying run #{run_id} in this process…"):
            return data.run_here(run_id)
    except Exception as exc:  # noqa: BLE001 - every outcome is one line on the page
        reason = ui.literal(data.redact(" ".join(str(exc).split())))  # a source's text, shown as written
        st.error(f"Run here of run #{run_id}: {reason}", icon=":material/block:")
    return data.rerun_request(run_id)  # a refused request carries the reason too


def render_progress(run_id: int, request: ReplayRequestData | None) -> None:
    """The newest request of the run; while it is open, poll it until it ends."""
    if request is None:
        return
    if request.status in OPEN:
        _live_progress(run_id)
    else:
        _show_request(request)


@st.fragment(run_every=PROGRESS_SECONDS)
@outage.guarded
def _live_progress(run_id: int) -> None:
    request = data.rerun_request(run_id)
    if request is None:
        return
    _show_request(request)
    if request.status not in OPEN:
        st.rerun()  # refresh the whole page: the table now holds the rerun's own run


def _show_request(request: ReplayRequestData) -> None:
    with st.container(border=True, key=f"request_{request.id}"):
        ui.status_badge(request.status, label=f"Rerun request #{request.id}: {request.status}")
        who = f"requested by {ui.literal(request.requested_by)} at {request.requested_at:%H:%M:%S} UTC"
        claimed = f" · picked up by {ui.literal(request.claimed_by)}" if request.claimed_by else ""
        st.caption(who + claimed)
        if request.result_run_id:
            st.button(
                f"Open result run #{request.result_run_id}",
                key=f"result_{request.id}",
                on_click=open_run,
                args=(request.result_run_id,),
                icon=":material/arrow_forward:",
            )
        if request.status == "failed" and request.error_message:
            st.error(ui.literal(data.redact(request.error_message)), icon=":material/error:")


def render_rerun_all(frame: pd.DataFrame) -> None:
    """'Rerun all failed in this view', with a count and a confirmation step naming the run ids. Only
    failures nothing has made good yet: a made-good failure needs no rerun."""
    pending = st.session_state.get("rerun_all_ids")
    if pending is None:
        unresolved = (frame["status"] == "failed") & frame["resolved_by_run_id"].isna()
        failed = [int(i) for i in frame.loc[unresolved, "id"]]
        if failed and st.button(
            f"Rerun all {len(failed)} unresolved failed in this view",
            key="rerun_all",
            icon=":material/replay:",
        ):
            st.session_state["rerun_all_ids"] = failed
            st.rerun()
        return
    shown = ", ".join(f"#{i}" for i in pending[:15]) + (" …" if len(pending) > 15 else "")
    st.warning(
        f"Queue reruns of {len(pending)} unresolved failed runs ({shown})? Runs with an open request are "
        "not queued twice.",
        icon=":material/help:",
    )
    left, right = st.columns(2)
    if left.button(f"Confirm: rerun {len(pending)} runs", key="rerun_all_confirm", type="primary"):
        try:
            queued = data.request_reruns(pending)
        except PermissionError as exc:
            st.error(ui.literal(str(exc)), icon=":material/lock:")
            return
        st.session_state["runs_notice"] = f"Queued {len(queued)} rerun requests."
        del st.session_state["rerun_all_ids"]
        st.rerun()
    if right.button("Cancel", key="rerun_all_cancel"):
        del st.session_state["rerun_all_ids"]
        st.rerun()
