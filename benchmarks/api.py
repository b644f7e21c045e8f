"""REST API benchmark: latency of a 100-row page of transactions, daily prices and runs, on a large and a
small database, on SQLite and PostgreSQL.

    python benchmarks/api.py [--scale 1.0] [--small-fraction 0.01] [--requests 300]
                             [--dialects sqlite,postgresql]

At --scale 1 the large database holds 1,000,000 transactions (100,000 blocks of three chains, ten
transactions each), 100,000 ingestion runs (one every 2 minutes) and five years of daily prices of ten
coins; the small one holds `--small-fraction` of each (at least 200 of each listing, so that every page
is full). Rows are generated as validated-model instances (`model_construct`) and written through
`DatabaseService.insert_*` in large batches, the runs through `session_factory.begin()` (as
benchmarks/dashboard.py does); PostgreSQL gets an ANALYZE afterwards, as autovacuum would (SQLite none,
as the pipeline runs none).

Each database is served by `crypto-pipeline api` in a process of its own, as deployed (uvicorn, one
worker), and read over HTTP with keep-alive from this one: a request's time includes the HTTP exchange,
routing, validation, the store's keyset read, serialisation and the ETag. For each listing, `--requests`
pages are read from random depths: a cursor taken from the first page is re-pointed at a random key (its
digest and tag recomputed, as the API itself would issue it), so the pages come from anywhere in the
table, not just its head, which the cache would flatter. p50 and p95 are printed per dialect, size and
listing, and the ratio large/small of each (goal: p95 at most 50 ms, ratio at most 1.5).
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

warnings.filterwarnings("ignore", category=DeprecationWarning)

from benchmarks.harness.postgres import PG_URL, postgres_schema, postgres_unavailable  # noqa: E402
from benchmarks.harness.processes import free_port, process_env, stop, wait_for  # noqa: E402
from pipeline.api import pagination  # noqa: E402
from pipeline.config import load_settings  # noqa: E402
from pipeline.database import DatabaseService  # noqa: E402
from pipeline.models import DataIngestionLog  # noqa: E402
from pipeline.schemas import (  # noqa: E402
    BlockchainBlockData,
    BlockchainTransactionData,
    CoinMetadataData,
    MarketPriceData,
)

FULL = {"transactions": 1_000_000, "blocks": 100_000, "price_days": 5 * 365, "runs": 100_000}
MINIMUM = {"transactions": 2_000, "blocks": 200, "price_days": 200, "runs": 200}
CHAINS = {"BTC": 0.5, "ETH": 0.3, "DOGE": 0.2}
TOPS = {"BTC": 870_000, "ETH": 21_000_000, "DOGE": 5_400_000}
EXTRA_COINS = ["litecoin", "cardano", "solana", "polkadot", "ripple", "tron", "chainlink"]
BATCH = 50_000
PAGE = 100


# ---------------------------------------------------------------------------------------------- data


def sizes(scale: float) -> dict[str, int]:
    """Row counts at a scale (never below MINIMUM)."""
    return {name: max(int(n * scale), MINIMUM[name]) for name, n in FULL.items()}


def batched(rows: Iterator[Any], n: int = BATCH) -> Iterator[list[Any]]:
    while batch := list(islice(rows, n)):
        yield batch


def _blocks(symbol: str, count: int, now: datetime) -> Iterator[BlockchainBlockData]:
    prefix = "0x" if symbol == "ETH" else ""
    for i in range(count):
        height = TOPS[symbol] - i
        yield BlockchainBlockData.model_construct(
            coin_symbol=symbol, block_id=height, hash=f"{prefix}{height:064x}",
            time=now - timedelta(minutes=10 * i), transaction_count=10, size=1_000_000 + i % 5000,
            fee_total=10_000_000 + i, fee_total_usd=Decimal("12.5"), output_total=None, reward=None,
            difficulty=None, output_total_usd=None, reward_usd=None, gas_used=None, gas_limit=None,
            miner=None,
        )  # fmt: skip


def _transactions(
    symbol: str, blocks: int, per_block: int, now: datetime
) -> Iterator[BlockchainTransactionData]:
    prefix = "0x" if symbol == "ETH" else ""
    for i in range(blocks):
        height = TOPS[symbol] - i
        for n in range(per_block):
            yield BlockchainTransactionData.model_construct(
                coin_symbol=symbol, tx_hash=f"{prefix}{height:054x}{n:010x}", block_id=height,
                source_id=height * 100 + n, time=now - timedelta(minutes=10 * i), fee=2500 + n,
                input_total=None, output_total=2**70 + n, fee_usd=Decimal("1.25"), input_total_usd=None,
                output_total_usd=None, input_count=1, output_count=2, size=250, is_coinbase=n == 0,
                sender=None, recipient=None, value=None, gas_used=None, failed=None,
            )  # fmt: skip


def _prices(coins: list[str], days: int, today: date) -> Iterator[MarketPriceData]:
    for coin in coins:
        for back in range(days, 0, -1):
            yield MarketPriceData.model_construct(
                coin_id=coin, price_date=today - timedelta(days=back), price_usd=Decimal(100 + back % 50),
                volume_usd=Decimal(10_000 + back), market_cap_usd=Decimal(1_000_000 + back),
            )  # fmt: skip


def _runs(count: int, now: datetime) -> Iterator[dict[str, Any]]:
    kinds = [("blockchair", "blocks", "bitcoin"), ("blockchair", "transactions", "ethereum"),
             ("coingecko", "prices", "bitcoin"), ("coingecko", "prices", "dogecoin")]  # fmt: skip
    for i in range(count):
        source, data_type, coin = kinds[i % len(kinds)]
        status = "failed" if i % 20 == 7 else "partial" if i % 13 == 5 else "success"
        started = now - timedelta(minutes=2 * i + 1)
        yield {
            "source": source, "data_type": data_type, "coin": coin, "status": status, "trigger": "schedule",
            "records_fetched": 100, "records_inserted": 90, "requests_made": 2, "started_at": started,
            "finished_at": started + timedelta(seconds=2), "duration_seconds": 2.0,
            "params": {"coin_id": coin},
            "error_class": "RateLimited" if status == "failed" else None,
            "error_message": "HTTP 429 from source" if status == "failed" else None,
            "created_at": started, "updated_at": started,
        }  # fmt: skip


def build(url: str, scale: float) -> tuple[DatabaseService, dict[str, int]]:
    """Create and fill one database; returns the service and the row counts written."""
    db = DatabaseService(url, settings=load_settings(_env_file=None, DATABASE_URL=url, DB_BATCH_SIZE=BATCH))
    db.create_tables()
    n = sizes(scale)
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    today = now.date()
    coins = ["bitcoin", "ethereum", "dogecoin", *EXTRA_COINS]
    db.upsert_coins(
        CoinMetadataData(symbol=c[:5].upper(), name=c.title(), coingecko_id=c) for c in EXTRA_COINS
    )
    for batch in batched(_prices(coins, n["price_days"], today)):
        db.insert_market_prices(batch)
    per_block = max(n["transactions"] // n["blocks"], 1)
    for symbol, share in CHAINS.items():
        count = max(int(n["blocks"] * share), 1)
        for batch in batched(_blocks(symbol, count, now)):
            db.insert_blocks(batch)
        for batch in batched(_transactions(symbol, count, per_block, now)):
            db.insert_transactions(batch)
    with db.session_factory.begin() as session:
        for batch in batched(_runs(n["runs"], now)):
            session.execute(insert(DataIngestionLog), batch)
    if db.dialect == "postgresql":  # what autovacuum does soon after a load (SQLite has no such thing)
        with db.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    stats = db.get_database_stats()
    return db, {
        "transactions": stats.total_transactions,
        "blocks": stats.total_blocks,
        "prices": stats.total_prices,
        "runs": stats.total_runs,
    }


# ---------------------------------------------------------------------------------------------- timing


def repoint(cursor: str, key: list[Any]) -> str:
    """The cursor of the same listing and filters, resuming after `key` instead."""
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    document = json.loads(raw[12:])
    document["k"] = key
    payload = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(pagination._tag(payload) + payload).rstrip(b"=").decode()


def _keys(listing: str, counts: dict[str, int], rng: random.Random, now: datetime) -> list[Any]:
    if listing == "transactions":
        blocks = max(int(counts["blocks"] * CHAINS["BTC"]), 1)
        return [TOPS["BTC"] - rng.randrange(blocks), ""]  # "": from the first hash of that block
    if listing == "prices":
        days = counts["prices"] // 10
        return [(now.date() - timedelta(days=rng.randrange(PAGE, max(days, PAGE + 1)))).toordinal()]
    started = now - timedelta(minutes=2 * rng.randrange(counts["runs"]))
    return [pagination.micros(started), 2**31 - 1]


LISTINGS = {
    "transactions": "/v1/coins/BTC/transactions",
    "prices": "/v1/coins/bitcoin/prices/daily",
    "runs": "/v1/runs",
}


@contextmanager
def api_process(url: str) -> Iterator[str]:
    """`crypto-pipeline api` on the database, in a process of its own (as deployed); yields its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.runtime.cli", "api", "--port", str(port)],
        env=process_env(DATABASE_URL=url, LOG_LEVEL="WARNING"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{base}/openapi.json"), 60, what="the API process")
        yield base
    finally:
        stop(process)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def measure(url: str, counts: dict[str, int], requests: int, seed: int = 7) -> dict[str, list[float]]:
    """Milliseconds per page of each listing, from random depths, over HTTP with keep-alive."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    timings: dict[str, list[float]] = {}
    with api_process(url) as base, httpx.Client(base_url=base, timeout=30) as client:
        for listing, path in LISTINGS.items():
            first = client.get(path, params={"limit": PAGE}).json()
            if len(first["data"]) != PAGE or not first["next_cursor"]:
                raise RuntimeError(f"{listing}: the first page is not full: {first}")
            cursors = [
                repoint(first["next_cursor"], _keys(listing, counts, rng, now)) for _ in range(requests)
            ]
            for cursor in cursors[:20]:  # warm up: connections, statement caches
                client.get(path, params={"limit": PAGE, "cursor": cursor})
            samples = []
            for cursor in cursors:
                started = time.perf_counter()
                response = client.get(path, params={"limit": PAGE, "cursor": cursor})
                samples.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"{listing}: {response.status_code} {response.text}")
            timings[listing] = samples
    return timings


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def run_dialect(dialect: str, scale: float, small: float, requests: int, workdir: Path) -> list[str]:
    lines = []
    results: dict[str, dict[str, list[float]]] = {}
    counts_by_size: dict[str, dict[str, int]] = {}
    for size, factor in (("large", scale), ("small", scale * small)):
        with ExitStack() as stack:
            if dialect == "postgresql":
                url = stack.enter_context(postgres_schema(PG_URL, prefix="bench_api"))
            else:
                url = stack.enter_context(nullcontext(f"sqlite:///{workdir}/{size}.db"))
            started = time.perf_counter()
            db, counts = build(url, factor)
            built = time.perf_counter() - started
            print(f"{dialect} {size}: {counts} built in {built:.0f} s", flush=True)
            db.dispose()
            results[size] = measure(url, counts, requests)
            counts_by_size[size] = counts
    lines.append(
        f"{dialect}: large {counts_by_size['large']['transactions']:,} transactions /"
        f" small {counts_by_size['small']['transactions']:,}"
    )
    lines.append(f"  {'listing':<14}{'size':<7}{'p50 ms':>9}{'p95 ms':>9}")
    for listing in LISTINGS:
        for size in ("large", "small"):
            values = results[size][listing]
            lines.append(
                f"  {listing:<14}{size:<7}{percentile(values, 50):>9.1f}{percentile(values, 95):>9.1f}"
            )
        large, small_ = results["large"][listing], results["small"][listing]
        ratio50 = percentile(large, 50) / percentile(small_, 50)
        ratio95 = percentile(large, 95) / percentile(small_, 95)
        verdict = "ok" if percentile(large, 95) <= 50 and ratio95 <= 1.5 else "MISSED"
        lines.append(f"  {listing:<14}ratio  {ratio50:>9.2f}{ratio95:>9.2f}   {verdict}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale", type=float, default=1.0, help="size of the large database (1 = 1M transactions)"
    )
    parser.add_argument("--small-fraction", type=float, default=0.01, help="the small database, relative")
    parser.add_argument("--requests", type=int, default=300, help="pages timed per listing and size")
    parser.add_argument("--dialects", default="sqlite,postgresql")
    args = parser.parse_args(argv)
    report = []
    with tempfile.TemporaryDirectory(prefix="bench-api-") as workdir:
        for dialect in args.dialects.split(","):
            if dialect == "postgresql" and (reason := postgres_unavailable()):
                report.append(f"postgresql: skipped ({reason})")
                continue
            report += run_dialect(dialect, args.scale, args.small_fraction, args.requests, Path(workdir))
    print("\nREST API pages of 100 rows from random depths (goal: p95 <= 50 ms, ratio <= 1.5)")
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
