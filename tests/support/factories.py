"""Records built the same way by several test files: fake hashes in each chain's form, stored blocks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from pipeline.database import DatabaseService


def fake_hash(symbol: str, height: int, salt: str = "") -> str:
    """A deterministic hash in the chain's own form (the schema's rule): 0x-prefixed for ETH."""
    digest = hashlib.sha256(f"{symbol}:{height}:{salt}".encode()).hexdigest()
    return f"0x{digest}" if symbol == "ETH" else digest


def store_blocks(
    db: DatabaseService,
    symbol: str,
    heights: Iterable[int],
    *,
    tx_count: int = 0,
    when: datetime | None = None,
) -> None:
    """Minimal valid blocks at the given heights (each with `tx_count` transactions), three hours old."""
    when = when or datetime.now(UTC) - timedelta(hours=3)
    db.insert_blocks(
        [
            {
                "coin_symbol": symbol,
                "block_id": h,
                "hash": fake_hash(symbol, h),
                "time": when,
                "transaction_count": tx_count,
            }
            for h in heights
        ]
    )
