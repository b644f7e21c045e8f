"""The backfill the crash and outage scenarios interrupt, and how its result is compared.

Blocks of three chains and a year of prices for three coins; `reference_rows` runs the same backfill
uninterrupted into a fresh database, and `data_rows` of the interrupted one must equal it row for row.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from pipeline.config import load_settings
from pipeline.database import DatabaseService
from pipeline.ingestion.blockchair import BlockchairIngestor
from pipeline.ingestion.coingecko import CoinGeckoIngestor
from pipeline.models import BlockchainBlock, DataIngestionLog, MarketPrice, ReplayRequest
from pipeline.schemas import DataIngestionLogData
from pipeline.simulator import Simulator

# The chains (and coins) of the backfills the crash and outage scenarios run.
CHAINS = ("bitcoin", "ethereum", "dogecoin")
SYMBOLS = ("BTC", "ETH", "DOGE")


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


def count(db: DatabaseService, stmt) -> int:  # noqa: ANN001
    """The scalar a count query returns (0 for none)."""
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
    settings = load_settings(
        _env_file=None,
        DATABASE_URL=f"sqlite:///{tmp_path}/reference.db",
        BLOCKCHAIR_BASE_URL=sim.blockchair_url,
        COINGECKO_BASE_URL=sim.coingecko_url,
        BLOCKCHAIR_RATE_LIMIT_PER_MINUTE=100_000,
        COINGECKO_RATE_LIMIT_PER_MINUTE=100_000,
        HTTP_TIMEOUT_SECONDS=5,
        HTTP_MAX_TOTAL_WAIT_SECONDS=10,
        HTTP_BACKOFF_BASE_SECONDS=0.05,
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
