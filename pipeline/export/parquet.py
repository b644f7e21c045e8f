"""The Parquet types of the exported columns, and the atomic write of one partition's file.

Types, chosen so that every value survives exactly and DuckDB reads every column:

- Native amounts (satoshi, wei: `fee`, `value`, `output_total`, `balance`, `fees_native` ...): decimal
  **text** of the integer. The schema allows them up to 10**76; Parquet's DECIMAL(76, 0) would hold them,
  but DuckDB reads a decimal wider than 38 digits as DOUBLE (10**75 came back as 1e+75), and DECIMAL(38, 0)
  stops at 10**38. In DuckDB, `CAST(fee AS HUGEINT)` (or `DECIMAL(38, 0)`) is exact up to 1.7e38, which
  holds every real amount (all the ether there is, in wei, is about 1.2e26).
- Exact decimals with free scale (prices, USD values, volumes, market caps, difficulty, candle prices,
  closes, peaks, returns and volatilities): canonical decimal **text** (no exponent, no trailing zeros).
  A price is below 1e20 but may be 1.2345678901234567e-12 (28 decimals): no DECIMAL(38, s) holds both
  ends, and DECIMAL(38, 18) would round such a price. `CAST(price_usd AS DECIMAL(38, 18))` is exact for
  values with at most 18 decimals (the cast rounds beyond), `::DOUBLE` is approximate.
- Exact decimals whose scale is fixed by construction and whose size the schema bounds (FIXED_DECIMALS):
  DECIMAL(38, s), which DuckDB sums natively; no value can fail to fit, and one that did would stop the
  export (pyarrow refuses to round) rather than lose a digit.
- Timestamps: TIMESTAMP(us, UTC); dates: DATE; integers, booleans and floats as themselves; JSON as text.

Each string column that holds a number carries Arrow field metadata `crypto_pipeline.kind`
(`amount` or `decimal`), so a reader can tell them from names and hashes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from pipeline.store.export_reads import ColumnKind, ExportTable, column_kinds

# (table, column): (precision, scale) of the exact decimals written as Parquet DECIMAL.
FIXED_DECIMALS: dict[tuple[str, str], tuple[int, int]] = {
    # A 1h candle's volume is a 24 h volume (< 1e20) / 24 quantized to 1e-8; larger candles sum at most
    # 168 of them: below 1e21 with 8 decimals.
    ("candles", "volume"): (38, 8),
    # close / running peak - 1, in [-1, 0], quantized to 1e-12.
    ("price_stats", "drawdown"): (38, 12),
}
KIND_KEY = b"crypto_pipeline.kind"
_ARROW_TYPES: dict[ColumnKind, Any] = {
    "text": pa.string(),
    "json": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "bool": pa.bool_(),
    "float": pa.float64(),
    "amount": pa.string(),
    "decimal": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
}
COMPRESSION = "zstd"


def arrow_schema(spec: ExportTable) -> Any:
    """The Arrow schema of a table's files (a `pyarrow.Schema`)."""
    fields = []
    for name, kind in column_kinds(spec):
        fixed = FIXED_DECIMALS.get((spec.name, name))
        if fixed is not None:
            fields.append(pa.field(name, pa.decimal128(*fixed)))
        elif kind in ("amount", "decimal"):
            fields.append(pa.field(name, pa.string(), metadata={KIND_KEY: kind.encode()}))
        else:
            fields.append(pa.field(name, _ARROW_TYPES[kind]))
    return pa.schema(fields)


def to_batch(schema: Any, columns: dict[str, list[Any]], *, where: str) -> Any:
    """One chunk of portable values (`ExportReadMixin.partition_chunks`) as an Arrow record batch."""
    arrays = []
    for field in schema:
        values = columns[field.name]
        if pa.types.is_timestamp(field.type):  # epoch microseconds
            arrays.append(pa.array(values, pa.int64()).cast(field.type))
        elif pa.types.is_decimal(field.type):  # exact text; the cast refuses to round
            try:
                arrays.append(pa.array(values, pa.string()).cast(field.type))
            except pa.ArrowInvalid as exc:
                msg = f"{where}: a value of {field.name} does not fit {field.type} exactly ({exc})"
                raise ValueError(msg) from None
        else:
            arrays.append(pa.array(values, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


@dataclass(frozen=True)
class WrittenFile:
    """What went into one partition's file."""

    rows: int
    bytes: int
    sha256: str
    key_min: Any
    key_max: Any
    last_updated: datetime | None


def write_partition(
    path: Path, schema: Any, batches: Iterable[Any], *, key_column: str, row_group_rows: int
) -> WrittenFile:
    """Write the batches to `path` atomically: into a hidden temporary file beside it, flushed to disk,
    then renamed over `path` (and the folder flushed), so a reader sees the old file or the new one and
    an interruption leaves no half-written partition. Batches are gathered into row groups of about
    `row_group_rows` rows; memory holds one row group."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    rows, key_min, key_max, last_updated = 0, None, None, None
    try:
        with pq.ParquetWriter(temporary, schema, compression=COMPRESSION) as writer:
            pending: list[Any] = []
            pending_rows = 0
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                rows += batch.num_rows
                bounds = pc.min_max(batch.column(key_column)).as_py()
                key_min = _lower(key_min, bounds["min"])
                key_max = _upper(key_max, bounds["max"])
                last_updated = _upper(last_updated, pc.max(batch.column("updated_at")).as_py())
                pending.append(batch)
                pending_rows += batch.num_rows
                if pending_rows >= row_group_rows:
                    writer.write_table(pa.Table.from_batches(pending), row_group_size=pending_rows)
                    pending, pending_rows = [], 0
            if pending:
                writer.write_table(pa.Table.from_batches(pending), row_group_size=pending_rows)
        digest, size = _sync_and_hash(temporary)
        os.replace(temporary, path)
        sync_folder(path.parent)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return WrittenFile(rows, size, digest, key_min, key_max, last_updated)


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _sync_and_hash(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
        os.fsync(handle.fileno())
    return digest.hexdigest(), size


def sync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _lower(current: Any, value: Any) -> Any:
    return value if current is None or (value is not None and value < current) else current


def _upper(current: Any, value: Any) -> Any:
    return value if current is None or (value is not None and value > current) else current
