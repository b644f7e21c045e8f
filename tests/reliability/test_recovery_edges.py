"""Edge cases of crash recovery, each isolated so that a failure names its cause.

Each test raises KnownBugError on the exact symptom of a bug found (and fixed) here: abandoning a live
worker's run, rerunning a worker's own run forever, skipping the rest of a killed job's slot, and losing
a request claimed by a worker that died before starting it.
"""

from __future__ import annotations

import signal
import time

import pytest
from sqlalchemy import func, select

from benchmarks.harness.backfill import runs_by_worker
from benchmarks.harness.processes import scheduler_settings, start_scheduler, stop, wait_for
from pipeline.database import DatabaseService
from pipeline.models import BlockchainBlock, DataIngestionLog, ReplayRequest
from pipeline.ranges import utcnow
from pipeline.runtime.scheduler import Scheduler
from pipeline.simulator import FaultRule, Simulator, SimulatorConfig
from pipeline.store.runs import RunSlice
from tests.support.databases import migrated
from tests.support.reliability import KnownBugError
from tests.support.settings import make_settings

LIVE_RUN_ABANDONED = (
    "BUG: CoordinationMixin.recover_abandoned compares run worker ids (host:pid, runlog.WORKER_ID) with "
    "heartbeat worker ids (host:pid:uuid, Scheduler.worker_id): a live worker's run older than "
    "HEARTBEAT_STALE_SECONDS is marked failed/Abandoned and requeued"
)
RERUN_LOOP = (
    "BUG: (same cause) a scheduler abandons and requeues its own runs that last longer than "
    "HEARTBEAT_STALE_SECONDS: a successful run keeps error_class 'Abandoned' and its slice is re-fetched "
    "by a rerun, whose rerun is abandoned again, forever"
)
REST_OF_SLOT = (
    "BUG: Scheduler.run_job takes one lease per job slot and loops over the coins; after a SIGKILL only "
    "the unit that was running is requeued (recover_abandoned), so the job's remaining coins wait for the "
    "next slot (SIGTERM, by contrast, closes and requeues every remaining unit)"
)
CLAIMED_NOT_STARTED = (
    "BUG: recover_abandoned fails a rerun request claimed by a dead worker that had not started the "
    "replay yet ('the request's own run ... gets a request of its own' assumes a child run exists): the "
    "run is left failed with no child and no open request, so its slice is never rerun"
)


def _db(url: str, **settings: object) -> DatabaseService:
    return migrated(make_settings(url, **settings))


def _failed_run(db: DatabaseService) -> int:
    run_id = db.start_run(
        RunSlice("blockchair", "blocks", "bitcoin", {"chain": "bitcoin"}),
        trigger="schedule",
        parent_run_id=None,
    )
    db.finish_run(run_id, status="failed", error_class="RetriableSourceError", finished_at=utcnow())
    return run_id


@pytest.mark.slow  # waits out the stale timeout
def test_a_live_workers_long_run_is_not_abandoned(database_url):
    db = _db(database_url, HEARTBEAT_STALE_SECONDS=1)
    scheduler = Scheduler(db.settings, db)  # the worker id this process's heartbeats carry
    started = utcnow()
    db.beat(scheduler.worker_id, started_at=started, current_job="blocks")
    run_id = db.start_run(
        RunSlice("blockchair", "blocks", "bitcoin", {"chain": "bitcoin"}),
        trigger="schedule",
        parent_run_id=None,
    )
    time.sleep(1.3)  # the run is now older than HEARTBEAT_STALE_SECONDS ...
    db.beat(scheduler.worker_id, started_at=started, current_job="blocks")  # ... and its worker beats
    recovered = db.recover_abandoned()
    run = db.get_run(run_id)
    if run_id in recovered:
        raise KnownBugError(f"{LIVE_RUN_ABANDONED}: run {run_id} -> {run.status.value}/{run.error_class}")
    assert run.status.value == "running"
    assert db.open_request_for(run_id) is None
    db.dispose()


@pytest.mark.slow
def test_a_scheduler_does_not_rerun_its_own_long_run(tmp_path):
    url = f"sqlite:///{tmp_path}/loop.db"
    db = _db(url, HEARTBEAT_STALE_SECONDS=2)
    with Simulator(SimulatorConfig(tip_growth=False)) as sim:
        sim.add_fault(FaultRule("slow", endpoint="blocks", times=None, delay=0.12))  # ~3 s for 2000 blocks
        settings = _scheduler(url, sim, COINS="bitcoin", BLOCKS_INITIAL_DEPTH=2000, HEARTBEAT_STALE_SECONDS=2)
        proc = start_scheduler(tmp_path / "scheduler.log", **settings)
        try:
            wait_for(lambda: _blocks(db, "BTC") >= 2000 and not _running(db), 60, what="the first block run")
            time.sleep(3)  # a stale-run check or two later
        finally:
            stop(proc)
    with db.engine.connect() as conn:
        runs = list(
            conn.execute(select(DataIngestionLog.id, DataIngestionLog.status, DataIngestionLog.error_class))
        )
        requests = conn.scalar(select(func.count()).select_from(ReplayRequest))
    abandoned = [r for r in runs if r.error_class == "Abandoned"]
    if abandoned or requests:
        raise KnownBugError(f"{RERUN_LOOP}: nothing was killed, yet {len(abandoned)} of {len(runs)} runs "
                            f"were abandoned and {requests} reruns requested")  # fmt: skip
    assert all(r.status == "success" for r in runs)
    db.dispose()


@pytest.mark.slow
def test_sigkill_mid_job_runs_the_rest_of_the_slot(tmp_path):
    url = f"sqlite:///{tmp_path}/slot.db"
    stale = 8  # well above any run here (~3 s), so that the live-run bug above stays out of the way
    db = _db(url, HEARTBEAT_STALE_SECONDS=stale)
    with Simulator(SimulatorConfig(tip_growth=False)) as sim:
        # The blocks job does bitcoin (slow: ~3 s) then ethereum (fast); its next slot is hours away.
        sim.add_fault(FaultRule("slow", endpoint="blocks", chain="bitcoin", times=None, delay=0.3))
        settings = _scheduler(url, sim, BLOCKS_INITIAL_DEPTH=1000, HEARTBEAT_STALE_SECONDS=stale)
        first = start_scheduler(tmp_path / "first.log", **settings)
        try:
            wait_for(lambda: _blocks(db, "BTC") >= 200, 60, what="bitcoin blocks to start arriving")
        finally:
            stop(first, signal.SIGKILL)
        killed = runs_by_worker(db, first.pid, "running")
        assert killed, "the kill should land in the bitcoin run"
        second = start_scheduler(tmp_path / "second.log", **settings)
        try:
            wait_for(
                lambda: _blocks(db, "BTC") >= 1000 and not _running(db) and not _open_requests(db),
                60,
                what="the abandoned bitcoin run to be rerun",
            )
            time.sleep(3)  # room for anything else the recovery would run
        finally:
            stop(second)
    eth = _blocks(db, "ETH")
    if eth == 0:
        raise KnownBugError(f"{REST_OF_SLOT}: bitcoin was recovered, ethereum has 0 of 1000 blocks")
    assert eth == 1000
    db.dispose()


@pytest.mark.slow  # waits out the stale timeout
def test_a_request_claimed_by_a_worker_that_died_before_starting_is_served_again(database_url):
    db = _db(database_url, HEARTBEAT_STALE_SECONDS=1)
    run_id = _failed_run(db)
    request = db.request_rerun(run_id, "dashboard")
    dead = "deadhost:4242:dead01"
    db.beat(dead, started_at=utcnow(), current_job=None)
    claimed = db.claim_next_request(dead)  # the scheduler's claim
    assert claimed is not None
    assert claimed.id == request.id  # ... and the worker dies before its replay starts a run
    time.sleep(1.3)
    db.recover_abandoned()
    assert db.get_child_runs(run_id) == []
    if db.open_request_for(run_id) is None:
        state = db.get_replay_request(request.id)
        raise KnownBugError(
            f"{CLAIMED_NOT_STARTED}: request {state.id} is {state.status} ({state.error_message})"
        )
    db.dispose()


# ---------------------------------------------------------------------------------------------- helpers


def _scheduler(url: str, sim: Simulator, **overrides: object) -> dict[str, object]:
    settings: dict[str, object] = {
        "COINS": "bitcoin,ethereum",
        "BLOCKS_INTERVAL_MINUTES": 600,
        "TRANSACTIONS_INTERVAL_MINUTES": 600,
        "ADDRESSES_INTERVAL_MINUTES": 600,
        "LATEST_PRICE_INTERVAL_MINUTES": 600,
        "TRANSACTIONS_WINDOW_BLOCKS": 0,
        "HEARTBEAT_SECONDS": 0.5,
    }
    return scheduler_settings(url, sim, **{**settings, **overrides})


def _scalar(db: DatabaseService, stmt) -> int:  # noqa: ANN001
    with db.engine.connect() as conn:
        return conn.scalar(stmt) or 0


def _blocks(db: DatabaseService, symbol: str) -> int:
    return _scalar(db, select(func.count()).where(BlockchainBlock.coin_symbol == symbol))


def _running(db: DatabaseService) -> int:
    return _scalar(db, select(func.count()).where(DataIngestionLog.status == "running"))


def _open_requests(db: DatabaseService) -> int:
    return _scalar(db, select(func.count()).where(ReplayRequest.status.in_(("pending", "running"))))
