"""Constraint refusals benchmark: a bulk load with planted bad rows against a clean load of the same size.

    python benchmarks/reliability_constraints.py [--rows 100000] [--violations 150] [--repeat 3]
        [--postgres-url postgresql://root@127.0.0.1:5432/test]

Loads `--rows` blocks through `DatabaseService.insert_blocks` (one call, DB_BATCH_SIZE rows per batch,
models validated beforehand so that only the write path is timed) on SQLite and on PostgreSQL, once
clean and once with `--violations` planted bad rows, spread over the load in three kinds:

- `stored`: the hash of a block already in the table (unique key, found by the database: bisection);
- `batch`: a pair of heights in one batch claiming one hash (found before the write; both rejected);
- `check`: a transaction count above a ceiling a DBA added as a CHECK constraint (bisection).

Prints rows stored and rejected (expected and actual, per kind) and the time against the clean load
(median of `--repeat` alternating runs). Exits 1 if a count is not the expected one.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from sqlalchemy import func, select

from pipeline.config import load_settings
from pipeline.database import DatabaseService
from pipeline.models import BlockchainBlock
from pipeline.schemas import BlockchainBlockData

BATCH = 5000
START = datetime(2020, 1, 1, tzinfo=UTC)
HOLDERS = 1000  # blocks stored before each load, far above the loaded heights
HOLDER_BASE = 10_000_000
CEILING = 1_000_000  # the CHECK ceiling on transaction_count
KINDS = ("stored", "batch", "check")


def block(height: int, hash_number: int | None = None, transaction_count: int = 2500) -> BlockchainBlockData:
    """A valid Bitcoin block (models are built up front: the schema is not what is measured)."""
    return BlockchainBlockData(
        coin_symbol="BTC",
        block_id=height,
        hash=f"{height if hash_number is None else hash_number:064x}",
        time=START + timedelta(minutes=10 * (height % 200_000)),
        transaction_count=transaction_count,
        size=1_500_000,
        fee_total=12_345_678 + height,
        reward=312_500_000,
        output_total=10**12 + height,
    )


@dataclass
class Load:
    """The rows of one load, and how many rejects of each kind it must give."""

    rows: list[BlockchainBlockData]
    expected: Counter[str]


def clean_load(n: int) -> Load:
    return Load([block(h) for h in range(n)], Counter())


def planted_load(n: int, violations: int, seed: int = 7) -> Load:
    """n blocks with `violations` bad rows (a `batch` pair counts as one violation, two rejects)."""
    rows = [block(h) for h in range(n)]
    # Positions away from batch edges, so that a `batch` pair always shares one batch.
    candidates = [p for p in range(n - 1) if p % BATCH not in (0, BATCH - 1) and (p + 1) % BATCH != 0]
    positions = sorted(random.Random(seed).sample(candidates[::3], violations))  # [::3]: pairs never touch
    expected: Counter[str] = Counter()
    for i, p in enumerate(positions):
        kind = KINDS[i % len(KINDS)]
        if kind == "stored":
            rows[p] = block(p, hash_number=HOLDER_BASE + i % HOLDERS)
            expected["stored"] += 1
        elif kind == "batch":
            rows[p + 1] = block(p + 1, hash_number=p)
            expected["batch"] += 2
        else:
            rows[p] = block(p, transaction_count=CEILING * 2)
            expected["check"] += 1
    return Load(rows, expected)


def kind_of(reason: str) -> str:
    if "in the same batch" in reason:
        return "batch"
    if "is already stored" in reason:
        return "stored"
    return "check" if "ceiling" in reason else "other"


def fresh_service(url: str) -> DatabaseService:
    """A migrated database with the CHECK ceiling and the holder blocks."""
    service = DatabaseService(url, settings=load_settings(DATABASE_URL=url, DB_BATCH_SIZE=BATCH))
    service.create_tables()
    with service.transaction() as conn:
        clause = f"CONSTRAINT tx_ceiling CHECK (transaction_count < {CEILING})"
        if service.dialect == "postgresql":
            conn.exec_driver_sql(f"ALTER TABLE blockchain_blocks ADD {clause}")
        else:  # SQLite has no ADD CONSTRAINT: rebuild the (empty) table with it
            create = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'blockchain_blocks'"
            ).scalar_one()
            indexes = list(
                conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE type = 'index' "
                    "AND tbl_name = 'blockchain_blocks' AND sql IS NOT NULL"
                ).scalars()
            )
            conn.exec_driver_sql("DROP TABLE blockchain_blocks")
            conn.exec_driver_sql(f"{create.rstrip().removesuffix(')')}, {clause})")
            for index in indexes:
                conn.exec_driver_sql(index)
    service.insert_blocks(block(HOLDER_BASE + j, hash_number=HOLDER_BASE + j) for j in range(HOLDERS))
    return service


def stored_in_range(service: DatabaseService, n: int) -> int:
    with service.engine.connect() as conn:
        return conn.scalar(
            select(func.count()).select_from(BlockchainBlock).where(BlockchainBlock.block_id < n)
        )


@dataclass
class Outcome:
    seconds: float
    stored: int
    rejected: Counter[str]


def run(url: str, load: Load) -> Outcome:
    service = fresh_service(url)
    try:
        started = time.perf_counter()
        result = service.insert_blocks(load.rows)
        seconds = time.perf_counter() - started
        return Outcome(
            seconds,
            stored_in_range(service, len(load.rows)),
            Counter(kind_of(r.reason) for r in result.rejects),
        )
    finally:
        service.dispose()


def pg_schema_url(base: str) -> tuple[str, str]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", schema


def drop_schemas(base: str, schemas: list[str]) -> None:
    with psycopg.connect(base.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        for schema in schemas:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def bench(dialect: str, urls: list[tuple[str, str]], clean: Load, planted: Load) -> bool:
    """Alternate clean and planted loads (each on its own fresh database, `urls` gives one pair per
    repeat); print the medians; True when every count is as expected."""
    clean_runs, planted_runs = [], []
    for i, (clean_url, planted_url) in enumerate(urls):
        order = [(clean, clean_url, clean_runs), (planted, planted_url, planted_runs)]
        for load, url, runs in order if i % 2 == 0 else order[::-1]:
            runs.append(run(url, load))
    ok = True
    for name, load, runs in (("clean", clean, clean_runs), ("planted", planted, planted_runs)):
        seconds = statistics.median(r.seconds for r in runs)
        expected_rejected = sum(load.expected.values())
        outcome = runs[-1]
        good = all(
            r.rejected == load.expected and r.stored == len(load.rows) - expected_rejected for r in runs
        )
        ok &= good
        if name == "clean":
            baseline = seconds
        kinds = " ".join(f"{k}={outcome.rejected.get(k, 0)}/{load.expected.get(k, 0)}" for k in KINDS)
        rejected = sum(outcome.rejected.values())
        print(
            f"{dialect:<10} {name:<8} {len(load.rows):>8,} {outcome.stored:>8,} {rejected:>8,}"
            f" {seconds:>8.2f} {len(load.rows) / seconds:>9,.0f} {seconds / baseline:>7.2f}x  {kinds}"
            f"{'' if good else '  MISMATCH'}"
        )
    return ok


def main() -> None:
    """Run both dialects and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--violations", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres-url", default="postgresql://root@127.0.0.1:5432/test")
    args = parser.parse_args()

    clean, planted = clean_load(args.rows), planted_load(args.rows, args.violations)
    print(
        f"blocks: {args.rows:,}  batch: {BATCH}  violations: {args.violations} "
        f"({', '.join(f'{k} {v}' for k, v in planted.expected.items())} rejects expected)  "
        f"repeats: {args.repeat} (median, alternating)"
    )
    print(
        f"{'dialect':<10} {'load':<8} {'rows':>8} {'stored':>8} {'rejected':>8} {'seconds':>8} {'rows/s':>9}"
        f" {'vs clean':>8}  rejects by kind (actual/expected)"
    )
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        urls = [
            (f"sqlite:///{tmp}/clean{i}.db", f"sqlite:///{tmp}/planted{i}.db") for i in range(args.repeat)
        ]
        ok &= bench("sqlite", urls, clean, planted)
    try:
        pairs = [
            (pg_schema_url(args.postgres_url), pg_schema_url(args.postgres_url)) for _ in range(args.repeat)
        ]
    except psycopg.OperationalError as exc:
        print(f"postgresql skipped: {exc}")
    else:
        try:
            ok &= bench("postgresql", [(a[0], b[0]) for a, b in pairs], clean, planted)
        finally:
            drop_schemas(args.postgres_url, [s for a, b in pairs for s in (a[1], b[1])])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
