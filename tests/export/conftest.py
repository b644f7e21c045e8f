"""A small database with every exported table filled (amounts beyond 2**64 and up to 10**76 - 1, prices
with 28 decimals, two height ranges, two months), and helpers to compare an export with the database."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from pipeline.database import DatabaseService
from pipeline.export import manifest as manifest_file
from pipeline.export.parquet import sha256_of
from pipeline.store.export_reads import EXPORT_TABLES
from tests.support.factories import fake_hash, finished_run

BLOCK_TIME = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
BTC_HEIGHTS = [100, 101, 102, 103, 10_100, 10_101]
ETH_HEIGHTS = [5_000_000, 5_000_001]
TINY_PRICE = Decimal("0.0000000000012345678901234567")  # 28 decimals: no DECIMAL(38, 18) holds it
HUGE_PRICE = Decimal("99999999999999999999.123456789")  # just below the schema's 1e20
MAX_AMOUNT = 10**76 - 1


def eth_address(n: int) -> str:
    return f"0x{n:040x}"


def block(symbol: str, height: int, *, salt: str = "", tx_count: int = 2) -> dict[str, Any]:
    return {
        "coin_symbol": symbol,
        "block_id": height,
        "hash": fake_hash(symbol, height, salt),
        "time": BLOCK_TIME + timedelta(minutes=height % 1000),
        "transaction_count": tx_count,
        "fee_total": 2**64 + height,
        "fee_total_usd": Decimal("1.25") + height,
    }


def transaction(symbol: str, height: int, n: int, *, salt: str = "") -> dict[str, Any]:
    row: dict[str, Any] = {
        "coin_symbol": symbol,
        "tx_hash": fake_hash(symbol, height * 100 + n, f"tx{salt}"),
        "block_id": height,
        "source_id": height * 100 + n,
        "time": BLOCK_TIME + timedelta(minutes=height % 1000),
        "fee": 10**20 + height * 10 + n,
        "fee_usd": Decimal(f"0.{height % 97:02d}0000000000000{n + 1}"),  # 18 decimals
        "input_count": 1,
        "output_count": 2,
        "is_coinbase": n == 0,
    }
    if symbol == "ETH":
        row |= {
            "value": 10**30 + height + n,  # wei beyond 2**64
            "sender": eth_address(height),
            "recipient": eth_address(height + n + 1),
            "gas_used": 21_000,
            "failed": n == 1,
        }
    else:
        row |= {"input_total": 5 * 10**8 + n, "output_total": 5 * 10**8 - 1000 + n}
    return row


def seed(db: DatabaseService) -> None:
    """Every exported table gets rows."""
    db.insert_blocks(
        [block("BTC", h) for h in BTC_HEIGHTS] + [block("ETH", h, tx_count=3) for h in ETH_HEIGHTS]
    )
    db.insert_transactions(
        [transaction("BTC", h, n) for h in BTC_HEIGHTS for n in range(2)]
        + [transaction("ETH", h, n) for h in ETH_HEIGHTS for n in range(3)]
    )
    db.insert_addresses(
        [
            {
                "coin_symbol": "ETH",
                "address": eth_address(7),
                "balance": MAX_AMOUNT,
                "received": 2**64 + 1,
                "balance_usd": Decimal("99999999999999999999.999999999999999999999999"),
                "first_seen": BLOCK_TIME,
            },
            {"coin_symbol": "BTC", "address": "bc1qexample", "balance": 0, "spent": None},
        ]
    )
    days = [date(2025, 1, 29) + timedelta(days=i) for i in range(6)]  # January and February
    db.insert_market_prices(
        [
            {
                "coin_id": "bitcoin",
                "price_date": day,
                "price_usd": HUGE_PRICE - i,
                "volume_usd": Decimal("123456789.123456789") + i,
            }
            for i, day in enumerate(days)
        ]
        + [
            {"coin_id": "ethereum", "price_date": day, "price_usd": TINY_PRICE * (i + 1)}
            for i, day in enumerate(days)
        ]
    )
    start = datetime(2025, 1, 31, 21, tzinfo=UTC)
    db.insert_price_points(
        [
            {
                "coin_id": "bitcoin",
                "quote": quote,
                "ts": start + timedelta(minutes=30 * i),
                "price": Decimal("97000.000000000000000001") + i,
                "volume_24h": Decimal("1234567890.5") + i,
                "sampling": "1h",
            }
            for quote in ("usd", "eur")
            for i in range(8)
        ]
    )
    finished_run(db, "success", days=(date(2025, 1, 1), date(2025, 1, 2)))
    finished_run(db, "failed", data_type="transactions", heights=(100, 200))


@pytest.fixture
def seeded(db: DatabaseService) -> DatabaseService:
    seed(db)
    return db


def database_rows(db: DatabaseService, table: str) -> list[dict[str, Any]]:
    """A table's rows as the ORM types read them (exact Decimal and int, aware datetimes)."""
    spec = EXPORT_TABLES[table]
    with db.engine.connect() as conn:
        return [normalise(dict(row)) for row in conn.execute(select(spec.table)).mappings()]


def exported_rows(out: Path, table: str) -> list[dict[str, Any]]:
    """A table's rows as written to Parquet, read with pyarrow and turned back into Python values: amount
    text -> int, decimal text -> Decimal, JSON text -> data."""
    files = sorted((out / table).rglob("*.parquet"))
    rows: list[dict[str, Any]] = []
    for path in files:
        parquet = pq.read_table(path)
        kinds = {
            f.name: (f.metadata or {}).get(b"crypto_pipeline.kind", b"").decode() for f in parquet.schema
        }
        for row in parquet.to_pylist():
            for name, kind in kinds.items():
                if row[name] is not None and kind == "amount":
                    row[name] = int(row[name])
                elif row[name] is not None and kind == "decimal":
                    row[name] = Decimal(row[name])
            rows.append(normalise(row))
    return rows


def normalise(row: dict[str, Any]) -> dict[str, Any]:
    """Comparable values: JSON text parsed, timestamps in UTC (Decimals compare by value as they are:
    `normalize()` would round to 28 digits)."""
    out = {}
    for name, value in row.items():
        if name in ("params", "rejected_samples") and isinstance(value, str):
            value = json.loads(value)
        if isinstance(value, datetime):
            value = value.astimezone(UTC)
        out[name] = value
    return out


def key(row: dict[str, Any], table: str) -> tuple[Any, ...]:
    spec = EXPORT_TABLES[table]
    names = ([spec.coin] if spec.coin else []) + list(spec.groups) + list(spec.order)
    return tuple(row[n] for n in names)


def by_key(rows: list[dict[str, Any]], table: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {key(r, table): r for r in rows}


def file_states(out: Path) -> dict[str, tuple[int, str]]:
    """Every Parquet file under `out`: (mtime in ns, sha256), by path relative to `out`."""
    return {
        p.relative_to(out).as_posix(): (p.stat().st_mtime_ns, sha256_of(p))
        for p in sorted(out.rglob("*.parquet"))
    }


def manifest_json(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / manifest_file.NAME).read_text())
    return data
