"""Alert delivery on both dialects against a real webhook receiver on 127.0.0.1: one FIRING and one RESOLVED
message per incident and channel however many deliverers, held back while young or silenced, retried and
recorded when the channel fails."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.alerts import configured_channels
from pipeline.database import DatabaseService
from pipeline.runtime.watch import Watcher
from pipeline.services import alerting, incidents
from pipeline.simulator.sink import WebhookSink
from pipeline.store.runs import RunSlice
from tests.support.settings import make_settings


@pytest.fixture
def sink():
    with WebhookSink() as receiver:
        yield receiver


def alert_settings(database_url: str, sink: WebhookSink, **overrides: object):
    values = {
        "ALERT_WEBHOOK_URL": f"{sink.url}/webhook",
        "ALERT_SLACK_WEBHOOK_URL": f"{sink.url}/slack",
        "ALERT_BACKOFF_SECONDS": 0.01,
        "ALERT_MAX_ATTEMPTS": 3,
        "DASHBOARD_URL": "http://dash.example",
    }
    return make_settings(database_url, **{**values, **overrides})


def fail_then(db: DatabaseService, *statuses: str) -> list[int]:
    ids = []
    for status in statuses:
        run_id = db.start_run(
            RunSlice("blockchair", "blocks", "bitcoin", {}), trigger="schedule", parent_run_id=None
        )
        failed = status == "failed"
        db.finish_run(
            run_id,
            status=status,
            finished_at=datetime.now(UTC),
            error_class="RetriableSourceError" if failed else None,
            error_message="HTTP 503" if failed else None,
        )
        ids.append(run_id)
    return ids


def events(sink: WebhookSink, path: str = "/webhook") -> Counter[tuple[int, str]]:
    return Counter((r.body["incident_id"], r.body["status"]) for r in sink.received(path))


def test_one_firing_and_one_resolved_message_per_channel(db, database_url, sink):
    settings = alert_settings(database_url, sink)
    watcher = Watcher(settings, db, worker_id="w1")
    fail_then(db, "failed")
    first = watcher.round()
    [incident_id] = first.opened
    watcher.round()  # nothing new: nothing sent twice

    assert events(sink) == {(incident_id, "firing"): 1}
    [body] = [r.body for r in sink.received("/webhook")]
    assert body["kind"] == "unit"
    assert body["unit"] == "blockchair blocks bitcoin"
    assert body["url"] == f"http://dash.example/incidents?incident={incident_id}"
    assert body["resolved_at"] is None
    assert "*[FIRING]" in sink.received("/slack")[0].body["text"]
    assert db.get_incident(incident_id).notified_at is not None

    fail_then(db, "success")
    watcher.round()
    watcher.round()
    assert events(sink) == {(incident_id, "firing"): 1, (incident_id, "resolved"): 1}
    resolved = next(r.body for r in sink.received("/webhook") if r.body["status"] == "resolved")
    assert resolved["resolved_at"] is not None
    assert resolved["duration_seconds"] >= 0
    deliveries = db.get_deliveries(incident_id=incident_id)
    assert sorted((d.channel, d.event, d.status) for d in deliveries) == [
        ("slack", "firing", "sent"),
        ("slack", "resolved", "sent"),
        ("webhook", "firing", "sent"),
        ("webhook", "resolved", "sent"),
    ]


def test_several_deliverers_send_each_message_once(db, database_url, sink):
    settings = alert_settings(database_url, sink)
    watchers = [Watcher(settings, DatabaseService(settings=settings), worker_id=f"w{i}") for i in range(4)]
    fail_then(db, "failed")

    def all_at_once() -> None:
        threads = [threading.Thread(target=w.round) for w in watchers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    all_at_once()
    fail_then(db, "success")
    all_at_once()
    for watcher in watchers:
        watcher.round()
    assert sorted(events(sink).values()) == [1, 1]
    assert len(sink.received("/slack")) == 2


def test_a_blip_shorter_than_alert_after_sends_nothing(db, database_url, sink):
    settings = alert_settings(database_url, sink, ALERT_AFTER_MINUTES=10)
    watcher = Watcher(settings, db)
    fail_then(db, "failed")
    watcher.round()
    fail_then(db, "success")
    watcher.round()
    assert sink.received() == []
    [incident] = db.get_incidents()
    assert incident.resolved_at is not None
    assert incident.notified_at is None


def test_a_silenced_incident_pages_nobody(db, database_url, sink):
    settings = alert_settings(database_url, sink)
    fail_then(db, "failed")
    [incident] = incidents.evaluate(db, settings, kinds=["unit"]).opened
    db.silence_incident(incident.id, until=datetime.now(UTC) + timedelta(hours=1), by="ops")
    Watcher(settings, db).round()
    assert sink.received() == []


def test_a_failing_channel_is_retried_recorded_and_does_not_hold_up_the_other(db, database_url, sink):
    token = "T0/B0/SECRETtoken123456"
    settings = alert_settings(database_url, sink, ALERT_SLACK_WEBHOOK_URL=f"http://127.0.0.1:9/{token}")
    sink.fail(503, times=2)  # the webhook answers 503 twice, then takes the message
    fail_then(db, "failed")
    delivered = Watcher(settings, db).round().delivered
    outcome = {d.channel: (d.ok, d.attempts) for d in delivered}
    assert outcome == {"webhook": (True, 3), "slack": (False, 3)}
    rows = {d.channel: d for d in db.get_deliveries()}
    assert (rows["webhook"].status, rows["webhook"].attempts) == ("sent", 3)
    assert (rows["slack"].status, rows["slack"].attempts) == ("failed", 3)
    assert "cannot connect" in rows["slack"].error
    assert "SECRETtoken" not in rows["slack"].error  # a channel's URL holds its token


def test_alerts_test_reports_each_channel(database_url, sink):
    settings = alert_settings(database_url, sink, ALERT_SLACK_WEBHOOK_URL="http://127.0.0.1:9/hook")
    results = {r.channel: r.ok for r in alerting.send_test(settings)}
    assert results == {"webhook": True, "slack": False}
    assert sink.received("/webhook")[0].body["status"] == "test"
    assert alerting.send_test(make_settings(database_url)) == []
    assert configured_channels(make_settings(database_url)) == []
