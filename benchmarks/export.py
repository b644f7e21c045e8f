"""Parquet export benchmark: a full export, a rerun with nothing changed and one after a small change,
against a baseline measured in the same run.

    python benchmarks/export.py [--rows 1000000] [--workdir DIR]

A SQLite database of `--rows` Ethereum-like transactions (wei amounts above 2**64, `benchmarks/load.py`'s
rows) is built once per work folder. The baseline is the least work any exporter of that table must do:
read every row with the plain `sqlite3` module and write one Parquet file of text columns with pyarrow.
The export does more (partitions by coin and height range, exact decimal text, checksums, a manifest,
atomic renames), so the figure to watch is the ratio to the baseline, not the seconds. Peak RSS and a
DuckDB query over the export (count and exact sums) close the report.
"""

from __future__ import annotations

import argparse
import resource
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from benchmarks.load import synthetic_transactions  # noqa: E402
from pipeline.config import load_settings  # noqa: E402
from pipeline.database import DatabaseService  # noqa: E402
from pipeline.export.exporter import export_parquet  # noqa: E402


def baseline(db_file: Path, out: Path) -> float:
    """Seconds to read the transactions with sqlite3 and write them as one Parquet file of text."""
    start = time.perf_counter()
    conn = sqlite3.connect(db_file)
    cursor = conn.execute("SELECT * FROM blockchain_transactions")
    names = [d[0] for d in cursor.description]
    writer: pq.ParquetWriter | None = None
    while rows := cursor.fetchmany(50_000):
        columns = list(zip(*rows, strict=True))
        batch = pa.table(
            {
                n: pa.array([None if v is None else str(v) for v in c])
                for n, c in zip(names, columns, strict=True)
            }
        )
        writer = writer or pq.ParquetWriter(out / "baseline.parquet", batch.schema)
        writer.write_table(batch)
    if writer is not None:
        writer.close()
    conn.close()
    return time.perf_counter() - start


def main() -> None:
    """Build (once), export three times, compare with the baseline, query with DuckDB."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "export-bench")
    args = parser.parse_args()
    work = args.workdir / str(args.rows)
    work.mkdir(parents=True, exist_ok=True)
    db_file = work / "bench.db"
    url = f"sqlite:///{db_file}"
    db = DatabaseService(url, settings=load_settings(DATABASE_URL=url))
    if not (work / "built").exists():
        db.create_tables()
        start = time.perf_counter()
        db.insert_transactions(synthetic_transactions(args.rows))
        (work / "built").touch()
        print(f"built {args.rows:,} transactions in {time.perf_counter() - start:.1f} s")
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    raw = work / "raw"
    shutil.rmtree(raw, ignore_errors=True)
    raw.mkdir()
    base = baseline(db_file, raw)
    print(f"baseline (sqlite3 read + one pyarrow file): {base:.2f} s, {args.rows / base:,.0f} rows/s")
    for label in ("full export", "rerun, nothing changed"):
        result = export_parquet(db, out, tables=["transactions"], progress=False)
        rate = result.rows_written / result.seconds if result.rows_written else 0
        print(
            f"{label}: {result.files_written} files, {result.rows_written:,} rows in {result.seconds:.2f} s"
            f" ({rate:,.0f} rows/s, {result.seconds / base:.2f} x baseline)"
        )
    changed = [
        row.model_copy(update={"block_id": 20_003_000, "tx_hash": f"0x{secrets.token_hex(32)}"})
        for row in synthetic_transactions(10)
    ]
    db.insert_transactions(changed)
    result = export_parquet(db, out, tables=["transactions"], progress=False)
    written = f"{result.files_written} file(s), {result.rows_written:,} rows"
    print(f"after 10 new rows: {written} in {result.seconds:.2f} s")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    start = time.perf_counter()
    ((count, fees),) = duckdb.sql(
        f"SELECT count(*), sum(CAST(fee AS HUGEINT)) FROM read_parquet('{out}/transactions/**/*.parquet')"
    ).fetchall()
    print(f"DuckDB over the export: {count:,} rows, fee sum {fees} in {time.perf_counter() - start:.2f} s")
    db.dispose()


if __name__ == "__main__":
    main()
