"""The incident tables and texts of the dashboard (pure: no Streamlit, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dashboard.incident_frames import (
    INCIDENT_COLUMNS,
    OVERVIEW_COLUMNS,
    UNTIL_RESOLVED,
    deliveries_frame,
    duration_text,
    incidents_frame,
    open_incidents_frame,
    silence_text,
    subject,
)
from pipeline.schemas import AlertDeliveryData, IncidentData

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def incident(**values: object) -> IncidentData:
    base: dict[str, object] = {
        "id": 7,
        "kind": "unit",
        "key": "blockchair/blocks/bitcoin",
        "level": "error",
        "summary": "2 failed runs not made good yet",
        "source": "blockchair",
        "data_type": "blocks",
        "coin": "bitcoin",
        "opened_at": NOW - timedelta(hours=3, minutes=12),
    }
    return IncidentData.model_validate(base | values)


def test_durations_read_like_a_person_says_them():
    seconds = (0, 42, 300, 3 * 3600, 3 * 3600 + 720, 86_400, 2 * 86_400 + 4 * 3600)
    assert [duration_text(s) for s in seconds] == [
        "0 s",
        "42 s",
        "5 min",
        "3 h",
        "3 h 12 min",
        "1 d",
        "2 d 4 h",
    ]


def test_subject_is_the_unit_for_units_and_the_key_otherwise():
    assert subject(incident()) == "blockchair blocks bitcoin"
    quality = incident(kind="quality", key="non_positive_size/BTC", source=None, data_type=None, coin="BTC")
    assert subject(quality) == "non_positive_size/BTC"
    assert subject(incident(kind="scheduler", key="scheduler", source=None, data_type=None, coin=None)) == (
        "scheduler"
    )


def test_silence_says_until_when_and_nothing_once_it_is_over():
    assert silence_text(incident(), NOW) == ""
    assert (
        silence_text(incident(silenced_until=NOW + timedelta(hours=1)), NOW) == "until 2026-05-01 13:00 UTC"
    )
    assert silence_text(incident(silenced_until=UNTIL_RESOLVED), NOW) == "until resolved"
    assert silence_text(incident(silenced_until=NOW - timedelta(minutes=1)), NOW) == ""
    resolved = incident(silenced_until=UNTIL_RESOLVED, resolved_at=NOW)
    assert silence_text(resolved, NOW) == ""


def test_incident_table_has_human_cells_and_no_none():
    rows = [
        incident(acknowledged_by="alice", acknowledged_at=NOW, silenced_until=UNTIL_RESOLVED),
        incident(id=3, resolved_at=NOW - timedelta(hours=1), resolved_by_run_id=42, notified_at=NOW),
    ]
    frame = incidents_frame(rows, NOW)
    assert list(frame.columns) == INCIDENT_COLUMNS
    assert frame["status"].tolist() == ["open", "resolved"]
    assert frame["duration"].tolist() == ["3 h 12 min", "2 h 12 min"]
    assert frame["acknowledged"].tolist() == ["alice", ""]
    assert frame["silenced"].tolist() == ["until resolved", ""]
    assert frame["resolved_by"].tolist() == ["", "run #42"]
    assert frame["notified_at"].isna().tolist() == [True, False]
    assert str(frame["opened_at"].dtype) == "datetime64[ns, UTC]"
    text = frame.drop(columns=["opened_at", "notified_at", "resolved_at"]).astype(str)
    assert not text.isin(["None", "nan", "<NA>"]).any().any()
    assert open_incidents_frame(rows, NOW)["id"].tolist() == [7]
    assert list(open_incidents_frame(rows, NOW).columns) == OVERVIEW_COLUMNS
    assert incidents_frame([], NOW).empty


def test_deliveries_table():
    sent = AlertDeliveryData(
        id=1, incident_id=7, event="firing", channel="slack", status="sent", attempts=1, claimed_by="w",
        created_at=NOW, updated_at=NOW, sent_at=NOW,
    )  # fmt: skip
    failed = sent.model_copy(
        update={"id": 2, "channel": "email", "status": "failed", "error": "550", "sent_at": None}
    )
    frame = deliveries_frame([failed, sent])
    assert frame["error"].tolist() == ["550", ""]
    assert frame["sent_at"].isna().tolist() == [True, False]
    assert frame["attempts"].tolist() == [1, 1]
