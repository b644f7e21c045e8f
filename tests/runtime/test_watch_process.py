"""Alerts from real processes: schedulers and `crypto-pipeline watch`, the simulator and a webhook sink.

Every scheduler delivers alerts from its own watcher thread and `watch` delivers too, so each scenario
runs two deliverers and counts the bodies the sink received per (incident, status): one each, never more.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from benchmarks.harness.processes import scheduler_settings as base_settings
from benchmarks.harness.processes import start_scheduler, start_watcher, stop, wait_for
from pipeline.database import DatabaseService
from pipeline.models import DataIngestionLog
from pipeline.simulator import FaultRule, Simulator, SimulatorConfig
from pipeline.simulator.sink import WebhookSink
from tests.support.databases import migrated_database
from tests.support.settings import make_settings

pytestmark = pytest.mark.slow

STALE_SECONDS = 3.0
BLOCKS_BITCOIN = "blockchair/blocks/bitcoin"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(tip_growth=False)) as simulator:
        yield simulator


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink() as receiver:
        yield receiver


@pytest.fixture
def db(database_url: str) -> Iterator[DatabaseService]:
    with migrated_database(make_settings(database_url, HEARTBEAT_STALE_SECONDS=STALE_SECONDS)) as service:
        yield service


def alert_settings(
    database_url: str, sim: Simulator, sink: WebhookSink, **overrides: object
) -> dict[str, object]:
    """A scheduler's (and a watcher's) settings: quick jobs, beats and watch rounds, alerts to the sink."""
    settings: dict[str, object] = {
        "COINS": "bitcoin,ethereum",
        "BLOCKS_INITIAL_DEPTH": 60,
        "BLOCKS_INTERVAL_MINUTES": 0.05,
        "TRANSACTIONS_INTERVAL_MINUTES": 0.05,
        "LATEST_PRICE_INTERVAL_MINUTES": 0.1,
        "HEARTBEAT_SECONDS": 0.5,
        "HEARTBEAT_STALE_SECONDS": STALE_SECONDS,
        "WATCH_INTERVAL_SECONDS": 0.5,
        "ALERT_WEBHOOK_URL": f"{sink.url}/webhook",
        "ALERT_AFTER_MINUTES": 0,
        "ALERT_MAX_ATTEMPTS": 3,
        "ALERT_BACKOFF_SECONDS": 0.1,
        "BLOCKCHAIR_DAILY_REQUEST_BUDGET": 1_000_000,
        "COINGECKO_DAILY_REQUEST_BUDGET": 1_000_000,
    }
    return base_settings(database_url, sim, **{**settings, **overrides})


def bodies(sink: WebhookSink, **match: object) -> list[dict[str, Any]]:
    """The webhook bodies received so far whose fields equal `match`."""
    found = [r.body for r in sink.received("/webhook") if isinstance(r.body, dict)]
    return [b for b in found if all(b.get(k) == v for k, v in match.items())]


def per_incident(sink: WebhookSink) -> Counter[tuple[int | None, str]]:
    """How many bodies arrived per (incident_id, status)."""
    return Counter((b["incident_id"], b["status"]) for b in bodies(sink))


def runs_of(db: DatabaseService, data_type: str, status: str, coin: str) -> int:
    stmt = (
        select(func.count())
        .select_from(DataIngestionLog)
        .where(
            DataIngestionLog.data_type == data_type,
            DataIngestionLog.status == status,
            DataIngestionLog.coin == coin,
        )
    )
    with db.engine.connect() as conn:
        return int(conn.scalar(stmt) or 0)


def test_a_failing_unit_fires_once_and_resolves_once_with_two_deliverers(
    db, database_url, sim, sink, tmp_path
):
    sim.add_fault(FaultRule("500", endpoint="blocks", chain="bitcoin", times=None))  # fails every attempt
    settings = alert_settings(database_url, sim, sink)
    scheduler = start_scheduler(tmp_path / "scheduler.log", **settings)
    watcher = start_watcher(tmp_path / "watch.log", **settings)
    try:
        firing = wait_for(lambda: bodies(sink, key=BLOCKS_BITCOIN, status="firing"), 60, what="FIRING")
        incident_id = firing[0]["incident_id"]
        # More failed runs of the unit and many more rounds of both deliverers: still one message.
        failed = runs_of(db, "blocks", "failed", "bitcoin")
        wait_for(lambda: runs_of(db, "blocks", "failed", "bitcoin") >= failed + 2, 60, what="more failures")
        assert len(bodies(sink, incident_id=incident_id, status="firing")) == 1

        sim.clear_faults()
        wait_for(lambda: bodies(sink, incident_id=incident_id, status="resolved"), 60, what="RESOLVED")
        succeeded = runs_of(db, "blocks", "success", "bitcoin")
        wait_for(lambda: runs_of(db, "blocks", "success", "bitcoin") >= succeeded + 2, 60, what="more runs")
    finally:
        codes = [stop(scheduler), stop(watcher)]
    logs = {p.name: p.read_text() for p in (tmp_path / "scheduler.log", tmp_path / "watch.log")}
    assert codes == [0, 0], logs
    counts = per_incident(sink)
    assert counts[(incident_id, "firing")] == 1, counts
    assert counts[(incident_id, "resolved")] == 1, counts
    assert set(counts.values()) == {1}, counts  # no duplicate of any other incident either
    incident = db.get_incident(incident_id)
    assert incident is not None
    assert incident.kind == "unit"
    assert incident.key == BLOCKS_BITCOIN
    assert incident.resolved_at is not None
    assert incident.resolved_by_run_id is not None
    assert db.get_run(incident.resolved_by_run_id).status == "success"
    deliveries = db.get_deliveries(incident_id=incident_id)
    assert sorted((d.event, d.status) for d in deliveries) == [("firing", "sent"), ("resolved", "sent")]
    resolved = bodies(sink, incident_id=incident_id, status="resolved")[0]
    assert resolved["resolved_at"] is not None
    assert resolved["duration_seconds"] is not None
    assert "Traceback" not in logs["watch.log"], logs["watch.log"]


def test_b_watch_process_reports_a_killed_scheduler_within_twice_the_stale_time(
    db, database_url, sim, sink, tmp_path
):
    settings = alert_settings(database_url, sim, sink, COINS="bitcoin")
    first = start_scheduler(tmp_path / "first.log", **settings)
    watcher = start_watcher(tmp_path / "watch.log", **settings)
    second = None
    try:
        wait_for(lambda: any(w.state == "up" for w in db.get_workers()), 60, what="a beating scheduler")
        wait_for(lambda: runs_of(db, "blocks", "success", "bitcoin") >= 1, 60, what="a first run")
        os.kill(first.pid, signal.SIGKILL)
        killed = time.monotonic()
        first.wait(10)
        firing = wait_for(
            lambda: bodies(sink, kind="scheduler", status="firing"),
            4 * STALE_SECONDS + 10,
            interval=0.05,
            what="FIRING of the dead scheduler",
        )
        latency = time.monotonic() - killed
        print(f"watchdog: FIRING {latency:.1f} s after SIGKILL (HEARTBEAT_STALE_SECONDS={STALE_SECONDS:g})")
        assert latency <= 2 * STALE_SECONDS, latency
        incident_id = firing[0]["incident_id"]

        second = start_scheduler(tmp_path / "second.log", **settings)
        wait_for(lambda: bodies(sink, incident_id=incident_id, status="resolved"), 60, what="RESOLVED")
        # A few more rounds of both deliverers (the new scheduler's watcher and `watch`).
        done = runs_of(db, "blocks", "success", "bitcoin")
        wait_for(lambda: runs_of(db, "blocks", "success", "bitcoin") >= done + 2, 60, what="more runs")
    finally:
        codes = [stop(watcher)] + ([stop(second)] if second is not None else [])
    assert codes == [0, 0], (tmp_path / "watch.log").read_text()
    counts = per_incident(sink)
    assert counts[(incident_id, "firing")] == 1, counts
    assert counts[(incident_id, "resolved")] == 1, counts
    assert set(counts.values()) == {1}, counts
    incident = db.get_incident(incident_id)
    assert incident is not None
    assert incident.kind == "scheduler"
    assert incident.resolved_at is not None


def test_c_a_fault_the_unit_retries_away_opens_nothing_and_sends_nothing(
    db, database_url, sim, sink, tmp_path
):
    sim.add_fault(FaultRule("500", endpoint="blocks", chain="bitcoin", times=1))  # the retry succeeds
    settings = alert_settings(database_url, sim, sink, HTTP_MAX_ATTEMPTS=2)
    scheduler = start_scheduler(tmp_path / "scheduler.log", **settings)
    watcher = start_watcher(tmp_path / "watch.log", **settings)
    try:
        wait_for(lambda: sim.stats()["faults"][0]["fired"] == 1, 60, what="the fault to fire")
        done = runs_of(db, "blocks", "success", "bitcoin")
        # The unit ran on (and both watchers went round many times) since the fault.
        wait_for(lambda: runs_of(db, "blocks", "success", "bitcoin") >= done + 2, 60, what="more runs")
    finally:
        codes = [stop(scheduler), stop(watcher)]
    assert codes == [0, 0]
    assert runs_of(db, "blocks", "failed", "bitcoin") == 0
    assert db.get_incidents() == []
    assert sink.received() == []
