"""The `up --demo` scenario end to end, on a compressed timeline: a real scheduler process (with its
watcher thread) against the simulator, alerts to a webhook sink, and every promised outcome checked in the
database, at the sink and against the simulator's own chain."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.harness.processes import scheduler_settings, start_scheduler, stop, wait_for
from pipeline.database import DatabaseService
from pipeline.runtime.demo import (
    MALFORMED_CHAIN,
    OUTAGE_CHAIN,
    PRICE_GAP_COIN,
    REORG_CHAIN,
    STEPS,
    DemoScenario,
    describe_progress,
    read_demo_progress,
)
from pipeline.schemas import DataIngestionLogData, ReplayRequestData
from pipeline.services.coverage import missing_price_days
from pipeline.services.gapfill import coverage_window
from pipeline.simulator import Simulator, SimulatorConfig
from pipeline.simulator.sink import WebhookSink
from tests.support.databases import migrated_database
from tests.support.settings import make_settings

pytestmark = pytest.mark.slow

# The demo's 5 minutes in under 40 seconds; the jobs run every 6 s instead of every minute or two.
SPEED = 8.0
OUTAGE_KEY = f"blockchair/blocks/{OUTAGE_CHAIN}"
JOBS: dict[str, object] = {
    "SIMULATED_DATA": "true",
    "COINS": "bitcoin,ethereum,dogecoin",
    "BLOCKS_INITIAL_DEPTH": 60,
    "BLOCKS_INTERVAL_MINUTES": 0.1,
    "TRANSACTIONS_INTERVAL_MINUTES": 0.1,
    "LATEST_PRICE_INTERVAL_MINUTES": 30,  # the demo's 5 minutes, past the compressed scenario
    "PRICE_BACKFILL_DAYS": 365,
    "TRANSACTIONS_WINDOW_BLOCKS": 30,
    "HEARTBEAT_SECONDS": 0.5,
    "WATCH_INTERVAL_SECONDS": 0.5,
    "ALERT_AFTER_MINUTES": 0,
    "ALERT_BACKOFF_SECONDS": 0.1,
    "BLOCKCHAIR_DAILY_REQUEST_BUDGET": 1_000_000,
    "COINGECKO_DAILY_REQUEST_BUDGET": 1_000_000,
}


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig()) as simulator:  # as `up --demo` starts it: tips grow with the clock
        yield simulator


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink() as receiver:
        yield receiver


def runs(db: DatabaseService, source: str, data_type: str, coin: str) -> list[DataIngestionLogData]:
    """The unit's runs, newest first."""
    return [
        r
        for r in db.get_ingestion_logs(source=source, limit=None)
        if r.data_type == data_type and r.coin == coin
    ]


def ended(db: DatabaseService, source: str, data_type: str, coin: str) -> bool:
    """Whether a run of the unit has ended."""
    return any(r.status != "running" for r in runs(db, source, data_type, coin))


def closed(requests: list[ReplayRequestData]) -> list[ReplayRequestData] | None:
    """The requests once every one has ended, else None."""
    return requests if all(r.status in ("done", "failed") for r in requests) else None


def bodies(sink: WebhookSink, **match: object) -> list[dict[str, Any]]:
    found = [r.body for r in sink.received("/webhook") if isinstance(r.body, dict)]
    return [b for b in found if all(b.get(k) == v for k, v in match.items())]


def missing_prices(db: DatabaseService, scenario: DemoScenario) -> dict[str, int]:
    start, end = coverage_window(scenario.settings)
    coins = [c.coingecko_id for c in db.get_coins(active_only=True) if c.coingecko_id]
    return {coin: len(missing_price_days(db, coin, start, end)) for coin in coins}


def test_the_demo_scenario_shows_every_promised_outcome(tmp_path: Path, sim: Simulator, sink: WebhookSink):
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    env = scheduler_settings(url, sim, ALERT_WEBHOOK_URL=f"{sink.url}/webhook", **JOBS)
    settings = make_settings(url, **{k: v for k, v in env.items() if k != "DATABASE_URL"})
    stop_event = threading.Event()
    with migrated_database(settings) as db:
        # As the launcher builds it: the simulator's URL and the scheduler's settings (its own connections).
        scenario = DemoScenario.connect(
            sim.base_url, settings, speed=SPEED, progress_path=tmp_path / "demo.json"
        )
        scenario.prepare()  # as the launcher does, before the scheduler's first price fetch
        assert [p.name for p in scenario.progress() if p.done_at] == [STEPS[0].name]
        scheduler = start_scheduler(tmp_path / "scheduler.log", **env)
        try:
            # The scheduler's first round: every chain's blocks, and bitcoin's prices with the gap.
            for coin in ("bitcoin", "ethereum", "dogecoin"):
                wait_for(lambda c=coin: ended(db, "blockchair", "blocks", c), 60, what=f"{coin} blocks")
                wait_for(lambda c=coin: ended(db, "coingecko", "prices", c), 60, what=f"{coin} prices")
            gap_before = missing_prices(db, scenario)
            assert gap_before[PRICE_GAP_COIN] >= 1
            assert sum(gap_before.values()) == gap_before[PRICE_GAP_COIN]  # only the demo's gap

            thread = scenario.start(stop_event)
            thread.join(timeout=STEPS[-1].offset / SPEED + 90)
            assert not thread.is_alive()
            assert scenario.finished, scenario.progress()
            assert all(p.ok for p in scenario.progress()), scenario.progress()
            progress = read_demo_progress(tmp_path / "demo.json")
            assert progress is not None
            assert progress["finished"]
            assert describe_progress(progress).startswith(f"Demo: all {len(STEPS)} steps done")

            # (2, 5) The outage opened an incident with one FIRING alert; reruns of the failed runs made
            # them good, the incident resolved by a rerun, with one RESOLVED alert.
            resolved = wait_for(lambda: bodies(sink, key=OUTAGE_KEY, status="resolved"), 60, what="RESOLVED")
            incident_id = resolved[0]["incident_id"]
            assert len(bodies(sink, incident_id=incident_id, status="firing")) == 1
            assert len(bodies(sink, incident_id=incident_id, status="resolved")) == 1
            incident = db.get_incident(incident_id)
            assert incident is not None
            assert incident.resolved_at is not None
            assert incident.resolved_by_run_id is not None
            fix = db.get_run(incident.resolved_by_run_id)
            assert (fix.trigger, fix.status) == ("rerun", "success")
            assert fix.parent_run_id in scenario.facts.outage_failed_runs
            failed = [db.get_run(i) for i in scenario.facts.outage_failed_runs]
            assert failed
            assert {(r.status, r.trigger) for r in failed} == {("failed", "schedule")}
            assert all(db.get_run(r.resolved_by_run_id or 0).parent_run_id == r.id for r in failed)
            requests = [db.get_replay_request(i) for i in scenario.facts.rerun_requests]
            assert {r.status for r in requests} == {"done"}
            assert {r.requested_by for r in requests} == {"demo: rerun after the outage"}

            # (3) A malformed record: a run ended partial with the record rejected, and why.
            rejected = [
                r for r in runs(db, "blockchair", "transactions", MALFORMED_CHAIN)
                if r.status == "partial" and r.records_rejected >= 1
            ]  # fmt: skip
            assert rejected, runs(db, "blockchair", "transactions", MALFORMED_CHAIN)
            assert rejected[-1].rejected_samples
            assert rejected[-1].rejected_samples[0]["reason"]

            # (4) The reorganisation was found and repaired: the stored hashes are the source's new ones.
            heights = scenario.facts.reorg_heights
            assert heights
            assert scenario.facts.reorg_chain == REORG_CHAIN
            repaired = wait_for(
                lambda: [
                    r for r in runs(db, "blockchair", "blocks", REORG_CHAIN)
                    if r.params.get("reorganised_heights")
                ],
                30,
                what="the bitcoin blocks run that repaired the reorganisation",
            )  # fmt: skip
            assert set(repaired[-1].params["reorganised_heights"]) == set(heights)
            stored = db.block_hashes("BTC", heights[0], heights[-1])
            assert stored == {h: sim.expected_block(REORG_CHAIN, h)["hash"] for h in heights}

            # (1, 6) The price gap was found and filled by the queued backfill: nothing is missing.
            assert scenario.facts.missing_price_days == {PRICE_GAP_COIN: gap_before[PRICE_GAP_COIN]}
            assert scenario.facts.fill_requests
            fills = wait_for(
                lambda: closed([db.get_replay_request(i) for i in scenario.facts.fill_requests]),
                60,
                what="the backfill",
            )
            assert {r.status for r in fills} == {"done"}, fills
            assert sum(db.get_run(r.result_run_id or 0).records_inserted for r in fills) >= 1
            assert set(missing_prices(db, scenario).values()) == {0}
        finally:
            stop_event.set()
            code = stop(scheduler)
            scenario.close()
    log = (tmp_path / "scheduler.log").read_text()
    assert code == 0, log[-3000:]
