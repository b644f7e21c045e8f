"""Data-quality findings, and the reads the checks of `pipeline.services.quality` judge.

Findings are stored as rows of `data_quality_checks`; the checks themselves (thresholds, severities,
samples) are services logic and never touch SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select

from pipeline.models import BlockchainBlock, BlockchainTransaction, DataQualityCheck
from pipeline.store.bookmarks import stored_transaction_counts
from pipeline.store.engine import DatabaseCore

# ---------------------------------------------------------------------------------------------- findings


def insert_findings(db: DatabaseCore, rows: list[dict[str, Any]]) -> None:
    """Store finding rows (the columns of `data_quality_checks`) in one transaction; none is a no-op."""
    if rows:
        with db.transaction() as conn:
            conn.execute(insert(DataQualityCheck), rows)


def select_findings(
    db: DatabaseCore,
    *,
    subject: str | None = None,
    severity: str | None = None,
    since: datetime | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Stored findings as column -> value, newest first, optionally about one subject, of one severity,
    or made since a time."""
    stmt = select(DataQualityCheck).order_by(DataQualityCheck.id.desc()).limit(limit)
    if subject:
        stmt = stmt.where(DataQualityCheck.subject == subject)
    if severity:
        stmt = stmt.where(DataQualityCheck.severity == severity)
    if since is not None:
        stmt = stmt.where(DataQualityCheck.created_at >= since)
    with db.session() as session:
        return [
            {c.name: getattr(row, c.name) for c in DataQualityCheck.__table__.columns}
            for row in session.scalars(stmt)
        ]


# ---------------------------------------------------------------------------------------------- blocks


def hashes_at_several_heights(
    db: DatabaseCore, coin_symbol: str, low: int, high: int
) -> list[tuple[str, int]]:
    """(hash, heights) of the hashes of blocks in [low, high] the chain stores at more than one height."""
    in_slice = select(BlockchainBlock.hash).where(
        BlockchainBlock.coin_symbol == coin_symbol, BlockchainBlock.block_id.between(low, high)
    )
    twice = (
        select(BlockchainBlock.hash, func.count())
        .where(BlockchainBlock.coin_symbol == coin_symbol, BlockchainBlock.hash.in_(in_slice))
        .group_by(BlockchainBlock.hash)
        .having(func.count() > 1)
    )
    with db.engine.connect() as conn:
        return [(block_hash, heights) for block_hash, heights in conn.execute(twice)]


@dataclass(frozen=True)
class StoredTransactions:
    """One block of a slice holding stored transactions: its count, what is stored, and its fees."""

    height: int
    transaction_count: int
    stored: int
    fee_total: int | None
    # The exact sum of the stored transactions' fees, for a block whose transactions are all stored and
    # that has a fee total (the only blocks whose fees can be compared); None otherwise.
    stored_fees: int | None


def stored_transactions_per_block(
    db: DatabaseCore, coin_symbol: str, low: int, high: int
) -> list[StoredTransactions]:
    """Blocks in [low, high] with at least one stored transaction, with their counts and fee sums."""
    stored = stored_transaction_counts(coin_symbol, low, high)
    stmt = (
        select(
            BlockchainBlock.block_id, BlockchainBlock.transaction_count, stored.c.n, BlockchainBlock.fee_total
        )
        .join(stored, stored.c.block_id == BlockchainBlock.block_id)
        .where(BlockchainBlock.coin_symbol == coin_symbol)
    )
    # One session for both reads, so the fees are read from the same state the counts were.
    with db.session() as session:
        blocks = [tuple(row) for row in session.execute(stmt)]
        complete = [h for h, count, have, fee_total in blocks if have == count and fee_total is not None]
        fees: dict[int, int] = {}
        if complete:
            # Exact integer sums in Python: SQLite would add the TEXT amounts as floats.
            rows = session.execute(
                select(BlockchainTransaction.block_id, BlockchainTransaction.fee).where(
                    BlockchainTransaction.coin_symbol == coin_symbol,
                    BlockchainTransaction.block_id.in_(complete),
                )
            )
            for height, fee in rows:
                fees[height] = fees.get(height, 0) + int(fee or 0)
    return [
        StoredTransactions(
            height=height,
            transaction_count=expected,
            stored=have,
            fee_total=None if fee_total is None else int(fee_total),
            stored_fees=fees.get(height, 0) if have == expected and fee_total is not None else None,
        )
        for height, expected, have, fee_total in blocks
    ]
