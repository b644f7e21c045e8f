"""The audit log on both dialects: actions recorded with the write they describe, in one transaction;
listed newest first with filters; linked to the run an action was about and to the run it caused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from pipeline.actors import Actor, allows, cli_actor
from pipeline.database import DatabaseService
from pipeline.models import AuditEntry, ReplayRequest
from pipeline.store.incidents import IncidentFinding
from tests.support.factories import finished_run

ALICE = Actor("alice@example.com", "dashboard", "operator")


def _count(db: DatabaseService, model: type) -> int:
    with db.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(model)) or 0)


def test_a_rerun_and_its_audit_row_are_written_together(db):
    run_id = finished_run(db, "failed")
    request = db.request_rerun(run_id, "dashboard (alice@example.com)", actor=ALICE)
    [entry] = db.audit_entries()
    assert (entry.actor, entry.via, entry.role, entry.action, entry.outcome) == (
        "alice@example.com", "dashboard", "operator", "rerun", "ok",
    )  # fmt: skip
    assert (entry.target, entry.run_id, entry.request_id) == (f"run:{run_id}", run_id, request.id)
    expected = {"run_id": run_id, "source": "blockchair", "data_type": "blocks", "coin": "bitcoin"}
    assert entry.params == expected
    assert entry.detail is None

    # A second click while the request is open queues nothing, and the log says so.
    again = db.request_rerun(run_id, "dashboard", actor=ALICE)
    assert again.id == request.id
    newest = db.audit_entries()[0]
    assert newest.request_id == request.id
    assert newest.detail == f"request #{request.id} was already queued"


def test_a_failed_audit_write_leaves_no_request(db, monkeypatch):
    """The request and its audit row commit together: if the audit insert fails, nothing was queued."""
    run_id = finished_run(db, "failed")

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full while writing the audit row")

    monkeypatch.setattr(db, "_insert_audit", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        db.request_rerun(run_id, "cli", actor=cli_actor())
    assert _count(db, ReplayRequest) == 0
    assert _count(db, AuditEntry) == 0


def test_backfills_acknowledgements_and_silences_are_audited(db):
    slice_params = {"source": "coingecko", "data_type": "prices", "coin": "bitcoin",
                    "params": {"coin_id": "bitcoin", "start": "2024-01-01", "end": "2024-01-31"}}  # fmt: skip
    request = db.request_backfill(slice_params, "dashboard", actor=ALICE, action="fill_gaps")
    finished_run(db, "failed")
    db.reconcile_incidents(["unit"], [IncidentFinding(kind="unit", key="blockchair/blocks/bitcoin",
                                                      level="error", summary="blocks failing")])  # fmt: skip
    [incident] = db.get_incidents()
    db.acknowledge_incident(incident.id, by="Alice", note="on it", actor=ALICE)
    until = db.db_now() + timedelta(hours=2)
    db.silence_incident(incident.id, until=until, by="Alice", actor=ALICE)
    db.silence_incident(incident.id, until=None, by="Alice", actor=ALICE)
    # An unknown incident changes nothing, so nothing is audited (the caller gets LookupError).
    with pytest.raises(LookupError):
        db.acknowledge_incident(987654, by="Alice", actor=ALICE)

    entries = list(reversed(db.audit_entries()))
    assert [e.action for e in entries] == ["fill_gaps", "acknowledge", "silence", "unsilence"]
    assert entries[0].request_id == request.id
    assert entries[0].params == slice_params
    assert entries[1].params == {"incident_id": incident.id, "by": "Alice", "note": "on it"}
    assert entries[2].params is not None
    assert entries[2].params["until"] == until.isoformat()
    assert {e.target for e in entries[1:]} == {f"incident:{incident.id}"}


def test_listing_filters_and_order(db):
    bob = Actor("bob", "cli")
    for action in ("rerun", "acknowledge", "silence"):
        db.record_audit(bob, action, target="x")
    db.record_audit(ALICE, "rerun", target="y", outcome="denied", detail="viewer")
    assert [e.action for e in db.audit_entries()] == ["rerun", "silence", "acknowledge", "rerun"]
    assert [e.outcome for e in db.audit_entries(actor="alice@example.com")] == ["denied"]
    assert len(db.audit_entries(action="rerun")) == 2
    assert len(db.audit_entries(via="cli")) == 3
    assert len(db.audit_entries(limit=2)) == 2
    assert db.audit_entries(since=db.db_now() + timedelta(minutes=5)) == []
    with pytest.raises(ValueError, match="outcome"):
        db.record_audit(bob, "rerun", outcome="maybe")


def test_actions_are_linked_to_the_run_they_caused(db):
    """A rerun's audit row shows beside the failed run it was about and beside the run it produced."""
    failed = finished_run(db, "failed")
    request = db.request_rerun(failed, "dashboard", actor=ALICE)
    result = finished_run(db, "success", trigger="rerun", parent=failed)
    with db.transaction() as conn:
        conn.execute(
            ReplayRequest.__table__.update()
            .where(ReplayRequest.id == request.id)
            .values(status="done", result_run_id=result)
        )
    unrelated = finished_run(db, "success")
    linked = db.audit_for_runs([failed, result, unrelated])
    assert set(linked) == {failed, result}
    assert [e.action for e in linked[failed]] == [e.action for e in linked[result]] == ["rerun"]
    assert db.audit_for_runs([]) == {}


def test_hostile_and_long_text_is_kept_bounded(db):
    name = "x" * 500 + "\x00"
    db.record_audit(Actor(name.replace("\x00", ""), "api"), "rerun", target="t" * 500,
                    params={"note": "'; DROP TABLE audit_log; --"})  # fmt: skip
    [entry] = db.audit_entries()
    assert len(entry.actor) == 200
    assert len(entry.target or "") == 200
    assert entry.params == {"note": "'; DROP TABLE audit_log; --"}


@pytest.mark.parametrize(
    ("role", "action", "allowed"),
    [
        ("viewer", "rerun", False),
        ("operator", "rerun", True),
        ("operator", "coin_add", False),
        ("admin", "coin_add", True),
        ("admin", "fill_gaps", True),
        (None, "rerun", False),
        ("admin", "drop_database", False),
    ],
)
def test_roles(role, action, allowed):
    assert allows(role, action) is allowed
