"""The audit log on the Runs page: a rerun clicked in the dashboard is recorded with who clicked it, shown
beside the run it was about and beside the run it produced, and listed in the page's audit log."""

from __future__ import annotations

from pipeline.models import ReplayRequest
from tests.dashboard.helpers import open_page, reset_app_state
from tests.dashboard.test_app import button, select_row, texts
from tests.support.factories import finished_run


def test_a_dashboard_rerun_is_audited_and_shown_beside_both_runs(sqlite_populated):
    db, seeded = sqlite_populated
    failed = seeded.runs["failed"]
    at = open_page("runs")
    select_row(at, "runs", "id", failed)
    at.run()
    button(at, "Rerun run #").click().run()
    assert not at.exception

    [entry] = db.audit_entries()
    assert (entry.action, entry.via, entry.outcome, entry.run_id) == ("rerun", "dashboard", "ok", failed)
    request = db.open_request_for(failed)
    assert request is not None
    assert entry.request_id == request.id
    assert any(f"Rerun requested by {entry.actor}" in c for c in texts(at, "caption")), texts(at, "caption")

    # The scheduler serves the request: the run it produces names who asked for it, in the table and
    # in its own detail.
    result = finished_run(db, "success", trigger="rerun", parent=failed)
    with db.transaction() as conn:
        conn.execute(
            ReplayRequest.__table__.update()
            .where(ReplayRequest.id == request.id)
            .values(status="done", result_run_id=result)
        )
    reset_app_state()
    at = open_page("runs", query={"run": str(result)})
    table = next(df.value for df in at.dataframe if "caused_by" in df.value.columns)
    by_id = dict(zip(table["id"], table["caused_by"], strict=True))
    assert by_id[result] == entry.actor
    assert by_id[failed] == ""  # nobody asked for the failed run itself
    assert any(f"Requested by {entry.actor}" in c for c in texts(at, "caption"))
    audit_tables = [df.value for df in at.dataframe if "outcome" in df.value.columns]
    assert audit_tables, "the audit log expander shows a table"
    assert audit_tables[0].loc[0, "action"] == "rerun"
