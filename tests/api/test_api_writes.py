"""The API's write actions on both dialects: rerun, acknowledge, silence and fill gaps need a key with the
`operate` scope, write to the primary database, and commit an audit row naming the key (never the key
itself); a `read` key is refused and the refusal audited; without API_KEYS every write is refused."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from pipeline.api.app import create_app
from pipeline.database import DatabaseService
from pipeline.models import AuditEntry, Incident, ReplayRequest
from pipeline.services.gapfill import plan_fill
from pipeline.store.incidents import IncidentFinding
from pipeline.store.runs import RunSlice
from tests.api.seed import Seeded
from tests.support.databases import migrated_database
from tests.support.factories import finished_run
from tests.support.settings import make_settings

OPERATOR = "0per4t0r-k3y_a1b2c3d4e5f6a7b8"
READER = "r3ad0nly-k3y_f6e5d4c3b2a1f0e9"
AUDITOR = "aud1t0r-k3y_0011223344556677"
KEYS = f"ops-bot:{OPERATOR}:read+operate, {READER}:read, compliance:{AUDITOR}:audit"
READER_NAME = "key sha256:" + hashlib.sha256(READER.encode()).hexdigest()[:8]
AS_OPERATOR = {"X-API-Key": OPERATOR}
AS_READER = {"X-API-Key": READER}
WRITES = [
    ("/v1/runs/{run}/rerun", None),
    ("/v1/incidents/{incident}/acknowledge", {"note": "looking"}),
    ("/v1/incidents/{incident}/silence", {"hours": 1}),
    ("/v1/gaps/fill", None),
]


@pytest.fixture
def keyed(db: DatabaseService) -> Iterator[TestClient]:
    """A client of the API over the test database, with the keys of KEYS."""
    settings = make_settings(db.settings.DATABASE_URL, API_KEYS=KEYS)
    with TestClient(create_app(settings, db)) as client:
        yield client


def _incident(db: DatabaseService) -> int:
    """An open incident about failing bitcoin blocks."""
    finding = IncidentFinding(kind="unit", key="blockchair/blocks/bitcoin", level="error", summary="failing")
    return db.reconcile_incidents(["unit"], [finding]).opened[0].id


def _paths(db: DatabaseService, run: int | None = None) -> list[tuple[str, dict[str, object] | None]]:
    """Every write endpoint, aimed at a failed run (a new one unless given) and a new open incident."""
    run, incident = run or finished_run(db, "failed"), _incident(db)
    return [(path.format(run=run, incident=incident), body) for path, body in WRITES]


def _rows(db: DatabaseService, model: type) -> list:
    with db.engine.connect() as conn:
        return list(conn.execute(select(model)))


def test_an_operate_key_reruns_a_run_and_the_audit_row_names_the_key(keyed: TestClient, db: DatabaseService):
    run_id = finished_run(db, "failed")
    # If-None-Match must not turn a write into a 304: writes are never answered from a cache.
    response = keyed.post(f"/v1/runs/{run_id}/rerun", headers={**AS_OPERATOR, "If-None-Match": "*"})
    assert response.status_code == 202, response.text
    assert response.headers["cache-control"] == "no-store"
    assert "etag" not in response.headers
    request = response.json()["data"]
    assert (request["run_id"], request["status"], request["kind"]) == (run_id, "pending", "rerun")
    assert request["requested_by"] == "api (ops-bot)"
    assert db.open_request_for(run_id).id == request["id"]  # type: ignore[union-attr]

    [entry] = db.audit_entries()
    assert (entry.actor, entry.via, entry.action, entry.outcome) == ("ops-bot", "api", "rerun", "ok")
    assert (entry.target, entry.run_id, entry.request_id) == (f"run:{run_id}", run_id, request["id"])

    # Again while the request is open: the same request, and the log says nothing new was queued.
    again = keyed.post(f"/v1/runs/{run_id}/rerun", headers=AS_OPERATOR)
    assert again.status_code == 202
    assert again.json()["data"]["id"] == request["id"]
    assert len(_rows(db, ReplayRequest)) == 1
    assert db.audit_entries()[0].detail == f"request #{request['id']} was already queued"


def test_a_rerun_of_an_unknown_or_running_run_is_refused(keyed: TestClient, db: DatabaseService):
    running = db.start_run(
        RunSlice("blockchair", "blocks", "bitcoin", {"coin": "bitcoin"}),
        trigger="schedule",
        parent_run_id=None,
    )
    response = keyed.post(f"/v1/runs/{running}/rerun", headers=AS_OPERATOR)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/conflict"
    assert "still running" in response.json()["detail"]
    missing = keyed.post("/v1/runs/987654/rerun", headers=AS_OPERATOR)
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["name"] == "run_id"
    assert keyed.post("/v1/runs/0/rerun", headers=AS_OPERATOR).status_code == 400
    assert _rows(db, ReplayRequest) == []
    assert db.audit_entries() == []  # nothing was done, so nothing is audited


def test_a_read_key_is_refused_and_the_refusal_is_audited(keyed: TestClient, db: DatabaseService):
    run_id = finished_run(db, "failed")
    for path, body in _paths(db, run_id):
        response = keyed.post(path, json=body, headers=AS_READER)
        assert response.status_code == 403, path
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "/problems/forbidden"
        assert "operate" in response.json()["detail"]
    assert _rows(db, ReplayRequest) == []
    assert all(i.acknowledged_at is None and i.silenced_until is None for i in db.get_incidents())

    entries = list(reversed(db.audit_entries()))
    assert [e.action for e in entries] == ["rerun", "acknowledge", "silence", "fill_gaps"]
    assert {(e.actor, e.via, e.outcome) for e in entries} == {(READER_NAME, "api", "denied")}
    [incident] = db.get_incidents()
    assert [e.target for e in entries] == [
        f"run:{run_id}",
        f"incident:{incident.id}",
        f"incident:{incident.id}",
        None,
    ]
    assert all("operate" in (e.detail or "") for e in entries)
    # The refusal of a rerun shows beside the run it was aimed at.
    assert [e.outcome for e in db.audit_for_runs([run_id])[run_id]] == ["denied"]
    # A read key cannot read the audit log either (it names people); reading is not audited.
    assert keyed.get("/v1/audit", headers=AS_READER).status_code == 403
    assert len(db.audit_entries()) == len(WRITES)


def test_no_key_or_an_unknown_key_is_a_401_and_nothing_is_recorded(keyed: TestClient, db: DatabaseService):
    for path, body in _paths(db):
        for headers in ({}, {"X-API-Key": ""}, {"X-API-Key": OPERATOR + "x"}, {"X-API-Key": OPERATOR[:-1]}):
            response = keyed.post(path, json=body, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.headers["www-authenticate"] == 'APIKey header="X-API-Key"'
    assert keyed.get("/v1/audit").status_code == 401
    assert db.audit_entries() == []
    assert _rows(db, ReplayRequest) == []


def test_without_api_keys_every_write_is_refused(client: TestClient, db: DatabaseService):
    """Loopback-only mode serves reads to anyone local, but a write must be attributable to a key."""
    for path, body in _paths(db):
        for headers in ({}, AS_OPERATOR):
            response = client.post(path, json=body, headers=headers)
            assert response.status_code == 403, path
            assert response.json()["type"] == "/problems/forbidden"
            assert "operate" in response.json()["detail"]
            assert "API_KEYS" in response.json()["detail"]
    assert client.get("/v1/audit").status_code == 403
    assert db.audit_entries() == []
    assert _rows(db, ReplayRequest) == []
    assert client.get("/v1/runs").status_code == 200  # reads are served as before


def test_acknowledge_and_silence_are_audited(keyed: TestClient, db: DatabaseService):
    incident = _incident(db)
    base = f"/v1/incidents/{incident}"
    acked = keyed.post(f"{base}/acknowledge", json={"note": "  on it  "}, headers=AS_OPERATOR)
    assert acked.status_code == 200, acked.text
    assert acked.headers["cache-control"] == "no-store"
    data = acked.json()["data"]
    assert (data["acknowledged_by"], data["ack_note"]) == ("ops-bot", "on it")
    assert keyed.post(f"{base}/acknowledge", headers=AS_OPERATOR).status_code == 200  # the note is optional

    before = datetime.now(UTC)
    silenced = keyed.post(f"{base}/silence", json={"hours": 2}, headers=AS_OPERATOR)
    assert silenced.status_code == 200, silenced.text
    until = datetime.fromisoformat(silenced.json()["data"]["silenced_until"].replace("Z", "+00:00"))
    until = until if until.tzinfo else until.replace(tzinfo=UTC)
    assert before + timedelta(hours=2) - timedelta(minutes=1) < until < before + timedelta(hours=2, minutes=1)
    assert silenced.json()["data"]["silenced_by"] == "ops-bot"
    lifted = keyed.post(f"{base}/silence", json={"hours": None}, headers=AS_OPERATOR)
    assert lifted.status_code == 200
    assert lifted.json()["data"]["silenced_until"] is None
    stored = db.get_incident(incident)
    assert stored is not None
    assert (stored.silenced_until, stored.acknowledged_by) == (None, "ops-bot")

    entries = list(reversed(db.audit_entries()))
    assert [e.action for e in entries] == ["acknowledge", "acknowledge", "silence", "unsilence"]
    assert {(e.actor, e.via, e.outcome, e.target) for e in entries} == {
        ("ops-bot", "api", "ok", f"incident:{incident}")
    }
    assert entries[0].params == {"incident_id": incident, "by": "ops-bot", "note": "on it"}

    # A NUL byte (which PostgreSQL refuses in text) is a 400, not a 500, on both dialects.
    assert keyed.post(f"{base}/acknowledge", json={"note": "a\x00b"}, headers=AS_OPERATOR).status_code == 400
    assert keyed.get("/v1/audit", params={"actor": "a\x00b"}, headers=AS_OPERATOR).status_code == 400
    assert len(db.audit_entries()) == 4

    # Bad bodies are 400s naming the field, and change nothing.
    for body in ({}, {"hours": 0}, {"hours": -1}, {"hours": 24 * 366}, {"hours": "x"}, {"hours": 1, "x": 1}):
        response = keyed.post(f"{base}/silence", json=body, headers=AS_OPERATOR)
        assert response.status_code == 400, body
        assert response.json()["type"] == "/problems/invalid-parameter"
    assert (
        keyed.post(f"{base}/acknowledge", json={"note": "x" * 2001}, headers=AS_OPERATOR).status_code == 400
    )
    for action, body in (("acknowledge", None), ("silence", {"hours": 1})):
        missing = keyed.post(f"/v1/incidents/987654/{action}", json=body, headers=AS_OPERATOR)
        assert missing.status_code == 404
        assert missing.json()["errors"][0]["name"] == "incident_id"
    assert len(db.audit_entries()) == 4


def test_fill_gaps_queues_the_plan_once(keyed: TestClient, db: DatabaseService, seeded: Seeded):
    coins = db.get_coins(active_only=True)
    planned = plan_fill(db, db.settings, coins)
    assert planned.slices  # the seed leaves a block hole, blocks without transactions, missing days
    response = keyed.post("/v1/gaps/fill", headers=AS_OPERATOR)
    assert response.status_code == 202, response.text
    assert response.headers["cache-control"] == "no-store"
    result = response.json()["data"]
    assert result["slices"] == len(result["request_ids"]) == result["queued"] > 0
    assert result["already_queued"] == 0
    assert set(result["requests_by_source"]) == {"coingecko", "blockchair"}
    queued = _rows(db, ReplayRequest)
    assert sorted(r.id for r in queued) == sorted(result["request_ids"])
    assert {r.requested_by for r in queued} == {"api (ops-bot): fill gaps"}
    hole = {"chain": "bitcoin", "start_height": 800_010, "end_height": 800_010}
    assert any(r.slice_params["params"] == hole for r in queued)

    entries = db.audit_entries(action="fill_gaps")
    assert len(entries) == result["queued"]
    assert {(e.actor, e.via, e.outcome) for e in entries} == {("ops-bot", "api", "ok")}

    # Again: every slice already has an open request, so nothing new is queued.
    again = keyed.post("/v1/gaps/fill", json={}, headers=AS_OPERATOR).json()["data"]
    assert (again["queued"], again["already_queued"]) == (0, result["slices"])
    assert len(_rows(db, ReplayRequest)) == len(queued)

    # One coin, by any of its names; an unknown coin is a 400 naming `coins`.
    one = keyed.post("/v1/gaps/fill", json={"coins": ["BTC", "bitcoin"]}, headers=AS_OPERATOR)
    assert one.status_code == 202
    assert 0 < one.json()["data"]["slices"] < result["slices"]
    unknown = keyed.post("/v1/gaps/fill", json={"coins": ["nocoin"]}, headers=AS_OPERATOR)
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["name"] == "coins"


def test_the_audit_log_is_listed_with_filters(keyed: TestClient, db: DatabaseService):
    run_a, run_b = finished_run(db, "failed"), finished_run(db, "failed", coin="ethereum")
    for run_id in (run_a, run_b):
        assert keyed.post(f"/v1/runs/{run_id}/rerun", headers=AS_OPERATOR).status_code == 202
    keyed.post(f"/v1/runs/{run_a}/rerun", headers=AS_READER)  # denied, and recorded
    response = keyed.get("/v1/audit", headers=AS_OPERATOR)
    assert response.status_code == 200
    assert "etag" in response.headers  # a read: cached like every other
    entries = response.json()["data"]
    assert [(e["actor"], e["outcome"]) for e in entries] == [
        (READER_NAME, "denied"), ("ops-bot", "ok"), ("ops-bot", "ok"),
    ]  # fmt: skip
    assert entries[1]["run_id"] == run_b

    def listed(**params: object) -> list[dict]:
        found = keyed.get("/v1/audit", params=params, headers={"X-API-Key": AUDITOR})
        assert found.status_code == 200, found.text
        return found.json()["data"]

    assert [e["run_id"] for e in listed(actor="ops-bot")] == [run_b, run_a]
    assert [e["run_id"] for e in listed(run_id=run_a)] == [run_a, run_a]
    assert len(listed(action="rerun", via="api")) == 3
    assert listed(action="silence") == []
    assert len(listed(limit=1)) == 1
    assert listed(since=(datetime.now(UTC) + timedelta(hours=1)).isoformat()) == []
    assert len(listed(since="2020-01-01T00:00:00Z")) == 3
    for bad in ({"limit": 0}, {"run_id": 0}, {"action": "DROP TABLE"}, {"since": "yesterday"}):
        assert keyed.get("/v1/audit", params=bad, headers=AS_OPERATOR).status_code == 400, bad


def test_keys_never_reach_the_audit_log_the_logs_or_the_responses(
    keyed: TestClient, db: DatabaseService, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    responses = []
    paths = _paths(db)
    for key in (OPERATOR, READER, AUDITOR, OPERATOR[:-1]):
        for path, body in paths:
            responses.append(keyed.post(path, json=body, headers={"X-API-Key": key}))
        responses.append(keyed.get("/v1/audit", headers={"X-API-Key": key}))
    assert {r.status_code for r in responses} == {200, 202, 401, 403}
    stored = [
        *(str(row) for row in _rows(db, AuditEntry)),
        *(str(row) for row in _rows(db, ReplayRequest)),
        *(str(row) for row in _rows(db, Incident)),
    ]
    assert any("ops-bot" in text for text in stored)
    assert any(READER_NAME in text for text in stored)
    for secret in (OPERATOR, READER, AUDITOR):
        fragment = secret[:12]  # no part of a key, let alone all of it
        assert all(fragment not in r.text and fragment not in str(r.headers) for r in responses)
        assert all(fragment not in text for text in stored)
        assert fragment not in caplog.text


def test_writes_go_to_the_primary_when_reads_come_from_a_replica(tmp_path: Path):
    """Two SQLite files stand for the primary (DATABASE_URL) and its replica (DATABASE_READ_URL): a rerun
    and a refusal land in the primary, while reads still come from the replica."""
    primary_url, replica_url = f"sqlite:///{tmp_path}/primary.db", f"sqlite:///{tmp_path}/replica.db"
    settings = make_settings(primary_url, DATABASE_READ_URL=replica_url, API_KEYS=KEYS)
    with (
        migrated_database(make_settings(primary_url)) as primary,
        migrated_database(make_settings(replica_url)) as replica,
    ):
        run_id = finished_run(primary, "failed")
        assert finished_run(replica, "failed") == run_id  # the replica holds what the primary held
        reader = DatabaseService(replica_url, settings=settings)  # as `crypto-pipeline api` opens it
        app = create_app(settings, reader)
        try:
            with TestClient(app) as client:
                assert client.post(f"/v1/runs/{run_id}/rerun", headers=AS_OPERATOR).status_code == 202
                assert client.post(f"/v1/runs/{run_id}/rerun", headers=AS_READER).status_code == 403
                # The read is the replica's, which has not replayed the request yet.
                assert (
                    client.get(f"/v1/runs/{run_id}", headers=AS_OPERATOR).json()["data"]["replay_request"]
                    is None
                )
        finally:
            app.state.context.writer.dispose()
            reader.dispose()
        assert [r.requested_by for r in _rows(primary, ReplayRequest)] == ["api (ops-bot)"]
        assert [(e.actor, e.outcome) for e in primary.audit_entries()] == [
            (READER_NAME, "denied"),
            ("ops-bot", "ok"),
        ]
        assert _rows(replica, ReplayRequest) == []
        assert replica.audit_entries() == []
