"""Database outages during a multi-batch backfill with reruns queued: the scenario the test and the report
share (`tests/reliability/test_database_outages.py` asserts on it with a few short outages;
`benchmarks/reliability_report.py --outages` runs twenty long ones).

The scheduler backfills blocks of three chains and a year of prices from a slowed simulator, with failed
price runs queued for rerun. Meanwhile the database goes away again and again: on PostgreSQL a proxy
refuses new connections and terminates the open ones; on SQLite another process holds the write lock.
The scheduler must never exit, and afterwards the data must equal an uninterrupted run's row for row,
with no run left `running`, no request left open, and one log line per outage, not one per attempt.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from benchmarks.harness.backfill import (
    CHAINS,
    all_runs,
    backfill_complete,
    child_chain,
    count,
    data_rows,
    reference_rows,
)
from benchmarks.harness.processes import scheduler_settings, start_scheduler, stop, wait_for
from pipeline.config import load_settings
from pipeline.database import DatabaseService
from pipeline.ingestion.coingecko import CoinGeckoIngestor
from pipeline.models import BlockchainBlock, ReplayRequest
from pipeline.simulator import FaultRule, Simulator, SimulatorConfig
from pipeline.simulator.netfault import PgProxy, SqliteLock

ANCHOR = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=24)
OUTAGE_LINE = "logged once per outage"
BACK_LINE = "database is back after"


@contextmanager
def outage_simulator() -> Iterator[Simulator]:
    """A simulator whose chains do not grow, so the data of two runs can be compared row for row."""
    with Simulator(SimulatorConfig(tip_growth=False, anchor_time=ANCHOR)) as sim:
        yield sim


@dataclass
class OutageReport:
    """What one scenario measured."""

    dialect: str
    durations: list[float]
    scheduler_exits: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    equal_to_reference: bool = False
    runs_left_running: int = 0
    open_requests: int = 0
    failed_by_outage: int = 0
    outage_runs_completed: int = 0
    reruns_served: int = 0
    outage_log_lines: int = 0
    back_log_lines: int = 0
    tracebacks: int = 0
    seconds: float = 0.0
    exit_code: int | None = None

    def line(self) -> str:
        """One line for the report and the test notes."""
        return (
            f"{self.dialect}: {len(self.durations)} outages of {min(self.durations):.0f}-"
            f"{max(self.durations):.0f} s in {self.seconds:.0f} s; scheduler exits {self.scheduler_exits}, "
            f"exit code at SIGTERM {self.exit_code}; rows {self.rows} equal to an uninterrupted run: "
            f"{self.equal_to_reference}; runs left running {self.runs_left_running}, open requests "
            f"{self.open_requests}; units failed by an outage {self.failed_by_outage}, completed by "
            f"reruns {self.outage_runs_completed}; queued reruns served {self.reruns_served}; log lines: "
            f"{self.outage_log_lines} outage, {self.back_log_lines} recovery, {self.tracebacks} tracebacks"
        )


def scenario_settings(database_url: str, sim: Simulator, depth: int, days: int) -> dict[str, object]:
    """A scheduler that backfills blocks and prices, beating every 0.5 s."""
    return scheduler_settings(
        database_url,
        sim,
        COINS=",".join(CHAINS),
        BLOCKS_INITIAL_DEPTH=depth,
        BLOCKS_INTERVAL_MINUTES=0.25,
        LATEST_PRICE_INTERVAL_MINUTES=0.25,
        PRICE_BACKFILL_DAYS=days,
        TRANSACTIONS_WINDOW_BLOCKS=0,
        TRANSACTIONS_INTERVAL_MINUTES=600,
        ADDRESSES_INTERVAL_MINUTES=600,
        HEARTBEAT_SECONDS=0.5,
        HEARTBEAT_STALE_SECONDS=10,
        # Short, so that a held SQLite lock turns into errors the loop must ride out, not just a wait.
        SQLITE_BUSY_TIMEOUT_MS=1000,
    )


def queue_failed_price_runs(db: DatabaseService, sim: Simulator, days: int) -> list[int]:
    """A year of prices per coin, failed by a source outage and queued for rerun (the reruns in flight)."""
    settings = load_settings(
        _env_file=None,
        DATABASE_URL=db.database_url,
        BLOCKCHAIR_BASE_URL=sim.blockchair_url,
        COINGECKO_BASE_URL=sim.coingecko_url,
        COINGECKO_RATE_LIMIT_PER_MINUTE=100_000,
        HTTP_MAX_ATTEMPTS=1,
    )
    sim.add_fault(FaultRule("500", endpoint="coingecko", times=None))
    coingecko = CoinGeckoIngestor(settings=settings, db=db)
    today = datetime.now(UTC).date()
    failed = []
    for coin in CHAINS:
        run = coingecko.ingest_price_range(coingecko.coin(coin), today - timedelta(days=days - 1), today)
        assert run.status == "failed", run
        failed.append(run.id)
        db.request_rerun(run.id, "outage scenario")
    sim.clear_faults()
    return failed


def pg_outage(proxy: PgProxy) -> Callable[[float], AbstractContextManager[None]]:
    """An outage of PostgreSQL as the scheduler sees it: refused connections, sessions terminated."""

    @contextmanager
    def outage(_seconds: float) -> Iterator[None]:
        proxy.cut()
        try:
            yield
        finally:
            proxy.restore()

    return outage


def sqlite_outage(path: Path) -> Callable[[float], AbstractContextManager[None]]:
    """Another process holding the write lock for the outage's length."""

    @contextmanager
    def outage(seconds: float) -> Iterator[None]:
        lock = SqliteLock(path, seconds)
        try:
            yield
        finally:
            lock.wait()

    return outage


def proxied(database_url: str, port: int) -> str:
    """The PostgreSQL URL with its host and port replaced by the proxy's."""
    return make_url(database_url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def run_scenario(
    *,
    database_url: str,
    sim: Simulator,
    tmp_path: Path,
    durations: list[float],
    seed: int,
    depth: int,
    days: int,
    sim_delay: float,
    finish_timeout: float = 300,
) -> OutageReport:
    """Start the scheduler, inflict the outages, let it finish, and measure everything."""
    rng = random.Random(seed)
    dialect = make_url(database_url).get_backend_name()
    db = DatabaseService(settings=load_settings(_env_file=None, DATABASE_URL=database_url))
    db.create_tables()
    failed_runs = queue_failed_price_runs(db, sim, days)
    sim.add_fault(FaultRule("slow", endpoint="blockchair", times=None, delay=sim_delay))
    sim.add_fault(FaultRule("slow", endpoint="coingecko", times=None, delay=sim_delay * 2))
    report = OutageReport(dialect=dialect, durations=durations)

    proxy = PgProxy((make_url(database_url).host or "127.0.0.1", make_url(database_url).port or 5432))
    with proxy:
        if dialect == "postgresql":
            scheduler_url, outage = proxied(database_url, proxy.port), pg_outage(proxy)
        else:
            scheduler_url = database_url
            outage = sqlite_outage(Path(make_url(database_url).database or ""))
        settings = scenario_settings(scheduler_url, sim, depth, days)
        started = time.monotonic()
        log = tmp_path / f"scheduler-{dialect}.log"
        proc = start_scheduler(log, **settings)
        try:
            wait_for(lambda: count(db, select(func.count()).select_from(BlockchainBlock)) > 0, 60)
            for seconds in durations:
                time.sleep(rng.uniform(0.5, 3.0))
                with outage(seconds):
                    time.sleep(seconds)
                report.scheduler_exits += proc.poll() is not None
                if proc.poll() is not None:
                    break
            wait_for(
                lambda: proc.poll() is not None or backfill_complete(db, depth, days),
                finish_timeout,
                interval=0.5,
                what="the backfill to complete after the outages",
            )
            report.scheduler_exits += proc.poll() is not None
        finally:
            report.exit_code = stop(proc, signal.SIGTERM)
        report.seconds = time.monotonic() - started

    text = log.read_text(errors="replace")
    report.outage_log_lines = text.count(OUTAGE_LINE)
    report.back_log_lines = text.count(BACK_LINE)
    report.tracebacks = text.count("Traceback")
    got = data_rows(db)
    report.rows = {table: len(rows) for table, rows in got.items()}
    report.equal_to_reference = got == reference_rows(sim, tmp_path, depth, days)
    runs = all_runs(db)
    report.runs_left_running = sum(r.status.value == "running" for r in runs)
    report.open_requests = count(
        db, select(func.count()).where(ReplayRequest.status.in_(("pending", "running")))
    )
    by_outage = [r for r in runs if r.error_class == "DatabaseUnavailable"]
    report.failed_by_outage = len(by_outage)
    report.outage_runs_completed = sum(
        bool(chain) and chain[-1].status.value == "success"
        for chain in (child_chain(db, r.id) for r in by_outage)
    )
    report.reruns_served = sum(
        bool(chain) and chain[-1].status.value == "success"
        for chain in (child_chain(db, run_id) for run_id in failed_runs)
    )
    db.dispose()
    return report
