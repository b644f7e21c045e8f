"""One clock for liveness: workers whose clocks disagree still judge each other on the database's clock.

The bug these tests pin down: a worker whose clock ran 5 minutes ahead took a live worker's heartbeat for
5 minutes old, marked its running unit abandoned, replayed the slice concurrently, and the original run
later flipped back to `success`. Now every beat, lease, claim, run start and cutoff is the database's
`now()` (PostgreSQL), and a run is closed only while `running` and only by its owner.

The process test uses a real clock fault: the second scheduler runs under libfaketime (Debian's
`faketime`, LD_PRELOAD), so every clock read of that process (datetime, time.time, the log's timestamps)
is 5 minutes ahead. The in-process tests skew `utcnow` of each module that reads it (the same fault,
cheaper, for the statements one at a time). SQLite has no server clock (its writers share the host's
clock by construction), so the skew tests run on PostgreSQL; the owner/status guard runs on both.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

import pipeline.ingestion.units
import pipeline.models
import pipeline.ranges
import pipeline.runtime.scheduler
import pipeline.store.engine
from benchmarks.harness.processes import (
    ROOT,
    process_env,
    scheduler_settings,
    start_scheduler,
    stop,
    wait_for,
)
from pipeline.database import DatabaseService
from pipeline.ingestion.blockchair import BlockchairIngestor
from pipeline.models import BlockchainBlock, DataIngestionLog, JobLease
from pipeline.ranges import utcnow
from pipeline.runtime.scheduler import Job, Scheduler
from pipeline.simulator import FaultRule, Simulator, SimulatorConfig
from pipeline.store.runs import RunSlice
from tests.support.databases import migrated
from tests.support.settings import make_settings

SKEW = timedelta(minutes=5)
STALE = 10  # seconds: far below the skew, so that a skewed judge would see every honest beat as stale
BLOCKS = 2000  # at one slow page (100 blocks) a second: a ~20 s unit, long enough to outlive the checks
SAME_MOMENT = timedelta(seconds=5)  # "written at the database's now": this test's slack for slow machines

# libfaketime 0.9.10 (Debian 12) has two bugs around the monotonic clock: faked, every threading wait
# (sem_clockwait) gets a deadline years away and hangs; left real (FAKETIME_DONT_FAKE_MONOTONIC), the
# absolute deadline of time.sleep (clock_nanosleep) comes out negative (EINVAL). So the monotonic clock
# stays real, which is also what a skewed host looks like, and time.sleep waits on an Event instead.
_SLEEP_ON_AN_EVENT = """
import threading, time
_never = threading.Event()
def _sleep(seconds):
    _never.wait(max(seconds, 0.0))
time.sleep = _sleep
"""
# Then run the script named by the first argument, as `python script.py args` would.
_BOOT = (
    _SLEEP_ON_AN_EVENT
    + """
import os, runpy, sys
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
runpy.run_path(script, run_name="__main__")
"""
)


# ---------------------------------------------------------------------------------------------- processes


@pytest.mark.slow
def test_a_worker_whose_clock_runs_ahead_leaves_a_live_workers_run_alone(postgres_url, tmp_path):
    libfaketime = _libfaketime()
    db = _db(postgres_url, HEARTBEAT_STALE_SECONDS=STALE)
    with Simulator(SimulatorConfig(tip_growth=False)) as sim:
        sim.add_fault(FaultRule("slow", endpoint="blocks", chain="bitcoin", times=None, delay=1.0))
        settings = _scheduler_settings(postgres_url, sim)
        honest = start_scheduler(tmp_path / "honest.log", **settings)
        skewed: subprocess.Popen | None = None
        try:
            run_id = wait_for(lambda: _running_blocks_run(db), 60, what="the honest worker's blocks run")
            skewed = _start_skewed_scheduler(tmp_path / "skewed.log", libfaketime, SKEW, **settings)
            wait_for(lambda: len(db.get_workers()) == 2, 60, what="the skewed worker's first beat")
            time.sleep(3)  # six beats of the skewed worker, each followed by its recover_abandoned pass
            during = db.get_run(run_id)
            workers = db.get_workers()
            now = db.db_now()
            leases = _leases(db)
            wait_for(lambda: db.get_run(run_id).status.value != "running", 90, what="the blocks run to end")
        finally:
            for process in (skewed, honest):
                if process is not None:
                    stop(process)
    log = (tmp_path / "skewed.log").read_text(errors="replace")
    assert during.status.value == "running", (
        f"the skewed worker abandoned a live worker's run: {during.status.value}/{during.error_class}"
        if during.error_class
        else f"the run ended before the skewed worker could judge it; make it longer ({during.status.value})"
    )
    # Both workers beat on the database's clock: both up, neither beat dated in the future.
    assert sorted(w.state.value for w in workers) == ["up", "up"], workers
    assert all(w.last_beat <= now + SAME_MOMENT and w.started_at <= now + SAME_MOMENT for w in workers)
    assert all(lease.acquired_at <= now + SAME_MOMENT for lease in leases), leases
    run = db.get_run(run_id)
    assert (run.status.value, run.error_class) == ("success", None)
    assert f":{honest.pid}:" in (run.worker_id or "")
    assert _blocks_runs(db) == 1, "the slice ran twice (replayed, or its slot leased twice)"
    assert db.get_child_runs(run_id) == []
    assert db.latest_request_for(run_id) is None
    assert _scalar(db, select(func.count()).where(DataIngestionLog.error_class == "Abandoned")) == 0
    assert _scalar(db, select(func.count()).where(BlockchainBlock.coin_symbol == "BTC")) == BLOCKS
    assert "Traceback" not in log, log[-3000:]
    db.dispose()


@pytest.mark.slow  # starts a process
def test_libfaketime_moves_the_clock_of_the_process_it_is_loaded_in():
    """The fault the process test relies on is real: the child's clock reads 5 minutes ahead."""
    libfaketime = _libfaketime()
    probe = "import datetime\ntime.sleep(0.05)\nprint(datetime.datetime.now(datetime.UTC).timestamp())\n"
    before = time.time()
    out = subprocess.run(
        [sys.executable, "-c", _SLEEP_ON_AN_EVENT + probe],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**process_env(), **_faketime_env(libfaketime, SKEW)},
    )
    assert out.returncode == 0, out.stderr
    ahead = float(out.stdout.strip()) - before
    assert SKEW.total_seconds() - 5 < ahead < SKEW.total_seconds() + 10, ahead


# ---------------------------------------------------------------------------------------------- owner guard


@pytest.mark.slow  # waits out the stale timeout
def test_a_run_abandoned_meanwhile_stays_abandoned_when_its_worker_closes_it(database_url, caplog):
    db = _db(database_url, HEARTBEAT_STALE_SECONDS=1)
    other = DatabaseService(settings=db.settings)  # another worker's pool, on the same database
    worker = "host-a:101:aaaaaa"
    db.beat(worker, started_at=utcnow(), current_job="blocks bitcoin")
    ingestor = BlockchairIngestor(settings=db.settings, db=db, worker_id=worker)
    unit = RunSlice("blockchair", "blocks", "bitcoin", {"chain": "bitcoin"})
    with caplog.at_level(logging.WARNING, logger="pipeline.store.runs"):
        with ingestor.recorded(unit, trigger="schedule", parent_run_id=None) as tally:
            time.sleep(1.3)  # the worker misses its beats (a frozen VM, a long pause) ...
            assert other.recover_abandoned() == [tally.run_id]  # ... and another worker abandons its run
            tally.fetched = 7  # ... then the unit completes all the same
        run_id = tally.run_id
    stored = db.get_run(run_id)
    assert (stored.status.value, stored.error_class, stored.records_fetched) == ("failed", "Abandoned", 0)
    assert tally.result is not None
    assert (tally.result.status.value, tally.result.error_class) == ("failed", "Abandoned")
    # The slice stays queued for the replay the abandonment asked for.
    assert db.open_request_for(run_id) is not None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and f"run {run_id} " in r.message]
    assert len(warnings) == 1, [r.message for r in caplog.records]
    other.dispose()
    db.dispose()


def test_only_the_owner_closes_a_run_and_only_once(database_url):
    db = _db(database_url)
    unit = RunSlice("blockchair", "blocks", "bitcoin", {"chain": "bitcoin"})
    run_id = db.start_run(unit, trigger="schedule", parent_run_id=None, worker_id="owner")
    intruder = db.finish_run(run_id, worker_id="intruder", status="success", finished_at=utcnow())
    assert (intruder.status.value, intruder.finished_at) == ("running", None)
    closed = db.finish_run(
        run_id, worker_id="owner", status="success", records_fetched=3, finished_at=utcnow()
    )
    assert (closed.status.value, closed.records_fetched) == ("success", 3)
    again = db.finish_run(run_id, worker_id="owner", status="failed", records_fetched=0)
    assert (again.status.value, again.records_fetched) == ("success", 3)
    assert db.finish_run(run_id, status="failed").status.value == "success"  # no owner given: still once
    db.dispose()


# ------------------------------------------------------------------------------------------ in-process skew


def test_beats_and_runs_of_skewed_processes_are_judged_on_the_database_clock(postgres_url, monkeypatch):
    db = _db(postgres_url, HEARTBEAT_STALE_SECONDS=STALE)
    clocks = {"honest": timedelta(0), "ahead": SKEW, "behind": -SKEW}
    runs = {}
    for worker, offset in clocks.items():
        with _skewed(monkeypatch, offset):
            db.beat(worker, started_at=utcnow(), current_job="blocks")
            runs[worker] = db.start_run(
                RunSlice("blockchair", "blocks", worker, {"chain": worker}),
                trigger="schedule",
                parent_run_id=None,
                worker_id=worker,
            )
    for judge, offset in clocks.items():
        with _skewed(monkeypatch, offset):
            assert db.recover_abandoned() == [], f"{judge} abandoned live runs"
            states = {w.worker_id: w.state.value for w in db.get_workers()}
            assert states == dict.fromkeys(clocks, "up"), judge
    now = db.db_now()
    for worker in db.get_workers():
        assert abs(worker.last_beat - now) < SAME_MOMENT, worker
        assert abs(worker.started_at - now) < SAME_MOMENT, worker
    for run_id in runs.values():
        run = db.get_run(run_id)
        assert run.status.value == "running"
        assert abs(run.started_at - now) < SAME_MOMENT, run
    db.dispose()


def test_a_lease_outlives_a_process_whose_clock_is_days_ahead(postgres_url, monkeypatch):
    db = _db(postgres_url)
    ttl = timedelta(minutes=20)
    assert db.take_lease("blocks:BTC", "42", "honest", ttl)
    with _skewed(monkeypatch, timedelta(days=3)):
        # Its clean-up of week-old leases must not take the live one for week-old, nor win its slot.
        assert not db.take_lease("blocks:BTC", "42", "ahead", ttl)
        assert db.take_lease("blocks:ETH", "42", "ahead", ttl)
    now = db.db_now()
    leases = _leases(db)
    assert sorted((lease.job_name, lease.owner) for lease in leases) == [
        ("blocks:BTC", "honest"),
        ("blocks:ETH", "ahead"),
    ]
    for lease in leases:
        assert abs(lease.acquired_at - now) < SAME_MOMENT, lease
        assert lease.expires_at - lease.acquired_at == ttl
    db.dispose()


def test_workers_whose_clocks_disagree_agree_on_a_job_slot(postgres_url, monkeypatch):
    db = _db(postgres_url)
    coin = next(c for c in db.get_coins(active_only=True) if c.blockchair_chain == "bitcoin")
    ran: list[str] = []
    for worker, offset in (("honest", timedelta(0)), ("ahead", SKEW)):
        with _skewed(monkeypatch, offset):
            # A 5-minute job: a clock 5 minutes ahead is always in the next slot by its own reckoning.
            job = Job("probe", 5, lambda: [coin], lambda _coin, name=worker: ran.append(name))
            Scheduler(db.settings, db, worker_id=worker).run_job(job)
    assert ran == ["honest"]
    db.dispose()


def test_a_claim_by_a_process_whose_clock_lags_is_not_taken_for_a_dead_workers(postgres_url, monkeypatch):
    db = _db(postgres_url, HEARTBEAT_STALE_SECONDS=STALE)
    unit = RunSlice("blockchair", "blocks", "bitcoin", {"chain": "bitcoin"})
    run_id = db.start_run(unit, trigger="schedule", parent_run_id=None)
    db.finish_run(run_id, status="failed", error_class="RetriableSourceError", finished_at=utcnow())
    request = db.request_rerun(run_id, "dashboard")
    with _skewed(monkeypatch, -SKEW):  # a dashboard (it never beats) on a host whose clock lags
        claimed = db.claim_request(request.id, "dashboard:7:bbbbbb")  # the dashboard's claim, by id
        assert claimed.id == request.id
    db.recover_abandoned()  # an honest worker's pass: the claim is seconds old, not minutes
    state = db.get_replay_request(request.id)
    assert (state.status, state.claimed_by) == ("running", "dashboard:7:bbbbbb")
    assert abs(state.claimed_at - db.db_now()) < SAME_MOMENT
    assert abs(state.requested_at - db.db_now()) < SAME_MOMENT
    db.dispose()


# ---------------------------------------------------------------------------------------------- helpers


def _db(url: str, **settings: object) -> DatabaseService:
    return migrated(make_settings(url, **settings))


@contextmanager
def _skewed(monkeypatch: pytest.MonkeyPatch, offset: timedelta) -> Iterator[None]:
    """This process's clock `offset` away from the true time, for every module that reads it."""
    real = pipeline.ranges.utcnow

    def skewed_now() -> datetime:
        return real() + offset

    with monkeypatch.context() as patch:
        modules = (
            pipeline.models,
            pipeline.store.engine,  # db_now on SQLite
            pipeline.ingestion.units,
            pipeline.runtime.scheduler,
        )
        for module in modules:
            patch.setattr(module, "utcnow", skewed_now)
        yield


def _libfaketime() -> Path:
    """Debian's libfaketime; the test skips without it (and fails in CI, which installs it)."""
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    if not found or shutil.which("faketime") is None:
        reason = "needs libfaketime (apt-get install faketime)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found[0]


def _faketime_env(libfaketime: Path, offset: timedelta) -> dict[str, str]:
    return {
        "LD_PRELOAD": str(libfaketime),
        "FAKETIME": f"{int(offset.total_seconds()):+d}",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def _start_skewed_scheduler(
    log_path: Path, libfaketime: Path, offset: timedelta, **settings: object
) -> subprocess.Popen:
    """`run_ingestor.py` with its whole process's clock `offset` away (LD_PRELOAD: the Popen is Python)."""
    log = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-c", _BOOT, str(ROOT / "run_ingestor.py"), "--log-level", "INFO"],
        cwd=log_path.parent,
        env={**process_env(**settings), **_faketime_env(libfaketime, offset)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _scheduler_settings(url: str, sim: Simulator) -> dict[str, object]:
    return scheduler_settings(
        url,
        sim,
        COINS="bitcoin",
        BLOCKS_INITIAL_DEPTH=BLOCKS,
        BLOCKS_INTERVAL_MINUTES=600,
        TRANSACTIONS_INTERVAL_MINUTES=600,
        ADDRESSES_INTERVAL_MINUTES=600,
        LATEST_PRICE_INTERVAL_MINUTES=600,
        TRANSACTIONS_WINDOW_BLOCKS=0,
        HEARTBEAT_SECONDS=0.5,
        HEARTBEAT_STALE_SECONDS=STALE,
    )


def _scalar(db: DatabaseService, stmt) -> int:  # noqa: ANN001
    with db.engine.connect() as conn:
        return conn.scalar(stmt) or 0


def _blocks_filter() -> tuple:
    return (DataIngestionLog.data_type == "blocks", DataIngestionLog.coin == "bitcoin")


def _running_blocks_run(db: DatabaseService) -> int | None:
    stmt = select(DataIngestionLog.id).where(*_blocks_filter(), DataIngestionLog.status == "running")
    with db.engine.connect() as conn:
        return conn.scalar(stmt)


def _blocks_runs(db: DatabaseService) -> int:
    return _scalar(db, select(func.count()).where(*_blocks_filter()))


def _leases(db: DatabaseService) -> list:
    with db.engine.connect() as conn:
        return list(conn.execute(select(JobLease.__table__)))
