"""Dashboard scaling benchmark: each page's first render on a large and on a 1% database, in one run.

    python benchmarks/dashboard.py [--scale 1.0] [--small-fraction 0.01] [--repeat 3] [--workdir DIR]

At --scale 1 the large SQLite database holds 1,000,000 transactions, 100,000 blocks (three chains, one
block every 10 minutes, ten transactions each), five years of daily prices and a year of hourly points
(with their candles) for 10 coins and 20,000 ingestion runs (one every 2 minutes); the small one holds
`--small-fraction` of every count. Rows are
generated as validated-model instances (`model_construct`) and written through `DatabaseService.insert_*`
in large batches; the runs go in through `session_factory.begin()`.

For each page the first full render is timed: a new `AppTest` runs the app, both Streamlit caches are
cleared (cold data cache, new engine), then `switch_page(...).run()` is the timed render (the overview is
the default page, so for it the first `run()` itself is timed). Small and large renders alternate,
`--repeat` times (default 5: timings on a small machine are noisy); the median is reported with the
ratio large/small (target: at most 1.5).

Then every query of `pipeline.store.queries` (and the `DatabaseService` and `pipeline.store.coverage`
reads the dashboard calls) is run once on the large database with its statements captured, and `EXPLAIN
QUERY PLAN` is printed for each; a full scan of a large table (`SCAN <table>` without an index) is flagged.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import get_settings, load_settings  # noqa: E402
from pipeline.database import DatabaseService  # noqa: E402
from pipeline.models import DataIngestionLog  # noqa: E402
from pipeline.schemas import (  # noqa: E402
    BlockchainBlockData,
    BlockchainTransactionData,
    CoinMetadataData,
    MarketPriceData,
    PricePointData,
)
from pipeline.store import coverage, queries  # noqa: E402

FULL = {
    "transactions": 1_000_000,
    "blocks": 100_000,
    "price_days": 5 * 365,
    "runs": 20_000,
    # A year of hourly points for 10 coins (87,600): their candles are what the Prices page reads.
    "price_hours": 365 * 24,
}
CHAINS = {"BTC": 0.5, "ETH": 0.3, "DOGE": 0.2}  # share of the blocks
EXTRA_COINS = ["litecoin", "cardano", "solana", "polkadot", "ripple", "tron", "chainlink"]
PAGES = {
    "overview": None,
    "prices": "app_pages/prices.py",
    "blocks": "app_pages/blocks.py",
    "runs": "app_pages/runs.py",
    "database": "app_pages/database.py",
    "coverage": "app_pages/coverage.py",
}
BATCH = 50_000
FULL_SCAN = re.compile(r"\bSCAN (\w+)(.*)")


# ---------------------------------------------------------------------------------------------- data


def sizes(scale: float) -> dict[str, int]:
    """Row counts at a scale (at least one of each)."""
    return {name: max(int(n * scale), 1) for name, n in FULL.items()}


def batched(rows: Iterator[Any], n: int = BATCH) -> Iterator[list[Any]]:
    while batch := list(islice(rows, n)):
        yield batch


def _blocks(symbol: str, count: int, now: datetime) -> Iterator[BlockchainBlockData]:
    top = {"BTC": 870_000, "ETH": 21_000_000, "DOGE": 5_400_000}[symbol]
    prefix = "0x" if symbol == "ETH" else ""
    for i in range(count):
        height = top - i
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
    top = {"BTC": 870_000, "ETH": 21_000_000, "DOGE": 5_400_000}[symbol]
    prefix = "0x" if symbol == "ETH" else ""
    for i in range(blocks):
        height = top - i
        for n in range(per_block):
            yield BlockchainTransactionData.model_construct(
                coin_symbol=symbol, tx_hash=f"{prefix}{height:054x}{n:010x}", block_id=height,
                source_id=height * 100 + n, time=now - timedelta(minutes=10 * i), fee=2500 + n,
                input_total=None, output_total=100_000_000, fee_usd=Decimal("1.25"), input_total_usd=None,
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


def _points(coins: list[str], hours: int, now: datetime) -> Iterator[PricePointData]:
    top = now.replace(minute=0, second=0)
    for coin in coins:
        for back in range(hours, 0, -1):
            yield PricePointData.model_construct(
                coin_id=coin, quote="usd", ts=top - timedelta(hours=back), price=Decimal(100 + back % 97),
                volume_24h=Decimal(10_000 + back), market_cap=None, sampling="1h",
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


def build_database(path: Path, scale: float) -> dict[str, int]:
    """Create and fill one SQLite database; returns the row counts written."""
    url = f"sqlite:///{path}"
    db = DatabaseService(url, settings=load_settings(DATABASE_URL=url, DB_BATCH_SIZE=BATCH))
    db.create_tables()
    n = sizes(scale)
    now = datetime.now(UTC).replace(microsecond=0)
    today = now.date()
    coins = ["bitcoin", "ethereum", "dogecoin", *EXTRA_COINS]
    db.upsert_coins(
        CoinMetadataData(symbol=c[:5].upper(), name=c.title(), coingecko_id=c) for c in EXTRA_COINS
    )
    for batch in batched(_prices(coins, max(n["price_days"], 2), today)):
        db.insert_market_prices(batch)
    for batch in batched(_points(coins, max(n["price_hours"], 24), now)):
        db.insert_price_points(batch)  # candles are built as the points are stored
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
    with db.transaction() as conn:
        for symbol in CHAINS:
            top = db.max_block_height(symbol)
            db.set_bookmarks(conn, symbol, block_bookmark=top, chain_tip_height=top)
            db.set_bookmarks(conn, symbol, price_bookmark=today - timedelta(days=1))
    db.beat("benchmark:1", started_at=now, current_job=None)
    counts = queries.table_row_counts(db)
    db.dispose()
    return counts


# ---------------------------------------------------------------------------------------------- rendering


def render_ms(database_url: str, page: str) -> float:
    """Milliseconds of one page's first full render (cold caches) under AppTest."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["DATABASE_URL"] = database_url
    get_settings.cache_clear()
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    gc.collect()
    started = time.perf_counter()
    at.run()
    if PAGES[page]:
        st.cache_data.clear()
        st.cache_resource.clear()
        started = time.perf_counter()
        at.switch_page(PAGES[page]).run()
    elapsed = (time.perf_counter() - started) * 1000
    if at.exception:
        raise RuntimeError(f"{page} raised: {at.exception[0].value}")
    return elapsed


def benchmark_pages(small_url: str, large_url: str, repeat: int) -> list[tuple[str, float, float]]:
    """Median first-render time per page on each database (renders alternate small/large)."""
    render_ms(small_url, "overview")  # warm-up: imports, plotly templates
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(repeat):
        for page in PAGES:
            for label, url in (("small", small_url), ("large", large_url)):
                times.setdefault((page, label), []).append(render_ms(url, page))
    return [
        (page, statistics.median(times[(page, "small")]), statistics.median(times[(page, "large")]))
        for page in PAGES
    ]


# ---------------------------------------------------------------------------------------------- plans


def view_calls(db: DatabaseService) -> list[tuple[str, Callable[[], Any]]]:
    """Every query the dashboard runs, with the arguments its default views use."""
    today = datetime.now(UTC).date()
    since = datetime.now(UTC) - timedelta(hours=24)
    coins = ["bitcoin", "ethereum", "dogecoin"]
    d90, d30 = today - timedelta(days=89), today - timedelta(days=29)
    return [
        ("queries.prices_frame", lambda: queries.prices_frame(db, coins, d90, today)),
        ("queries.price_coverage", lambda: queries.price_coverage(db, coins, d90, today)),
        ("queries.price_bounds", lambda: queries.price_bounds(db, coins)),
        ("queries.date_coverage", lambda: queries.date_coverage(db)),
        ("queries.blocks_per_day", lambda: queries.blocks_per_day(db, "BTC", d30, today)),
        ("queries.transactions_per_day", lambda: queries.transactions_per_day(db, "BTC", d30, today)),
        ("queries.latest_blocks", lambda: queries.latest_blocks(db, "BTC", 100)),
        ("queries.block_transactions", lambda: queries.block_transactions(db, "BTC", 870_000)),
        ("queries.addresses", lambda: queries.addresses(db, "BTC")),
        ("queries.height_coverage", lambda: queries.height_coverage(db)),
        ("queries.run_facets", lambda: queries.run_facets(db)),
        ("queries.runs_table", lambda: queries.runs_table(db, start=d30, end=today)),
        ("queries.runs_table(failed)",
         lambda: queries.runs_table(db, statuses=["failed"], start=d30, end=today)),
        ("queries.runs_table(unit)",
         lambda: queries.runs_table(db, sources=["coingecko"], data_types=["prices"],
                                    coins=["bitcoin"], start=d30, end=today)),
        ("queries.runs_by_status", lambda: queries.runs_by_status(db, since)),
        ("queries.runs_per_hour", lambda: queries.runs_per_hour(db, since)),
        ("queries.latest_failures", lambda: queries.latest_failures(db)),
        ("queries.run_log_per_day (log volume and growth)", lambda: queries.run_log_per_day(db, d90)),
        ("queries.rows_created_per_day (on request only)", lambda: queries.rows_created_per_day(db, d90)),
        ("queries.table_row_estimates", lambda: queries.table_row_estimates(db)),
        ("coverage.height_islands (coverage page, per chain)", lambda: coverage.height_islands(db, "BTC")),
        ("coverage.price_run_outcomes (coverage page, per coin)",
         lambda: coverage.price_run_outcomes(db, "bitcoin", today, today, ("prices", "price_by_date"))),
        ("coverage.price_day_ranges (coverage page, per coin)",
         lambda: coverage.price_day_ranges(db, "bitcoin", today - timedelta(days=364), today)),
        ("db.transaction_deficits (coverage page, per chain)",
         lambda: db.transaction_deficits("BTC", 869_995, 870_000)),
        ("queries.open_requests", lambda: queries.open_requests(db, [1, 2, 3])),
        ("db.get_workers", db.get_workers),
        ("db.get_coins", db.get_coins),
        ("db.get_run", lambda: db.get_run(1)),
        ("db.get_child_runs", lambda: db.get_child_runs(1)),
        ("db.latest_request_for", lambda: db.latest_request_for(1)),
    ]  # fmt: skip


def explain_all(database_url: str) -> list[str]:
    """Print each query's plan; return the flagged full scans of large tables."""
    db = DatabaseService(database_url, settings=load_settings(DATABASE_URL=database_url))
    captured: list[tuple[str, Any]] = []

    @event.listens_for(db.engine, "before_cursor_execute")
    def _capture(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
    ) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            captured.append((statement, parameters))

    flagged = []
    for name, call in view_calls(db):
        captured.clear()
        started = time.perf_counter()
        call()
        ms = (time.perf_counter() - started) * 1000
        print(f"\n-- {name}  ({ms:.1f} ms)")
        statements = list(captured)
        for statement, parameters in statements:
            with db.engine.connect() as conn:
                plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            for row in plan:
                detail = row[-1]
                match = FULL_SCAN.search(detail)
                bad = bool(match and match.group(1) in queries.LARGE_TABLES and "INDEX" not in match.group(2))
                print(f"   {'FULL SCAN ->' if bad else '           '} {detail}")
                if bad:
                    flagged.append(f"{name}: {detail}")
    db.dispose()
    return flagged


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="size of the large database (1 = full)")
    parser.add_argument("--small-fraction", type=float, default=0.01, help="small database, relative")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the databases here")
    parser.add_argument("--reuse", action="store_true", help="reuse databases already in --workdir")
    args = parser.parse_args(argv)

    os.chdir(ROOT)  # AppTest reads .streamlit/config.toml from the working directory
    for name in ("SIMULATED_DATA", "DASHBOARD_READ_ONLY", "COINS"):
        os.environ.pop(name, None)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    dbs = {}
    for label, scale in (("small", args.scale * args.small_fraction), ("large", args.scale)):
        path = work / f"{label}.db"
        dbs[label] = f"sqlite:///{path}"
        if args.reuse and path.exists():
            print(f"{label} database: reusing {path}")
            continue
        if path.exists():
            path.unlink()
        started = time.perf_counter()
        counts = build_database(path, scale)
        wanted = ("blockchain_transactions", "blockchain_blocks", "market_prices", "data_ingestion_logs")
        summary = ", ".join(f"{t}={counts[t]:,}" for t in wanted)
        took, megabytes = time.perf_counter() - started, path.stat().st_size / 1e6
        print(f"{label} database ({took:.1f} s, {megabytes:.0f} MB): {summary}")

    rows = benchmark_pages(dbs["small"], dbs["large"], args.repeat)
    print(f"\nfirst full render, median of {args.repeat} (target: large <= 1.5 x small)")
    print(f"{'page':<10} {'small ms':>10} {'large ms':>10} {'ratio':>7}")
    worst = 0.0
    for page, small, large in rows:
        ratio = large / small
        worst = max(worst, ratio)
        note = "" if ratio <= 1.5 else "  <-- over 1.5"
        print(f"{page:<10} {small:>10.0f} {large:>10.0f} {ratio:>7.2f}{note}")

    print("\nEXPLAIN QUERY PLAN on the large database")
    flagged = explain_all(dbs["large"])
    print("\nfull scans of large tables:" if flagged else "\nno full scan of a large table")
    for line in flagged:
        print(f"  {line}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if worst <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
