"""Records built the same way by several test files: fake hashes in each chain's form, stored blocks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

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


def finished_run(
    db: DatabaseService,
    status: str,
    *,
    source: str = "blockchair",
    data_type: str = "blocks",
    coin: str = "bitcoin",
    trigger: str = "schedule",
    parent: int | None = None,
    params: dict[str, Any] | None = None,
    error_class: str | None = "RetriableSourceError",
    error_message: str = "HTTP 503 from the source",
    heights: tuple[int | None, int | None] = (None, None),
    days: tuple[date | None, date | None] = (None, None),
) -> int:
    """A run as a unit leaves it: `start_run`, then `finish_run` with its outcome."""
    from pipeline.store.runs import RunSlice

    run_id = db.start_run(
        RunSlice(
            source,
            data_type,
            coin,
            {"coin": coin} if params is None else params,
            start_date=days[0],
            end_date=days[1],
            start_height=heights[0],
            end_height=heights[1],
        ),
        trigger=trigger,
        parent_run_id=parent,
    )
    failed = status == "failed"
    db.finish_run(
        run_id,
        status=status,
        finished_at=datetime.now(UTC),
        error_class=error_class if failed else None,
        error_message=error_message if failed else None,
    )
    return run_id
