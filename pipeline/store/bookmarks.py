"""Where each ingestor stands, read from the data itself: heights held, transactions stored, days present.

The stored rows are the bookmark: a batch and the coin's bookmark columns derived from it commit in one
transaction, so the next run resumes exactly where the last committed batch ended.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Subquery, delete, func, select, update

from pipeline.models import BlockchainBlock, BlockchainTransaction, CoinMetadata, MarketPrice
from pipeline.schemas import BlockchainBlockData
from pipeline.store.engine import DatabaseCore


class BookmarkMixin(DatabaseCore):
    """Bookmark queries of `DatabaseService`, used by the ingestors."""

    def max_block_height(self, coin_symbol: str) -> int | None:
        """The highest stored height of a chain."""
        with self.engine.connect() as conn:
            return conn.scalar(
                select(func.max(BlockchainBlock.block_id)).where(BlockchainBlock.coin_symbol == coin_symbol)
            )

    def blocks_between(self, coin_symbol: str, low: int, high: int) -> list[BlockchainBlockData]:
        """Stored blocks of heights [low, high], lowest first."""
        stmt = (
            select(BlockchainBlock)
            .where(BlockchainBlock.coin_symbol == coin_symbol, BlockchainBlock.block_id.between(low, high))
            .order_by(BlockchainBlock.block_id)
        )
        return self._select_models(stmt, BlockchainBlockData)

    def block_hashes(self, coin_symbol: str, low: int, high: int) -> dict[int, str]:
        """Stored hash per height in [low, high]."""
        stmt = select(BlockchainBlock.block_id, BlockchainBlock.hash).where(
            BlockchainBlock.coin_symbol == coin_symbol, BlockchainBlock.block_id.between(low, high)
        )
        with self.engine.connect() as conn:
            return {row.block_id: row.hash for row in conn.execute(stmt)}

    def transaction_deficits(self, coin_symbol: str, low: int, high: int) -> list[tuple[int, int, int]]:
        """(height, transaction_count, stored) for heights in [low, high] holding fewer than their count."""
        stored = stored_transaction_counts(coin_symbol, low, high)
        have = func.coalesce(stored.c.n, 0)
        stmt = (
            select(BlockchainBlock.block_id, BlockchainBlock.transaction_count, have)
            .outerjoin(stored, stored.c.block_id == BlockchainBlock.block_id)
            .where(
                BlockchainBlock.coin_symbol == coin_symbol,
                BlockchainBlock.block_id.between(low, high),
                have < BlockchainBlock.transaction_count,
            )
            .order_by(BlockchainBlock.block_id)
        )
        with self.engine.connect() as conn:
            return [(height, expected, stored_n) for height, expected, stored_n in conn.execute(stmt)]

    def incomplete_transaction_blocks(self, coin_symbol: str, low: int, high: int) -> list[int]:
        """Heights in [low, high] whose stored transactions are fewer than the block's transaction_count."""
        return [height for height, _expected, _stored in self.transaction_deficits(coin_symbol, low, high)]

    def delete_block_transactions(self, conn: Connection, coin_symbol: str, heights: list[int]) -> int:
        """Drop the transactions of orphaned blocks (after a reorganisation) in the caller's transaction."""
        if not heights:
            return 0
        stmt = delete(BlockchainTransaction).where(
            BlockchainTransaction.coin_symbol == coin_symbol, BlockchainTransaction.block_id.in_(heights)
        )
        return conn.execute(stmt).rowcount

    def price_dates(self, coin_id: str, start: date, end: date) -> set[date]:
        """Days in [start, end] that have a stored price."""
        stmt = select(MarketPrice.price_date).where(
            MarketPrice.coin_id == coin_id, MarketPrice.price_date.between(start, end)
        )
        with self.engine.connect() as conn:
            return {_as_date(value) for value in conn.scalars(stmt)}

    def set_bookmarks(self, conn: Connection, symbol: str, **marks: Any) -> None:
        """Set last-ingested marks of a coin in the caller's transaction."""
        conn.execute(update(CoinMetadata).where(CoinMetadata.symbol == symbol).values(**marks))

    def advance_block_bookmark(
        self, conn: Connection, symbol: str, *, at: datetime, tip: int | None = None
    ) -> None:
        """Move a chain's block bookmark to its highest stored height, in the caller's transaction (the one
        that wrote the batch); `tip`, when the source reported one, is recorded as the chain tip seen `at`.

        The height is evaluated inside the UPDATE, so it counts this transaction's own rows.
        """
        marks: dict[str, Any] = {"block_bookmark_at": at, "block_bookmark": _max_height(symbol)}
        if tip is not None:
            marks |= {"chain_tip_height": tip, "chain_tip_seen_at": at}
        self.set_bookmarks(conn, symbol, **marks)

    def advance_price_bookmark(self, conn: Connection, symbol: str, coin_id: str, *, at: datetime) -> None:
        """Move a coin's price bookmark to its newest stored day, in the caller's transaction (the one that
        wrote the batch).

        The newest day is evaluated in SQL: never moved backwards by an older backfill or a stale copy of
        the coin, even with several workers.
        """
        newest = select(func.max(MarketPrice.price_date)).where(MarketPrice.coin_id == coin_id)
        self.set_bookmarks(conn, symbol, price_bookmark=newest.scalar_subquery(), price_bookmark_at=at)


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def stored_transaction_counts(coin_symbol: str, low: int, high: int) -> Subquery:
    """A subquery of (block_id, n): transactions stored per height in [low, high]."""
    return (
        select(BlockchainTransaction.block_id, func.count().label("n"))
        .where(
            BlockchainTransaction.coin_symbol == coin_symbol,
            BlockchainTransaction.block_id.between(low, high),
        )
        .group_by(BlockchainTransaction.block_id)
        .subquery()
    )


def _max_height(coin_symbol: str) -> Any:
    """The stored maximum height, evaluated inside the UPDATE (so it sees this transaction's rows)."""
    return (
        select(func.max(BlockchainBlock.block_id))
        .where(BlockchainBlock.coin_symbol == coin_symbol)
        .scalar_subquery()
    )
