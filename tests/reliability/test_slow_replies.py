"""No reply can hang or bloat a process: trickling and endless replies, a unit's time budget, SIGTERM.

Against the simulator's `trickle` (the normal body, one byte every `delay` seconds: never silent long
enough for a read timeout) and `endless` faults, first through the ingestors in this process, then the
real scheduler process. Peak memory figures come from `benchmarks/reliability_slow_replies.py`.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.harness.processes import scheduler_settings as base_settings
from benchmarks.harness.processes import start_scheduler, stop, wait_for
from pipeline.database import DatabaseService
from pipeline.ingestion.blockchair import BlockchairIngestor
from pipeline.ingestion.replay import Replayer
from pipeline.schemas import DataIngestionLogData
from pipeline.simulator import FaultRule, Simulator, SimulatorConfig
from tests.support.databases import migrated
from tests.support.reliability import note
from tests.support.settings import make_settings


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(tip_growth=False)) as simulator:
        yield simulator


@pytest.fixture
def db(tmp_path: Path) -> Iterator[DatabaseService]:
    service = migrated(make_settings(f"sqlite:///{tmp_path}/pipeline.db"))
    yield service
    service.dispose()


def runs(db: DatabaseService, data_type: str | None = None) -> list[DataIngestionLogData]:
    """Runs, oldest first, of one data type or all."""
    found = reversed(db.get_ingestion_logs(limit=None))
    return [r for r in found if data_type is None or r.data_type == data_type]


def fired(sim: Simulator) -> int:
    """How many requests the simulator's faults have answered."""
    return sum(rule["fired"] for rule in sim.stats()["faults"])


# ---------------------------------------------------------------- in this process


@pytest.mark.slow  # seconds of slowed pages against a time budget
def test_unit_over_its_time_budget_fails_as_unit_timeout_and_its_rerun_completes(
    db: DatabaseService, sim: Simulator
) -> None:
    # 0.4 s a page, 10 pages: a 1.5 s budget ends the unit after a few committed pages.
    sim.add_fault(FaultRule("slow", endpoint="blocks", times=None, delay=0.4))
    settings = make_settings(
        db.database_url,
        BLOCKCHAIR_BASE_URL=sim.blockchair_url,
        BLOCKS_INITIAL_DEPTH=1000,
        UNIT_TIME_BUDGET_SECONDS=1.5,
    )
    ingestor = BlockchairIngestor(settings=settings, db=db)
    started = time.monotonic()
    result = ingestor.ingest_blocks(ingestor.coin("bitcoin"))
    assert time.monotonic() - started < 4
    assert (result.status, result.error_class) == ("failed", "UnitTimeout")
    assert "UNIT_TIME_BUDGET_SECONDS" in (result.error_message or "")
    assert 0 < db.get_database_stats().total_blocks < 1000  # the pages before the cut are kept

    sim.clear_faults()
    roomy = make_settings(db.database_url, BLOCKCHAIR_BASE_URL=sim.blockchair_url, BLOCKS_INITIAL_DEPTH=1000)
    rerun = Replayer(roomy, db).replay(db.get_run(result.id), trigger="rerun")
    assert rerun is not None
    assert (rerun.status, rerun.parent_run_id) == ("success", result.id)
    assert db.get_database_stats().total_blocks == 1000


def test_endless_body_fails_the_unit_once_as_response_too_large(db: DatabaseService, sim: Simulator) -> None:
    sim.add_fault(FaultRule("endless", endpoint="blocks", times=None))
    settings = make_settings(
        db.database_url, BLOCKCHAIR_BASE_URL=sim.blockchair_url, HTTP_MAX_RESPONSE_BYTES=1024 * 1024
    )
    ingestor = BlockchairIngestor(settings=settings, db=db)
    result = ingestor.ingest_blocks(ingestor.coin("bitcoin"))
    assert (result.status, result.error_class, result.requests_made) == ("failed", "ResponseTooLarge", 1)
    assert "HTTP_MAX_RESPONSE_BYTES" in (result.error_message or "")


# ---------------------------------------------------------------- the scheduler process


def scheduler_settings(tmp_path: Path, sim: Simulator, **overrides: object) -> dict[str, object]:
    """One coin, every job once at start (long intervals), fast heartbeats, no client-side pacing."""
    settings: dict[str, object] = {
        "BLOCKS_INITIAL_DEPTH": 120,
        "COINS": "bitcoin",
        "BLOCKS_INTERVAL_MINUTES": 30,
        "TRANSACTIONS_INTERVAL_MINUTES": 30,
        "LATEST_PRICE_INTERVAL_MINUTES": 30,
        "HEARTBEAT_SECONDS": 0.5,
    }
    return base_settings(f"sqlite:///{tmp_path}/pipeline.db", sim, **{**settings, **overrides})


@pytest.mark.slow
def test_sigterm_during_a_trickling_request_exits_within_5_s_and_closes_the_unit_interrupted(
    db: DatabaseService, sim: Simulator, tmp_path: Path
) -> None:
    # A byte every 0.2 s: the blocks reply would take minutes and the deadline is the default 60 s.
    sim.add_fault(FaultRule("trickle", endpoint="blocks", times=None, delay=0.2))
    proc = start_scheduler(tmp_path / "scheduler.log", **scheduler_settings(tmp_path, sim))
    try:
        wait_for(
            lambda: fired(sim) >= 1 and any(r.status == "running" for r in runs(db, "blocks")),
            60,
            what="the blocks request trickling",
        )
        started = time.monotonic()
        code = stop(proc, signal.SIGTERM, timeout=5)
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    log = (tmp_path / "scheduler.log").read_text()
    assert code == 0, log
    assert elapsed < 5, log
    assert "stopped cleanly" in log
    blocks = runs(db, "blocks")
    assert [(r.status, r.error_class) for r in blocks] == [("failed", "Interrupted")]
    assert not [r for r in runs(db) if r.status == "running"]
    # The interrupted slice is queued, so the next start finishes it.
    assert [q.run_id for q in db.get_replay_requests(status="pending")] == [blocks[0].id]
    note(f"slow replies: SIGTERM during a trickling request -> exit 0 in {elapsed:.2f} s, unit Interrupted")


@pytest.mark.slow
def test_a_trickling_source_is_cut_at_the_deadline_and_the_next_jobs_run(
    db: DatabaseService, sim: Simulator, tmp_path: Path
) -> None:
    sim.add_fault(FaultRule("trickle", endpoint="blocks", times=None, delay=0.2))
    settings = scheduler_settings(tmp_path, sim, HTTP_DEADLINE_SECONDS=1.5)
    proc = start_scheduler(tmp_path / "scheduler.log", **settings)
    try:
        prices = wait_for(
            lambda: [r for r in runs(db, "prices") if r.status == "success"],
            60,
            what="a price job after the trickling blocks job",
        )
    finally:
        stop(proc)
    log = (tmp_path / "scheduler.log").read_text()
    blocks = runs(db, "blocks")[0]
    assert (blocks.status, blocks.error_class) == ("failed", "DeadlineExceeded"), log
    assert blocks.requests_made == 2  # cut at the deadline, retried once, cut again
    assert (blocks.duration_seconds or 0) < 6
    assert blocks.finished_at is not None
    assert prices[0].started_at >= blocks.finished_at  # the jobs after it ran, in order
    note(
        f"slow replies: trickling blocks unit cut after {blocks.duration_seconds:.2f} s (2 x 1.5 s deadline),"
        f" a price job succeeded {(prices[0].started_at - blocks.finished_at).total_seconds():.2f} s later"
    )
