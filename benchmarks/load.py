"""Bulk-load benchmark: `DatabaseService.insert_transactions` against raw driver baselines, in one run.

    python benchmarks/load.py --rows 200000 [--postgres-url postgresql://root@127.0.0.1:5432/test]

SQLite baseline: `sqlite3.executemany` of the same rows, already in storage form, with the equivalent
`INSERT ... ON CONFLICT DO UPDATE`, same pragmas, same batch size, one transaction (as one
`insert_transactions` call is). PostgreSQL baseline: psycopg COPY into a temporary table plus one
`INSERT ... SELECT ... ON CONFLICT` per batch, one transaction. Prints rows/s and the ratio for each, plus
the peak memory of a load streamed from a generator (rows are never all held at once).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg

from pipeline.config import load_settings
from pipeline.database import DatabaseService
from pipeline.models import BlockchainTransaction
from pipeline.schemas import BlockchainTransactionData
from pipeline.store.upsert import UpsertSpec

BATCH = 5000
START = datetime(2024, 1, 1, tzinfo=UTC)


def synthetic_transactions(n: int, seed: str = "a") -> Iterator[BlockchainTransactionData]:
    """Ethereum-like rows with wei amounts above 2**64, built lazily."""
    for i in range(n):
        yield BlockchainTransactionData(
            coin_symbol="ETH",
            tx_hash="0x" + f"{seed}{i:063x}"[-64:],
            block_id=20_000_000 + i // 150,
            source_id=i,
            time=START + timedelta(seconds=i),
            fee=21_000 * 30_000_000_000 + i,
            input_total=2**64 + i,
            output_total=2**64 + i,
            fee_usd=Decimal("1.2345"),
            input_total_usd=Decimal("31337.5"),
            output_total_usd=Decimal("31337.5"),
            input_count=1,
            output_count=1,
            size=180,
            sender="0x" + "1" * 40,
            recipient="0x" + "2" * 40,
            value=2**64 + i,
            gas_used=21_000,
            failed=False,
        )


def _fresh_service(url: str, settings_batch: int) -> DatabaseService:
    service = DatabaseService(url, settings=load_settings(DATABASE_URL=url, DB_BATCH_SIZE=settings_batch))
    service.create_tables()
    return service


def bench_service(url: str, rows: list[BlockchainTransactionData]) -> float:
    """Rows per second through insert_transactions (one call: DB_BATCH_SIZE rows per statement group)."""
    service = _fresh_service(url, BATCH)
    started = time.perf_counter()
    result = service.insert_transactions(rows)
    elapsed = time.perf_counter() - started
    assert result.inserted == len(rows), result
    service.dispose()
    return len(rows) / elapsed


def bench_raw_sqlite(path: Path, rows: list[BlockchainTransactionData]) -> float:
    """Rows per second through sqlite3.executemany of storage-form tuples, same statement and pragmas."""
    _fresh_service(f"sqlite:///{path}", BATCH).dispose()
    spec = UpsertSpec.for_table(BlockchainTransaction.__table__)
    tuples = spec.rows(rows, sqlite=True, now=datetime.now(UTC))  # storage form, built untimed
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    statement = spec.sqlite_statement(update=True)
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")  # one transaction for the call, as insert_transactions does
    for i in range(0, len(tuples), BATCH):
        conn.executemany(statement, tuples[i : i + BATCH])
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return len(rows) / elapsed


def bench_raw_postgresql(url: str, rows: list[BlockchainTransactionData]) -> float:
    """Rows per second through psycopg COPY into a staging table and one staged upsert per batch."""
    spec = UpsertSpec.for_table(BlockchainTransaction.__table__)
    columns = ", ".join(spec.columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in spec.data_columns)
    tuples = spec.rows(rows, sqlite=False, now=datetime.now(UTC))
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            for i in range(0, len(tuples), BATCH):
                cur.execute("CREATE TEMP TABLE stage (LIKE blockchain_transactions)")
                with cur.copy(f"COPY stage ({columns}) FROM STDIN") as copy:
                    for row in tuples[i : i + BATCH]:
                        copy.write_row(row)
                cur.execute(
                    f"INSERT INTO blockchain_transactions ({columns}) SELECT {columns} FROM stage "
                    f"ON CONFLICT (coin_symbol, tx_hash) DO UPDATE SET {updates}"
                )
                cur.execute("DROP TABLE stage")
        return len(rows) / (time.perf_counter() - started)


_SCHEMAS: list[str] = []


def _pg_schema_url(base: str) -> str:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    _SCHEMAS.append(schema)
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


def _drop_schemas(base: str) -> None:
    """Drop the schemas this run created, so that repeated runs leave nothing behind in the server."""
    with psycopg.connect(base.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        for schema in _SCHEMAS:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def peak_memory_streamed(url: str, n: int) -> float:
    """Peak traced MiB while loading n rows from a generator."""
    service = _fresh_service(url, BATCH)
    tracemalloc.start()
    service.insert_transactions(synthetic_transactions(n, seed="b"))
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--postgres-url", default="postgresql://root@127.0.0.1:5432/test")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-rows", type=int, default=0, help="also trace memory of a streamed load")
    args = parser.parse_args()

    rows = list(synthetic_transactions(args.rows))
    print(
        f"rows: {len(rows):,}  batch: {BATCH}  repeats: {args.repeat} (median, alternating raw and service)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        raw_runs, our_runs = [], []
        for i in range(args.repeat):
            raw_runs.append(bench_raw_sqlite(Path(tmp) / f"raw{i}.db", rows))
            our_runs.append(bench_service(f"sqlite:///{tmp}/service{i}.db", rows))
        raw, ours = statistics.median(raw_runs), statistics.median(our_runs)
        print(
            f"sqlite      raw executemany {raw:>10,.0f} rows/s   insert_transactions {ours:>10,.0f} rows/s"
            f"   ratio {ours / raw:.2f}"
        )
        if args.memory_rows:
            peak = peak_memory_streamed(f"sqlite:///{tmp}/memory.db", args.memory_rows)
            print(
                f"sqlite      streamed load of {args.memory_rows:,} rows: peak traced memory {peak:.1f} MiB"
            )
    try:
        service_url, raw_url = _pg_schema_url(args.postgres_url), _pg_schema_url(args.postgres_url)
    except psycopg.OperationalError as exc:
        print(f"postgresql  skipped: {exc}")
        return
    try:
        _fresh_service(raw_url, BATCH).dispose()
        raw_pg = bench_raw_postgresql(raw_url, rows)
        ours_pg = bench_service(service_url, rows)
    finally:
        _drop_schemas(args.postgres_url)
    print(
        f"postgresql  raw COPY+upsert {raw_pg:>10,.0f} rows/s   insert_transactions {ours_pg:>10,.0f} rows/s"
        f"   ratio {ours_pg / raw_pg:.2f}"
    )


if __name__ == "__main__":
    main()
