"""AppTest on SQLite: the Overview leads with incidents, the Incidents page lists them, opens one from its
link (`incidents?incident=ID`, the address alerts carry), acknowledges and silences it through the write
guard, and the Runs page tells failures that were made good from those that were not."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.incident_frames import UNTIL_RESOLVED
from tests.dashboard.helpers import new_app, open_page, request_count
from tests.dashboard.seed import FAILED_ERROR, seed_incidents
from tests.support.databases import migrated
from tests.support.settings import make_settings


@pytest.fixture
def incidents_db(tmp_path, use_database):  # noqa: ANN001, ANN201
    """A migrated SQLite database with `seed_incidents`, the app pointed at it."""
    url = f"sqlite:///{tmp_path}/incidents.db"
    db = migrated(make_settings(url))
    seeded = seed_incidents(db)
    use_database(url)
    yield db, seeded
    db.dispose()


def texts(at: AppTest, kind: str) -> list[str]:
    """The text of the elements of one kind as shown: `literal()`'s backslashes resolved."""
    return [re.sub(r"\\(.)", r"\1", str(e.value)) for e in getattr(at, kind)]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def labels(at: AppTest) -> list[str]:
    return [b.label for b in at.button]


def button(at: AppTest, label_start: str):  # noqa: ANN201
    found = [b for b in at.button if b.label.startswith(label_start)]
    assert len(found) == 1, labels(at)
    return found[0]


def frame_with(at: AppTest, column: str):  # noqa: ANN201
    return next(df.value for df in at.dataframe if column in df.value.columns)


def links(at: AppTest) -> dict[str, tuple[str, str]]:
    """Page links: label -> (page, query string)."""
    return {link.value: (link.proto.page, link.proto.query_string) for link in at.page_link}


# ---------------------------------------------------------------------------------------------- overview


def test_overview_says_all_healthy_without_incidents(sqlite_populated):
    at = open_page("overview")
    assert any("All healthy" in s for s in texts(at, "success"))
    found = metrics(at)
    assert (found["Open incidents"], found["Resolved (24 h)"]) == ("0", "0")
    assert "0 incidents resolved in the last 24 h" in links(at)


def test_overview_leads_with_the_open_incident(incidents_db):
    db, seeded = incidents_db
    at = open_page("overview")
    assert not any("All healthy" in s for s in texts(at, "success"))
    assert any("1 open incident" in s.value for s in at.subheader)
    table = frame_with(at, "summary")
    assert table["id"].tolist() == [seeded.open_id]
    assert "2 failed runs not made good yet" in table["summary"].iloc[0]
    assert table["unit"].tolist() == ["blockchair blocks bitcoin"]
    found = metrics(at)
    assert found["Open incidents"] == "1"
    assert found["Resolved (24 h)"] == "1"
    assert found["Failed runs unresolved (24 h)"] == "2"
    assert found["Failed runs made good (24 h)"] == "1"
    page, query = links(at)["1 incident resolved in the last 24 h"]
    assert (page.endswith("incidents"), query) == (True, "show=all")
    failures = frame_with(at, "error_message")  # latest failures: only those nothing made good
    assert sorted(failures["id"].tolist()) == sorted(seeded.failed_runs)


def test_selecting_an_open_incident_on_the_overview_opens_it(incidents_db):
    _, seeded = incidents_db
    at = open_page("overview")
    table_key = next(k for k in at.session_state if k.startswith("overview_incidents_"))
    at.session_state[table_key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert not at.exception
    assert any(f"Incident #{seeded.open_id}" in s.value for s in at.subheader)
    assert at.query_params["incident"] == str(seeded.open_id)


# ---------------------------------------------------------------------------------------------- incidents


def test_incidents_page_lists_open_first_and_opens_the_linked_incident(incidents_db):
    db, seeded = incidents_db
    at = open_page("incidents", query={"incident": str(seeded.open_id)})
    table = frame_with(at, "summary")
    assert table["id"].tolist() == [seeded.open_id, seeded.resolved_id]
    assert [s[0] for s in table["status"]] == ["open", "resolved"]
    assert table["resolved_by"].tolist() == ["", f"run #{seeded.fixing_run}"]
    assert any(
        f"Incident #{seeded.open_id} · unit · blockchair blocks bitcoin" in s.value for s in at.subheader
    )
    markdown = " ".join(texts(at, "markdown"))
    assert "no alert sent yet" not in markdown  # the slack message went out
    assert "**Acknowledged**  \nnot yet" in markdown
    deliveries = frame_with(at, "channel")
    assert sorted(zip(deliveries["channel"], deliveries["error"], strict=True)) == [
        ("slack", ""),
        ("webhook", "HTTP 500 from the webhook"),
    ]
    assert [s[0] for s in deliveries["status"]] == ["failed", "sent"]  # newest first
    first, last = seeded.failed_runs
    found = links(at)
    assert found[f"First failed run #{first}"] == ("runs", f"run={first}")
    assert found[f"Latest failed run #{last}"] == ("runs", f"run={last}")
    assert labels(at)[:1] == [f"Acknowledge incident #{seeded.open_id}"]
    assert at.query_params["incident"] == str(seeded.open_id)


def test_a_resolved_incident_names_the_run_that_resolved_it(incidents_db):
    _, seeded = incidents_db
    at = open_page("incidents", query={"incident": str(seeded.resolved_id)})
    markdown = " ".join(texts(at, "markdown"))
    assert f"run #{seeded.fixing_run} succeeded" in markdown  # the stored resolution, shown literally
    assert links(at)[f"Resolved by run #{seeded.fixing_run}"] == ("runs", f"run={seeded.fixing_run}")
    assert not [b for b in labels(at) if b.startswith(("Acknowledge", "Silence"))]  # nothing to do


def test_show_open_filters_the_table_and_stays_in_the_url(incidents_db):
    _, seeded = incidents_db
    at = open_page("incidents", query={"show": "open"})
    assert frame_with(at, "summary")["id"].tolist() == [seeded.open_id]
    at.segmented_control(key="incidents_show").set_value("all").run()
    assert len(frame_with(at, "summary")) == 2
    assert "show" not in at.query_params
    at.segmented_control(key="incidents_show").set_value("open").run()
    assert at.query_params["show"] == "open"


def test_acknowledge_and_silence_change_the_stored_incident(incidents_db):
    db, seeded = incidents_db
    incident_id = seeded.open_id
    at = open_page("incidents", query={"incident": str(incident_id)})
    button(at, "Acknowledge incident").click().run()  # no name: refused, nothing stored
    assert any("say who you are" in e for e in texts(at, "error"))
    assert db.get_incident(incident_id).acknowledged_at is None

    at.text_input(key="incident_who").input("alice")
    at.text_input(key="incident_note").input("restarting the node")
    button(at, "Acknowledge incident").click().run()
    stored = db.get_incident(incident_id)
    assert (stored.acknowledged_by, stored.ack_note) == ("alice", "restarting the node")
    assert any(f"Incident #{incident_id} acknowledged" in s for s in texts(at, "success"))
    assert any("by alice at" in m for m in texts(at, "markdown"))  # the view shows it at once
    assert frame_with(at, "summary")["acknowledged"].tolist()[0] == "alice"
    assert at.text_input(key="incident_note").value == ""

    at.segmented_control(key="incident_silence_for").set_value("1 h").run()
    before = datetime.now(UTC)
    button(at, "Silence incident").click().run()
    stored = db.get_incident(incident_id)
    assert stored.silenced_by == "alice"
    assert before + timedelta(minutes=59) < stored.silenced_until < datetime.now(UTC) + timedelta(hours=1)
    assert frame_with(at, "summary")["silenced"].tolist()[0].startswith("until ")

    at.segmented_control(key="incident_silence_for").set_value("until resolved").run()
    button(at, "Silence incident").click().run()
    assert db.get_incident(incident_id).silenced_until == UNTIL_RESOLVED
    assert frame_with(at, "summary")["silenced"].tolist()[0] == "until resolved"

    button(at, "Unsilence incident").click().run()
    stored = db.get_incident(incident_id)
    assert (stored.silenced_until, stored.silenced_by) == (None, None)
    assert not [b for b in labels(at) if b.startswith("Unsilence")]


def test_read_only_offers_no_incident_action_and_data_refuses_it(incidents_db, use_database):
    from dashboard import data

    db, seeded = incidents_db
    use_database(db.database_url, DASHBOARD_READ_ONLY="true")
    at = open_page("incidents", query={"incident": str(seeded.open_id)})
    assert any(f"Incident #{seeded.open_id}" in s.value for s in at.subheader)  # reading works
    assert not [b for b in labels(at) if b.startswith(("Acknowledge", "Silence", "Unsilence"))], labels(at)
    assert not at.text_input
    assert any(
        "acknowledging and silencing are disabled (DASHBOARD_READ_ONLY)" in c for c in texts(at, "caption")
    )
    with pytest.raises(PermissionError, match="DASHBOARD_READ_ONLY"):
        data.acknowledge_incident(seeded.open_id, by="mallory")
    with pytest.raises(PermissionError):
        data.silence_incident(seeded.open_id, hours=None, by="mallory")
    with pytest.raises(PermissionError):
        data.unsilence_incident(seeded.open_id, by="mallory")
    stored = db.get_incident(seeded.open_id)
    assert (stored.acknowledged_by, stored.silenced_until) == (None, None)


def test_an_unknown_or_bad_incident_link_is_said_not_raised(incidents_db):
    at = open_page("incidents", query={"incident": "999"})
    assert any("Incident #999 does not exist" in c for c in texts(at, "caption"))
    at = open_page("incidents", query={"incident": "<b>x</b>"})
    assert any("ignored" in w for w in texts(at, "warning"))


# ---------------------------------------------------------------------------------------------- runs


def test_runs_page_shows_made_good_failures_and_reruns_only_unresolved_ones(incidents_db):
    db, seeded = incidents_db
    at = open_page("runs", query={"status": "failed"})
    table = frame_with(at, "error_message")
    status = dict(zip(table["id"], (s[0] for s in table["status"]), strict=True))
    assert status[seeded.made_good_run] == f"failed · resolved by run #{seeded.fixing_run}"
    assert {status[r] for r in seeded.failed_runs} == {"failed"}
    found = metrics(at)
    assert (found["Failed, unresolved"], found["Failed, made good"]) == ("2", "1")

    button(at, "Rerun all 2 unresolved failed").click().run()
    button(at, "Confirm: rerun 2 runs").click().run()
    assert not at.exception
    assert [request_count(db, r) for r in seeded.failed_runs] == [1, 1]
    assert request_count(db, seeded.made_good_run) == 0
    assert request_count(db) == 2


def test_the_run_view_of_a_failed_run_links_its_incident(incidents_db):
    _, seeded = incidents_db
    at = open_page("runs", query={"run": str(seeded.failed_runs[0])})
    page, query = links(at)[f"Incident #{seeded.open_id} (open)"]
    assert (page, query) == ("incidents", f"incident={seeded.open_id}")

    at = open_page("runs", query={"run": str(seeded.made_good_run)})
    assert f"Open run #{seeded.fixing_run}" in labels(at)
    assert f"Incident #{seeded.resolved_id} (resolved)" in links(at)
    button(at, f"Open run #{seeded.fixing_run}").click().run()
    assert any(f"Run #{seeded.fixing_run}" in s.value for s in at.subheader)


def test_a_link_from_another_page_opens_the_run_even_after_the_runs_page_was_read(incidents_db):
    _, seeded = incidents_db
    at = new_app()
    at.query_params["run"] = str(seeded.failed_runs[0])
    at.run()
    at.switch_page("app_pages/runs.py").run()
    assert any(f"Run #{seeded.failed_runs[0]}" in s.value for s in at.subheader)
    at.query_params["run"] = str(seeded.fixing_run)  # as a page link to another run does
    at.switch_page("app_pages/runs.py").run()
    assert any(f"Run #{seeded.fixing_run}" in s.value for s in at.subheader)


def test_seeded_failure_text_is_the_pipelines(incidents_db):
    """The seed goes through the real path: the summaries quote the stored errors."""
    db, seeded = incidents_db
    summary = db.get_incident(seeded.open_id).summary
    assert "SourceUnavailable: HTTP 503 from blockchair" in summary
    assert FAILED_ERROR not in summary
