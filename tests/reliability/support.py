"""Helpers shared by the reliability tests and the report script: run-log queries, dumps, notes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import func, inspect, select, text

from pipeline.database import DatabaseService
from pipeline.ingestion.blockchair import BlockchairIngestor
from pipeline.ingestion.coingecko import CoinGeckoIngestor
from pipeline.models import BlockchainBlock, DataIngestionLog, MarketPrice, ReplayRequest
from pipeline.schemas import DataIngestionLogData
from pipeline.simulator import Simulator
from tests.conftest import make_settings
from tests.processes import ROOT, process_env

# The chains (and coins) of the backfills the crash and outage scenarios run.
CHAINS = ("bitcoin", "ethereum", "dogecoin")
SYMBOLS = ("BTC", "ETH", "DOGE")

# Lines the tests want printed at the end of the session (seeds, latencies), in order.
NOTES: list[str] = []


class KnownBugError(AssertionError):
    """A failure a known bug explains: tests showing a bug are xfail(strict=True, raises=KnownBugError),
    so that any other failure of the same test is still reported as a failure."""


def note(line: str) -> None:
    """Print a line now (visible with -s) and again in the session summary."""
    print(line)
    NOTES.append(line)


def all_runs(db: DatabaseService) -> list[DataIngestionLogData]:
    """Every run, oldest first."""
    return list(reversed(db.get_ingestion_logs(limit=None)))


def runs_by_worker(db: DatabaseService, pid: int, status: str | None = None) -> list[int]:
    """Ids of the runs a worker process wrote (run worker ids are host:pid:suffix)."""
    stmt = select(DataIngestionLog.id).where(DataIngestionLog.worker_id.like(f"%:{pid}:%"))
    if status:
        stmt = stmt.where(DataIngestionLog.status == status)
    with db.engine.connect() as conn:
        return list(conn.scalars(stmt))


def child_chain(db: DatabaseService, run_id: int) -> list[DataIngestionLogData]:
    """The reruns that descend from a run, following the only child each time (raises if it forks)."""
    chain = []
    current = run_id
    for _ in range(1000):
        children = db.get_child_runs(current)
        if not children:
            return chain
        if len(children) != 1:
            msg = f"run {current} has {len(children)} children: {[c.id for c in children]}"
            raise AssertionError(msg)
        chain.append(children[0])
        current = children[0].id
    msg = f"the child chain of run {run_id} does not end"
    raise AssertionError(msg)


def table_rows(db: DatabaseService, model: type) -> list[tuple]:
    """Every row of a data table without its audit timestamps, in key order."""
    columns = [c for c in model.__table__.columns if c.name not in ("created_at", "updated_at")]
    keys = list(model.__table__.primary_key.columns)
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(*columns).order_by(*keys))]


def data_rows(db: DatabaseService) -> dict[str, list[tuple]]:
    """Blocks and prices, row for row."""
    return {"blocks": table_rows(db, BlockchainBlock), "prices": table_rows(db, MarketPrice)}


def dump_text(db: DatabaseService) -> str:
    """Every row of every table, as text (to search for a secret in everything the database holds)."""
    parts = []
    with db.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                parts.append(f"{table}: {tuple(row)!r}")
    return "\n".join(parts)


def run_cli(args: Iterable[str], timeout: float = 60, **settings: object) -> subprocess.CompletedProcess:
    """`python -m pipeline.runtime.cli ...` in a subprocess with the given settings as its environment."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.runtime.cli", *args],
        cwd=ROOT,
        env=process_env(**settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_scheduler_at(log_path: Path, level: str = "INFO", **settings: object) -> subprocess.Popen:
    """`python run_ingestor.py` at a chosen log level (tests.processes.start_scheduler uses INFO)."""
    log = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, str(ROOT / "run_ingestor.py"), "--log-level", level],
        cwd=log_path.parent,
        env=process_env(**settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def count(db: DatabaseService, stmt) -> int:  # noqa: ANN001
    with db.engine.connect() as conn:
        return conn.scalar(stmt) or 0


def backfill_complete(db: DatabaseService, depth: int, days: int) -> bool:
    """Every chain holds `depth` blocks, every coin `days` prices, and nothing is running or queued."""
    for symbol in SYMBOLS:
        if count(db, select(func.count()).where(BlockchainBlock.coin_symbol == symbol)) < depth:
            return False
    for coin in CHAINS:
        if count(db, select(func.count()).where(MarketPrice.coin_id == coin)) < days:
            return False
    running = select(func.count()).where(DataIngestionLog.status == "running")
    open_requests = select(func.count()).where(ReplayRequest.status.in_(("pending", "running")))
    return count(db, running) == 0 and count(db, open_requests) == 0


def reference_rows(sim: Simulator, tmp_path: Path, depth: int, days: int) -> dict[str, list[tuple]]:
    """The same backfill, uninterrupted, into a fresh database."""
    sim.clear_faults()
    settings = make_settings(
        f"sqlite:///{tmp_path}/reference.db",
        BLOCKCHAIR_BASE_URL=sim.blockchair_url,
        COINGECKO_BASE_URL=sim.coingecko_url,
        BLOCKS_INITIAL_DEPTH=depth,
        PRICE_BACKFILL_DAYS=days,
    )
    reference = DatabaseService(settings=settings)
    reference.create_tables()
    blockchair = BlockchairIngestor(settings=settings, db=reference)
    coingecko = CoinGeckoIngestor(settings=settings, db=reference)
    for chain in CHAINS:
        assert blockchair.ingest_blocks(blockchair.coin(chain)).status == "success"
        assert coingecko.ingest_latest(coingecko.coin(chain)).status == "success"
    rows = data_rows(reference)
    reference.dispose()
    return rows
