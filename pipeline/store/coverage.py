"""The reads coverage and gap-fill planning are computed from: held height ranges, the outcomes of the runs
that covered a coin's days, the average block size of a chain.

`pipeline.services.coverage` and `pipeline.services.gapfill` turn these into states, gaps and costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import func, select

from pipeline.models import BlockchainBlock, DataIngestionLog
from pipeline.store.engine import DatabaseCore


def price_run_outcomes(
    db: DatabaseCore, coin_id: str, first: date, last: date, data_types: Sequence[str]
) -> list[tuple[date, date, str]]:
    """(start_date, end_date, status) of the CoinGecko runs of these data types that covered any day of
    [first, last] for a coin, oldest first (so a later run's outcome overrides an earlier one's)."""
    stmt = (
        select(DataIngestionLog.start_date, DataIngestionLog.end_date, DataIngestionLog.status)
        .where(
            DataIngestionLog.source == "coingecko",
            DataIngestionLog.coin == coin_id,
            DataIngestionLog.data_type.in_(data_types),
            DataIngestionLog.start_date <= last,
            DataIngestionLog.end_date >= first,
        )
        .order_by(DataIngestionLog.started_at, DataIngestionLog.id)
    )
    with db.engine.connect() as conn:
        # (the comparisons above already leave out runs without dates; the test is for the type checker)
        return [(a, b, status) for a, b, status in conn.execute(stmt) if a is not None and b is not None]


def height_islands(db: DatabaseCore, coin_symbol: str) -> list[tuple[int, int]]:
    """(lowest, highest) of each island of consecutive stored heights of a chain, lowest first.

    Found in SQL: height - row_number is constant over an island, so the table is never read into Python.
    """
    island = BlockchainBlock.block_id - func.row_number().over(order_by=BlockchainBlock.block_id)
    inner = (
        select(BlockchainBlock.block_id.label("height"), island.label("island"))
        .where(BlockchainBlock.coin_symbol == coin_symbol)
        .subquery()
    )
    stmt = (
        select(func.min(inner.c.height), func.max(inner.c.height))
        .group_by(inner.c.island)
        .order_by(func.min(inner.c.height))
    )
    with db.engine.connect() as conn:
        return [(low, high) for low, high in conn.execute(stmt)]


def average_transaction_count(db: DatabaseCore, coin_symbol: str) -> float | None:
    """The mean `transaction_count` of a chain's stored blocks; None when it has none."""
    stmt = select(func.avg(BlockchainBlock.transaction_count)).where(
        BlockchainBlock.coin_symbol == coin_symbol
    )
    with db.engine.connect() as conn:
        average = conn.scalar(stmt)
    return None if average is None else float(average)
