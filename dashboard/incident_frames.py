"""Incidents and their alert deliveries as the pages show them: frames with human columns and short texts.

Pure functions (no Streamlit, no database), so the wording and the table shapes are tested without a page.
Stored text (summaries, names, notes, errors) is returned as written: a page puts it in a table cell, which
is literal, or through `components.literal()` before any element that renders markdown.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pandas as pd

from pipeline.schemas import AlertDeliveryData, IncidentData

# "Silence until resolved": a time no incident outlives (the store's silence is a time, and alerts are
# held back while it lies ahead; a resolved incident owes no FIRING message anyway).
UNTIL_RESOLVED = datetime(9999, 12, 31, tzinfo=UTC)
TIME = "%Y-%m-%d %H:%M"
# What and how bad first, then its course. The Overview's few columns end with the summary (long, a
# source's error text), where it may run off the edge of the table without hiding another column.
INCIDENT_COLUMNS = [
    "id", "status", "level", "kind", "unit", "summary", "opened_at", "duration", "notified_at",
    "acknowledged", "silenced", "resolved_at", "resolved_by",
]  # fmt: skip
OVERVIEW_COLUMNS = ["id", "level", "kind", "unit", "opened_at", "acknowledged", "silenced", "summary"]
DELIVERY_COLUMNS = ["channel", "event", "status", "attempts", "error", "created_at", "sent_at"]


def until_resolved(moment: datetime | None) -> bool:
    """Whether a silence was set "until resolved"."""
    return moment is not None and moment.year >= UNTIL_RESOLVED.year


def when(moment: datetime | None) -> str:
    """A stored time as "2024-05-01 12:34 UTC" ("" when there is none)."""
    return "" if moment is None else f"{moment.astimezone(UTC):{TIME}} UTC"


def duration_text(seconds: float) -> str:
    """'42 s', '5 min', '3 h 12 min', '2 d 4 h'."""
    seconds = max(int(seconds), 0)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def subject(incident: IncidentData) -> str:
    """What the incident is about: the unit ("blockchair blocks bitcoin") for a unit or a coin's freshness,
    else its key (the check and subject of a quality finding, the source of a quota, "scheduler")."""
    if incident.kind in ("unit", "freshness") and incident.unit:
        return incident.unit
    return incident.key


def silence_text(incident: IncidentData, now: datetime) -> str:
    """ "until resolved", "until 2024-05-01 14:00 UTC", or "" when its alerts are not held back now."""
    if not incident.silenced(now) or not incident.is_open:
        return ""
    if until_resolved(incident.silenced_until):
        return "until resolved"
    return f"until {when(incident.silenced_until)}"


def status(incident: IncidentData) -> str:
    """'open' or 'resolved'."""
    return "open" if incident.is_open else "resolved"


def _times(values: Sequence[datetime | None]) -> pd.Series:
    """Times as a UTC datetime column; a missing one is NaT (the table shows its placeholder)."""
    return pd.Series([pd.NaT if v is None else pd.Timestamp(v) for v in values], dtype="datetime64[ns, UTC]")


def incidents_frame(incidents: Sequence[IncidentData], now: datetime) -> pd.DataFrame:
    """One row per incident, in the order given (the store's: open first, then newest first)."""
    return pd.DataFrame(
        {
            "id": pd.Series([i.id for i in incidents], dtype="int64"),
            "status": [status(i) for i in incidents],
            "level": [i.level for i in incidents],
            "kind": [i.kind for i in incidents],
            "unit": [subject(i) for i in incidents],
            "summary": [i.summary for i in incidents],
            "opened_at": _times([i.opened_at for i in incidents]),
            "duration": [duration_text(i.duration_seconds(now)) for i in incidents],
            "notified_at": _times([i.notified_at for i in incidents]),
            "acknowledged": [i.acknowledged_by or "" for i in incidents],
            "silenced": [silence_text(i, now) for i in incidents],
            "resolved_at": _times([i.resolved_at for i in incidents]),
            "resolved_by": [
                f"run #{i.resolved_by_run_id}" if i.resolved_by_run_id else "" for i in incidents
            ],
        },
        columns=INCIDENT_COLUMNS,
    )


def open_incidents_frame(incidents: Sequence[IncidentData], now: datetime) -> pd.DataFrame:
    """The Overview's table of open incidents."""
    return incidents_frame([i for i in incidents if i.is_open], now)[OVERVIEW_COLUMNS]


def deliveries_frame(deliveries: Sequence[AlertDeliveryData]) -> pd.DataFrame:
    """One row per alert message: channel, event, status, attempts, error, created and sent times."""
    return pd.DataFrame(
        {
            "channel": [d.channel for d in deliveries],
            "event": [d.event for d in deliveries],
            "status": [d.status for d in deliveries],
            "attempts": pd.Series([d.attempts for d in deliveries], dtype="int64"),
            "error": [d.error or "" for d in deliveries],
            "created_at": _times([d.created_at for d in deliveries]),
            "sent_at": _times([d.sent_at for d in deliveries]),
        },
        columns=DELIVERY_COLUMNS,
    )
