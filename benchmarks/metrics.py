"""Prometheus exporter benchmark: the time of a scrape of `crypto-pipeline metrics` on a database with
1,000,000 transactions, against the same on a 100x smaller one and a bare `SELECT 1`, on SQLite and
PostgreSQL.

    python benchmarks/metrics.py [--scale 1.0] [--small-fraction 0.01] [--scrapes 50]
                                 [--dialects sqlite,postgresql]

The databases are built by `benchmarks/api.py` (1,000,000 transactions in 100,000 blocks of three chains,
100,000 runs, five years of daily prices of ten coins at --scale 1), plus 90 days of hourly price points
of the ten coins (`benchmarks/dashboard.py`'s rows, with their candles), the chains' bookmarks and tips, a
scheduler's heartbeat and the incidents the rules open on all that (`services.incidents.evaluate`), so
every family of the exporter has something to read: freshness, gaps, incidents, heartbeats, budgets.

Each database is served by `crypto-pipeline metrics` in a process of its own, as deployed, and scraped
over HTTP with keep-alive from this one, `--scrapes` times after three warm-up scrapes: a scrape's time
is what Prometheus waits for (the database reads, the text format, HTTP). Printed per dialect and size:
p50 and p95 in ms, the database part the exporter reports (`crypto_pipeline_scrape_duration_seconds`),
and how long the process took from start to its first answer (it sums the run log and finds the gaps
before it listens). The baseline of the same run is the small database's scrape and a `SELECT 1` round
trip through the pipeline's engine. Goal: p95 at most 100 ms on the large database.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import ExitStack, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

warnings.filterwarnings("ignore", category=DeprecationWarning)

from benchmarks.api import EXTRA_COINS, batched, build  # noqa: E402
from benchmarks.dashboard import _points  # noqa: E402
from benchmarks.harness.postgres import PG_URL, postgres_schema, postgres_unavailable  # noqa: E402
from benchmarks.harness.processes import free_port, process_env, stop, wait_for  # noqa: E402
from pipeline.database import DatabaseService  # noqa: E402
from pipeline.services.incidents import evaluate  # noqa: E402

HOURLY_DAYS = 90
GOAL_MS = 100.0


def extend(db: DatabaseService) -> None:
    """What `benchmarks/api.py` leaves out and the exporter reads: hourly points, bookmarks and chain
    tips, a live scheduler, and the incidents the rules open."""
    now = datetime.now(UTC).replace(microsecond=0)
    coins = ["bitcoin", "ethereum", "dogecoin", *EXTRA_COINS]
    for batch in batched(_points(coins, HOURLY_DAYS * 24, now)):
        db.insert_price_points(batch)
    with db.transaction() as conn:
        for coin in db.get_coins():
            if coin.blockchair_chain and (top := db.max_block_height(coin.symbol)) is not None:
                db.set_bookmarks(conn, coin.symbol, block_bookmark=top, chain_tip_height=top + 2)
            db.set_bookmarks(conn, coin.symbol, price_bookmark=now.date() - timedelta(days=1))
    db.beat("benchmark:1:metrics", current_job=None)
    evaluate(db, db.settings)  # the failed runs of the log open unit incidents
    if db.dialect == "postgresql":
        with db.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))


def select_one_ms(db: DatabaseService, repeat: int = 200) -> float:
    """The median round trip of `SELECT 1` through the pipeline's engine (a pooled connection)."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1")).scalar()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _reported(body: str) -> float:
    for line in body.splitlines():
        if line.startswith("crypto_pipeline_scrape_duration_seconds "):
            return float(line.split()[1]) * 1000
    raise RuntimeError("no crypto_pipeline_scrape_duration_seconds in the scrape")


def scrape_times(url: str, scrapes: int) -> dict[str, object]:
    """Start `crypto-pipeline metrics` on the database, scrape it; times in ms."""
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.runtime.cli", "metrics", "--port", str(port)],
        env=process_env(DATABASE_URL=url, LOG_LEVEL="WARNING"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for(lambda: _answers(metrics), 300, interval=0.05, what="the exporter")
        ready = (time.perf_counter() - started) * 1000
        totals, reported = [], []
        with httpx.Client(timeout=30) as client:
            for _ in range(3):
                client.get(metrics)
            for _ in range(scrapes):
                begun = time.perf_counter()
                response = client.get(metrics)
                totals.append((time.perf_counter() - begun) * 1000)
                if "crypto_pipeline_database_up 1.0" not in response.text:
                    raise RuntimeError(f"the exporter could not read the database:\n{response.text[:2000]}")
                reported.append(_reported(response.text))
        return {"ready": ready, "totals": totals, "reported": reported, "bytes": len(response.content)}
    finally:
        stop(process)


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def run_dialect(dialect: str, scale: float, small: float, scrapes: int, workdir: Path) -> list[str]:
    lines = [f"{dialect}:"]
    lines.append(
        f"  {'size':<7}{'transactions':>13}{'runs':>9}{'p50 ms':>9}{'p95 ms':>9}{'db p50':>9}{'start s':>9}"
    )
    verdict = ""
    for size, factor in (("large", scale), ("small", scale * small)):
        with ExitStack() as stack:
            if dialect == "postgresql":
                url = stack.enter_context(postgres_schema(PG_URL, prefix="bench_metrics"))
            else:
                url = stack.enter_context(nullcontext(f"sqlite:///{workdir}/{size}.db"))
            begun = time.perf_counter()
            db, counts = build(url, factor)
            extend(db)
            print(f"{dialect} {size}: {counts} built in {time.perf_counter() - begun:.0f} s", flush=True)
            baseline = select_one_ms(db)
            db.dispose()
            result = scrape_times(url, scrapes)
        totals = result["totals"]
        reported = result["reported"]
        assert isinstance(totals, list)
        assert isinstance(reported, list)
        p95 = percentile(totals, 95)
        lines.append(
            f"  {size:<7}{counts['transactions']:>13,}{counts['runs']:>9,}{percentile(totals, 50):>9.1f}"
            f"{p95:>9.1f}{statistics.median(reported):>9.1f}{float(str(result['ready'])) / 1000:>9.1f}"
        )
        if size == "large":
            verdict = "ok" if p95 <= GOAL_MS else "MISSED"
            lines.append(f"  SELECT 1 round trip: {baseline:.2f} ms; scrape {result['bytes']:,} bytes")
    lines.append(f"  goal p95 <= {GOAL_MS:.0f} ms on the large database: {verdict}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="the large database (1 = 1M transactions)")
    parser.add_argument("--small-fraction", type=float, default=0.01, help="the small database, relative")
    parser.add_argument("--scrapes", type=int, default=50, help="scrapes timed per database")
    parser.add_argument("--dialects", default="sqlite,postgresql")
    args = parser.parse_args(argv)
    report = []
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as workdir:
        for dialect in args.dialects.split(","):
            if dialect == "postgresql" and (reason := postgres_unavailable()):
                report.append(f"postgresql: skipped ({reason})")
                continue
            report += run_dialect(dialect, args.scale, args.small_fraction, args.scrapes, Path(workdir))
    print(
        f"\nScrapes of crypto-pipeline metrics over HTTP, {args.scrapes} per database (goal: p95 <= 100 ms)"
    )
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
