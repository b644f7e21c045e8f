"""Incidents: what is wrong now and what was; one incident's story (opened, notified, acknowledged, silenced,
resolved, and by which run) with its alert messages; acknowledging and silencing it.

Alerts link here as `incidents?incident=ID`: the link selects the incident whenever it changes, and the
page keeps its view in the URL (`show=open`, `incident=ID`) so that it can be shared.
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from dashboard import components as ui
from dashboard import data, gate, urlstate
from dashboard.incident_frames import (
    deliveries_frame,
    duration_text,
    incidents_frame,
    silence_text,
    status,
    subject,
    when,
)
from pipeline.schemas import IncidentData

SHOW = {"all": "All", "open": "Open"}
SHOW_KEY = "incidents_show"
TABLE = "incidents"  # selectable_table key: the chosen id is in st.session_state["incidents_selected"]
SELECTED = f"{TABLE}_selected"
LINK_SEEN = "_incidents_link"
NOTICE = "incidents_notice"
WHO, NOTE, SILENCE_FOR = "incident_who", "incident_note", "incident_silence_for"
SILENCE_CHOICES = {"1 h": 1.0, "4 h": 4.0, "24 h": 24.0, "until resolved": None}
RUNS_PAGE = "app_pages/runs.py"


# ---------------------------------------------------------------------------------------------- link


def _link_now() -> str:
    return repr(sorted(st.query_params.to_dict().items()))


def read_link() -> None:
    """Take the filter and the incident from the URL whenever the URL says something new (an alert's link,
    or a link from another page in this session); warn about values that were ignored."""
    if st.session_state.get(LINK_SEEN) == _link_now():
        return
    st.session_state[LINK_SEEN] = _link_now()
    params = {k: st.query_params.get_all(k) for k in st.query_params}
    warnings: list[str] = []
    show = urlstate.parse_choice(params, "show", SHOW, warnings)
    incident_id = urlstate.parse_int(params, "incident", warnings)
    if show:
        st.session_state[SHOW_KEY] = show
    if incident_id:
        ui.choose_row(TABLE, incident_id)
    if warnings:  # they quote the link's values, which anyone can write
        ignored = ui.literal("; ".join(warnings))
        st.warning(f"Some link parameters were ignored: {ignored}", icon=":material/link_off:")


def write_link(show: str, selected: int | None) -> None:
    """Keep the filter and the chosen incident in the URL."""
    params = {"show": show} if show != "all" else {}
    if selected:
        params["incident"] = str(selected)
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)
    st.session_state[LINK_SEEN] = _link_now()


# ---------------------------------------------------------------------------------------------- table


def render_metrics(incidents: list[IncidentData], now: datetime) -> None:
    """Open (and of those acknowledged, silenced) and resolved in the last 24 hours."""
    opened = [i for i in incidents if i.is_open]
    figures = [
        ("Open incidents", len(opened)),
        ("Acknowledged", sum(1 for i in opened if i.acknowledged_at)),
        ("Silenced", sum(1 for i in opened if i.silenced(now))),
        ("Resolved (24 h)", len(data.resolved_incidents(24))),
    ]
    for col, (label, value) in zip(st.columns(len(figures)), figures, strict=True):
        col.metric(label, f"{value:,}", border=True)


def render_table(incidents: list[IncidentData], now: datetime) -> int | None:
    """The incidents, open first; selecting a row opens it below (kept by incident id)."""
    frame = incidents_frame(incidents, now)
    frame, level = ui.status_cells(frame, "level")
    return ui.selectable_table(
        frame,
        id_column="id",
        key=TABLE,
        status_column="status",
        column_config={
            **level,
            "id": st.column_config.NumberColumn("incident", format="#%d", width="small"),
            "unit": st.column_config.TextColumn("unit"),
            "summary": st.column_config.TextColumn("summary", width="medium"),  # in full below, when chosen
            "opened_at": st.column_config.DatetimeColumn("opened (UTC)", format="MMM D, HH:mm"),
            "notified_at": st.column_config.DatetimeColumn("notified (UTC)", format="MMM D, HH:mm"),
            "acknowledged": st.column_config.TextColumn("acknowledged by"),
            "silenced": st.column_config.TextColumn("silenced"),
            "resolved_at": st.column_config.DatetimeColumn("resolved (UTC)", format="MMM D, HH:mm"),
            "resolved_by": st.column_config.TextColumn("resolved by"),
        },
        placeholder=ui.MISSING,
    )


# ---------------------------------------------------------------------------------------------- one incident


def _fact(label: str, value: str) -> None:
    st.markdown(f"**{label}**  \n{value}")


def render_incident(incident: IncidentData, now: datetime) -> None:
    """The incident's story: what, opened, notified, acknowledged, silenced, resolved (by which run),
    duration, the runs it covers, and its alert messages."""
    what = ui.literal(subject(incident))
    st.subheader(f":material/e911_emergency: Incident #{incident.id} · {ui.literal(incident.kind)} · {what}")
    badges = st.container(horizontal=True)
    with badges:
        ui.status_badge(status(incident))
        ui.status_badge(incident.level)
        if incident.acknowledged_at:
            st.badge("acknowledged", icon=":material/person_check:", color="blue")
        if silence_text(incident, now):
            st.badge("silenced", icon=":material/notifications_off:", color="gray")
    summary = ui.literal(incident.summary)
    if not incident.is_open:
        st.info(summary, icon=":material/history:")
    elif incident.level == "error":
        st.error(summary, icon=":material/error:")
    else:
        st.warning(summary, icon=":material/warning:")

    left, middle, right = st.columns(3)
    with left:
        _fact("Opened", f"{when(incident.opened_at)} ({ui.age(incident.opened_at, now)})")
        _fact(
            "Duration",
            duration_text(incident.duration_seconds(now)) + ("" if incident.resolved_at else " so far"),
        )
    with middle:
        _fact("Notified", when(incident.notified_at) or "no alert sent yet")
        if incident.acknowledged_at:
            by = ui.literal(incident.acknowledged_by or "someone")
            note = f"  \n{ui.literal(incident.ack_note)}" if incident.ack_note else ""
            _fact("Acknowledged", f"by {by} at {when(incident.acknowledged_at)}{note}")
        else:
            _fact("Acknowledged", "not yet")
    with right:
        silenced = silence_text(incident, now)
        by = f" (by {ui.literal(incident.silenced_by)})" if incident.silenced_by else ""
        _fact("Silenced", f"{silenced}{by}" if silenced else "no")
        if incident.resolved_at:
            resolution = f"  \n{ui.literal(incident.resolution)}" if incident.resolution else ""
            _fact("Resolved", f"{when(incident.resolved_at)}{resolution}")
        else:
            _fact("Resolved", "not yet")
    render_run_links(incident)
    render_deliveries(incident)


def render_run_links(incident: IncidentData) -> None:
    """Links to the run that resolved it, and to its first and last failed runs, on the Runs page."""
    runs = []
    if incident.resolved_by_run_id:
        runs.append(
            (f"Resolved by run #{incident.resolved_by_run_id}", incident.resolved_by_run_id, "task_alt")
        )
    if incident.first_run_id:
        runs.append((f"First failed run #{incident.first_run_id}", incident.first_run_id, "receipt_long"))
    if incident.last_run_id and incident.last_run_id != incident.first_run_id:
        runs.append((f"Latest failed run #{incident.last_run_id}", incident.last_run_id, "receipt_long"))
    if not runs:
        return
    row = st.container(horizontal=True)
    for label, run_id, icon in runs:
        row.page_link(RUNS_PAGE, label=label, icon=f":material/{icon}:", query_params={"run": str(run_id)})


def render_deliveries(incident: IncidentData) -> None:
    """The alert messages sent (or tried) about the incident, one per channel and event."""
    messages = data.deliveries(incident.id)
    st.markdown(f"**Alert messages** ({len(messages)})")
    if not messages:
        st.caption(
            "None yet: an incident is announced once it has been open ALERT_AFTER_MINUTES, unless silenced."
        )
        return
    frame, config = ui.status_cells(deliveries_frame(messages), "status")
    st.dataframe(
        frame,
        hide_index=True,
        height=ui.table_height(len(frame)),
        placeholder=ui.MISSING,
        column_config={
            **config,
            "attempts": ui.count_column("attempts"),
            "error": st.column_config.TextColumn("error", width="large"),
            "created_at": st.column_config.DatetimeColumn("first tried (UTC)", format="MMM D, HH:mm:ss"),
            "sent_at": st.column_config.DatetimeColumn("sent (UTC)", format="MMM D, HH:mm:ss"),
        },
    )


# ---------------------------------------------------------------------------------------------- actions


def _act(action: str, incident_id: int, hours: float | None = None) -> None:
    """A button's callback: run the write before the page is drawn, so the page shows its result."""
    who = str(st.session_state.get(WHO) or "")
    try:
        if action == "ack":
            data.acknowledge_incident(incident_id, by=who, note=st.session_state.get(NOTE))
            st.session_state[NOTE] = ""
            done = f"Incident #{incident_id} acknowledged."
        elif action == "silence":
            data.silence_incident(incident_id, hours=hours, by=who)
            span = "until it is resolved" if hours is None else f"for {hours:g} h"
            done = f"Alerts of incident #{incident_id} silenced {span}."
        else:
            data.unsilence_incident(incident_id, by=who)
            done = f"Incident #{incident_id} unsilenced: its alerts go out again."
    except (PermissionError, ValueError, LookupError) as exc:
        st.session_state[NOTICE] = ("error", f"Incident #{incident_id}: {exc}")
    else:
        st.session_state[NOTICE] = ("success", done)


def render_actions(incident: IncidentData, now: datetime) -> None:
    """Acknowledge (who and a note) and silence (1 h / 4 h / 24 h / until resolved) or unsilence."""
    with st.container(border=True):
        st.markdown("**Respond**")
        if WHO not in st.session_state and gate.logged_in():
            st.session_state[WHO] = str(st.user.get("email") or "")
        left, right = st.columns([1, 2])
        left.text_input("Your name", key=WHO, max_chars=128, placeholder="who is on it")
        right.text_input(
            "Note", key=NOTE, max_chars=1000, placeholder="what you are doing about it (optional)"
        )
        ack, silence = st.columns(2)
        ack.button(
            f"Acknowledge incident #{incident.id}",
            key=f"ack_{incident.id}",
            type="primary",
            icon=":material/person_check:",
            on_click=_act,
            args=("ack", incident.id),
        )
        ui.seed(SILENCE_FOR, "4 h")
        with silence:
            choice = st.segmented_control(
                "Silence alerts for", list(SILENCE_CHOICES), key=SILENCE_FOR, required=True
            )
            hours = SILENCE_CHOICES.get(choice or "4 h")
            buttons = st.container(horizontal=True)
            buttons.button(
                f"Silence incident #{incident.id}",
                key=f"silence_{incident.id}",
                icon=":material/notifications_off:",
                on_click=_act,
                args=("silence", incident.id, hours),
            )
            if incident.silenced(now):
                buttons.button(
                    f"Unsilence incident #{incident.id}",
                    key=f"unsilence_{incident.id}",
                    icon=":material/notifications_active:",
                    on_click=_act,
                    args=("unsilence", incident.id),
                )


# ---------------------------------------------------------------------------------------------- page


ui.page_header(
    "Incidents",
    ":material/e911_emergency:",
    "What is wrong now and what was. The pipeline opens and resolves incidents by itself; alerts go out "
    "for open ones unless silenced.",
)
read_link()
access = gate.current(data.settings())
now = datetime.now(UTC)
if notice := st.session_state.pop(NOTICE, None):
    kind, text = notice
    (st.success if kind == "success" else st.error)(ui.literal(text), icon=":material/info:")

everything = data.incidents()
render_metrics(everything, now)
ui.seed(SHOW_KEY, "all")
show = st.segmented_control("Show", list(SHOW), key=SHOW_KEY, format_func=SHOW.__getitem__) or "all"
shown = [i for i in everything if i.is_open] if show == "open" else everything
selected = None
if shown:
    selected = render_table(shown, now)
elif everything:
    st.success("No open incidents.", icon=":material/check_circle:")
elif not data.run_facets().sources:
    ui.empty_state(
        "No ingestion runs yet",
        "Incidents open here when runs fail and nothing makes them good, data goes stale, a quality check "
        "finds errors or the scheduler dies.",
        [ui.START_COMMANDS["demo"], ui.START_COMMANDS["scheduler"]],
    )
else:
    st.success(
        "No incidents so far: every failed run was made good, data is fresh and the scheduler beats.",
        icon=":material/check_circle:",
    )
selected = selected or st.session_state.get(SELECTED)
write_link(show, int(selected) if selected else None)
incident = data.incident(int(selected)) if selected else None
if incident is not None:
    st.divider()
    render_incident(incident, now)
    if incident.is_open and access.allows("acknowledge"):  # silence needs the same role
        render_actions(incident, now)
    elif incident.is_open:
        off = access.refusal("acknowledge", "acknowledging and silencing", name=ui.literal)
        st.caption(f":material/lock: {off}")
elif selected:
    st.caption(f"Incident #{selected} does not exist.")
