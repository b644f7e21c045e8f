"""The scheduler as a real process, against the simulator, on SQLite and PostgreSQL."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from benchmarks.harness.processes import scheduler_settings as base_settings
from benchmarks.harness.processes import start_scheduler, stop, wait_for
from pipeline.database import DatabaseService
from pipeline.ingestion.blockchair import BlockchairIngestor
from pipeline.models import BlockchainBlock, DataIngestionLog, JobLease
from pipeline.simulator import FaultRule, Simulator, SimulatorConfig
from tests.support.databases import migrated_database
from tests.support.settings import make_settings

pytestmark = pytest.mark.slow


@pytest.fixture
def sim():
    with Simulator(SimulatorConfig(tip_growth=False)) as simulator:
        yield simulator


def scheduler_settings(database_url: str, sim: Simulator, **overrides: object) -> dict[str, object]:
    """Settings for a scheduler subprocess: fast jobs, fast heartbeats, no client-side pacing."""
    settings: dict[str, object] = {
        "BLOCKS_INITIAL_DEPTH": 120,
        "BLOCKS_INTERVAL_MINUTES": 0.05,
        "TRANSACTIONS_INTERVAL_MINUTES": 0.05,
        "LATEST_PRICE_INTERVAL_MINUTES": 0.1,
        "HEARTBEAT_SECONDS": 0.5,
        "HEARTBEAT_STALE_SECONDS": 3,
        "COINS": "bitcoin,ethereum",
    }
    return base_settings(database_url, sim, **{**settings, **overrides})


@pytest.fixture
def db(database_url):
    with migrated_database(make_settings(database_url, HEARTBEAT_STALE_SECONDS=3)) as service:
        yield service


def runs_of(db: DatabaseService, data_type: str, status: str | None = None, coin: str | None = None) -> int:
    stmt = select(func.count()).select_from(DataIngestionLog).where(DataIngestionLog.data_type == data_type)
    if status:
        stmt = stmt.where(DataIngestionLog.status == status)
    if coin:
        stmt = stmt.where(DataIngestionLog.coin == coin)
    with db.engine.connect() as conn:
        return conn.scalar(stmt)


def running_runs(db: DatabaseService) -> int:
    return len(db.get_ingestion_logs(status="running", limit=None))


def test_scheduler_ingests_survives_a_failing_job_beats_and_stops_cleanly(db, database_url, sim, tmp_path):
    sim.add_fault(FaultRule("500", endpoint="transactions", times=None))  # this job fails every time
    proc = start_scheduler(tmp_path / "scheduler.log", **scheduler_settings(database_url, sim))
    try:
        wait_for(lambda: runs_of(db, "transactions", "failed") >= 4, 60, what="repeated failing runs")
        wait_for(lambda: runs_of(db, "blocks", "success", coin="bitcoin") >= 3, 60, what="blocks on schedule")
        workers = db.get_workers()
        assert [w.state for w in workers] == ["up"]
        assert datetime.now(UTC) - workers[0].last_beat < timedelta(seconds=5)
        assert db.get_database_stats().total_prices > 0
    finally:
        code = stop(proc, signal.SIGTERM)
    log = (tmp_path / "scheduler.log").read_text()
    assert code == 0, log
    assert "stopped cleanly" in log
    assert running_runs(db) == 0
    assert db.get_workers()[0].state == "stopped"  # cleanly: not "down"
    failed = [r.error_class for r in db.get_ingestion_logs(status="failed", limit=None)]
    # The newest may be the unit SIGTERM interrupted; every other failure is the source's.
    assert failed[0] in ("RetriableSourceError", "Interrupted"), failed
    assert set(failed[1:]) == {"RetriableSourceError"}, failed


def test_running_scheduler_serves_a_rerun_request(db, database_url, sim, tmp_path):
    settings = make_settings(database_url, BLOCKCHAIR_BASE_URL=sim.blockchair_url, BLOCKS_INITIAL_DEPTH=120)
    ingestor = BlockchairIngestor(settings=settings, db=db)
    sim.add_fault(FaultRule("503", endpoint="blocks", times=None))
    failed = ingestor.ingest_blocks(ingestor.coin("dogecoin"))
    assert failed.status == "failed"
    sim.clear_faults()

    request = db.request_rerun(failed.id, "test")
    assert db.request_rerun(failed.id, "test again").id == request.id  # not queued twice
    proc = start_scheduler(
        tmp_path / "scheduler.log", **scheduler_settings(database_url, sim, COINS="bitcoin")
    )
    try:
        done = wait_for(
            lambda: (r := db.get_replay_request(request.id)).status in ("done", "failed") and r,
            60,
            what="rerun",
        )
    finally:
        stop(proc)
    assert done.status == "done"
    child = db.get_run(done.result_run_id)
    assert child.parent_run_id == failed.id
    assert child.status == "success"
    assert db.max_block_height("DOGE") == sim.tip("dogecoin")


@pytest.mark.parametrize("slot_boundary", [False, True], ids=["same-slot", "new-slot"])
def test_kill_9_mid_backfill_then_restart_recovers_and_matches_an_uninterrupted_run(
    database_url, sim, tmp_path, slot_boundary
):
    db = DatabaseService(settings=make_settings(database_url, HEARTBEAT_STALE_SECONDS=3))
    db.create_tables()
    sim.add_fault(FaultRule("slow", endpoint="blocks", times=None, delay=0.15))
    settings = scheduler_settings(
        database_url, sim, COINS="bitcoin", BLOCKS_INITIAL_DEPTH=2500, BLOCKS_INTERVAL_MINUTES=30
    )
    first = start_scheduler(tmp_path / "first.log", **settings)
    try:
        wait_for(lambda: db.get_database_stats().total_blocks >= 600, 60, what="a few committed pages")
    finally:
        stop(first, signal.SIGKILL)
    assert running_runs(db) >= 1  # the killed run is still marked running

    def replay_finished() -> bool:
        # The abandoned run's replay request has ended, not merely been claimed: stopping the scheduler
        # any earlier interrupts the replay, for example when the restart falls in a new schedule slot
        # and the regular blocks job, run first, already filled the heights.
        requests = db.get_replay_requests(limit=1000)
        return bool(requests) and all(r.status in ("done", "failed") for r in requests)

    if slot_boundary:  # the regular blocks job runs at start too, before the replay
        settings = {**settings, "BLOCKS_INTERVAL_MINUTES": 0.02}
    second = start_scheduler(tmp_path / "second.log", **settings)
    try:
        wait_for(lambda: running_runs(db) == 0 and replay_finished(), 120, what="recovery")
        wait_for(lambda: db.get_database_stats().total_blocks >= 2500, 120, what="the slice completed")
    finally:
        stop(second)

    abandoned = [
        r for r in db.get_ingestion_logs(status="failed", limit=None) if r.error_class == "Abandoned"
    ]
    assert len(abandoned) == 1
    children = db.get_child_runs(abandoned[0].id)
    assert [(c.status, c.error_class) for c in children] == [("success", None)]

    # Row for row, the same blocks as one uninterrupted run into a fresh database.
    reference = DatabaseService(settings=make_settings(f"sqlite:///{tmp_path}/reference.db"))
    reference.create_tables()
    sim.clear_faults()
    clean = BlockchairIngestor(
        settings=make_settings(
            reference.database_url, BLOCKCHAIR_BASE_URL=sim.blockchair_url, BLOCKS_INITIAL_DEPTH=2500
        ),
        db=reference,
    )
    clean.ingest_blocks(clean.coin("bitcoin"))
    columns = [c for c in BlockchainBlock.__table__.columns if c.name not in ("created_at", "updated_at")]

    def rows(service: DatabaseService) -> list[tuple]:
        with service.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(*columns).order_by(BlockchainBlock.block_id))]

    assert rows(db) == rows(reference)


def test_three_schedulers_serve_each_request_once_and_never_share_a_slot(postgres_url, sim, tmp_path):
    db = DatabaseService(settings=make_settings(postgres_url))
    db.create_tables()
    settings = make_settings(postgres_url, COINGECKO_BASE_URL=sim.coingecko_url)
    from pipeline.ingestion.coingecko import CoinGeckoIngestor

    ingestor = CoinGeckoIngestor(settings=settings, db=db)
    sim.add_fault(FaultRule("500", endpoint="market_chart_range", times=None))
    today = datetime.now(UTC).date()
    failed = [
        ingestor.ingest_price_range(
            ingestor.coin("bitcoin"), today - timedelta(days=i + 1), today - timedelta(days=i + 1)
        )
        for i in range(30)
    ]
    sim.clear_faults()
    requests = [db.request_rerun(run.id, "test") for run in failed]
    procs = [
        start_scheduler(tmp_path / f"worker{i}.log", **scheduler_settings(postgres_url, sim, COINS="bitcoin"))
        for i in range(3)
    ]
    try:
        wait_for(
            lambda: all(db.get_replay_request(r.id).status == "done" for r in requests),
            120,
            what="30 reruns done",
        )
    finally:
        codes = [stop(p) for p in procs]
    assert codes == [0, 0, 0]
    served = [db.get_replay_request(r.id) for r in requests]
    assert len({r.result_run_id for r in served}) == 30
    for run in failed:
        assert len(db.get_child_runs(run.id)) == 1
    assert len({r.claimed_by for r in served}) >= 2  # the work was shared
    with db.engine.connect() as conn:
        leases = conn.scalar(
            select(func.count()).select_from(JobLease).where(JobLease.job_name.like("blocks:%"))
        )
        block_runs = conn.scalar(
            select(func.count())
            .select_from(DataIngestionLog)
            .where(DataIngestionLog.data_type == "blocks", DataIngestionLog.trigger == "schedule")
        )
    assert block_runs == leases  # one run per (chain, slot) lease: no slot ran twice
