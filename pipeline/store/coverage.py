"""The reads coverage and gap-fill planning are computed from: held day and height ranges, the outcomes of the
runs that covered a coin's days, the average block size of a chain.

`pipeline.services.coverage` and `pipeline.services.gapfill` turn these into states, gaps and costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Connection, Integer, and_, cast, func, select
from sqlalchemy.sql.elements import ColumnElement

from pipeline.models import BlockchainBlock, DataIngestionLog, MarketPrice
from pipeline.store.engine import DatabaseCore


def price_run_outcomes(
    db: DatabaseCore, coin_id: str, first: date, last: date, data_types: Sequence[str]
) -> list[tuple[date, date, str]]:
    """(start_date, end_date, status) of the CoinGecko runs of these data types that covered any day of
    [first, last] for a coin, oldest first (so a later run's outcome overrides an earlier one's).

    Read from the (source, data_type, coin, end_date, start_date) index: only the runs that end on or after
    `first` are visited, not every run the coin ever had."""
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


def price_day_ranges(db: DatabaseCore, coin_id: str, start: date, end: date) -> list[tuple[date, date]]:
    """(first, last) of each run of consecutive days in [start, end] with a stored price of a coin, oldest
    first.

    Found in SQL over the (coin_id, price_date) primary key, so only the ends of the runs leave the
    database, not every day of the window: the first and last day and the number of days come first, and
    when there are as many days as the span between them is long, that span is the one run; otherwise a
    day's number minus its row number is constant over each run.
    """
    p = MarketPrice
    window = and_(p.coin_id == coin_id, p.price_date.between(start, end))
    with db.engine.connect() as conn:
        first, last, days = conn.execute(
            select(func.min(p.price_date), func.max(p.price_date), func.count()).where(window)
        ).one()
        if not days:
            return []
        first, last = _as_date(first), _as_date(last)
        if days == (last - first).days + 1:
            return [(first, last)]
        return _day_islands(db, conn, coin_id, start, end)


def _day_islands(
    db: DatabaseCore, conn: Connection, coin_id: str, start: date, end: date
) -> list[tuple[date, date]]:
    """The runs of consecutive stored days of a coin in [start, end] by a window over the index range."""
    p = MarketPrice
    position = func.row_number().over(order_by=p.price_date)
    if db.dialect == "sqlite":  # dates are ISO text there
        island: ColumnElement[Any] = func.julianday(p.price_date) - position
    else:  # date - integer is a date
        island = p.price_date - cast(position, Integer)
    inner = (
        select(p.price_date.label("day"), island.label("island"))
        .where(p.coin_id == coin_id, p.price_date.between(start, end))
        .subquery()
    )
    stmt = (
        select(func.min(inner.c.day), func.max(inner.c.day))
        .group_by(inner.c.island)
        .order_by(func.min(inner.c.day))
    )
    return [(_as_date(first), _as_date(last)) for first, last in conn.execute(stmt)]


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


# A span of heights this wide or narrower that has a hole is split into islands by a window function
# over its index entries; a wider one is halved first (see `height_islands`).
ISLAND_SCAN_SPAN = 4096


def height_islands(db: DatabaseCore, coin_symbol: str) -> list[tuple[int, int]]:
    """(lowest, highest) of each island of consecutive stored heights of a chain, lowest first.

    Counted, not read: a span of heights whose index holds as many entries as it is wide has no hole and
    is one island, and a span without entries has none, so only the spans around holes are halved further;
    a narrow span with a hole is split in SQL (height - row_number is constant over an island). The lowest
    and highest heights are index seeks, and every step is an index-only count or scan: a chain without
    holes costs two seeks and one count, and no height is ever read into Python.
    """
    b = BlockchainBlock
    chain = b.coin_symbol == coin_symbol
    with db.engine.connect() as conn:
        low = conn.scalar(select(func.min(b.block_id)).where(chain))
        if low is None:
            return []
        high = conn.scalar(select(func.max(b.block_id)).where(chain)) or low
        islands: list[tuple[int, int]] = []
        spans = [(int(low), int(high))]  # a stack, lowest span on top
        while spans:
            first, last = spans.pop()
            held = conn.scalar(select(func.count()).where(chain, b.block_id.between(first, last))) or 0
            if held == last - first + 1:
                islands.append((first, last))
            elif held and last - first + 1 <= ISLAND_SCAN_SPAN:
                islands += _islands_between(conn, coin_symbol, first, last)
            elif held:
                middle = (first + last) // 2
                spans += [(middle + 1, last), (first, middle)]
    return _joined(islands)


def _islands_between(conn: Connection, coin_symbol: str, first: int, last: int) -> list[tuple[int, int]]:
    """The islands of stored heights in [first, last], lowest first, by a window over the index range."""
    b = BlockchainBlock
    island = b.block_id - func.row_number().over(order_by=b.block_id)
    inner = (
        select(b.block_id.label("height"), island.label("island"))
        .where(b.coin_symbol == coin_symbol, b.block_id.between(first, last))
        .subquery()
    )
    stmt = (
        select(func.min(inner.c.height), func.max(inner.c.height))
        .group_by(inner.c.island)
        .order_by(func.min(inner.c.height))
    )
    return [(int(low), int(high)) for low, high in conn.execute(stmt)]


def _joined(islands: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Islands in order, those that touch (one ends where the next begins) made one."""
    joined: list[tuple[int, int]] = []
    for low, high in islands:
        if joined and joined[-1][1] + 1 == low:
            joined[-1] = (joined[-1][0], high)
        else:
            joined.append((low, high))
    return joined


def average_transaction_count(db: DatabaseCore, coin_symbol: str) -> float | None:
    """The mean `transaction_count` of a chain's stored blocks; None when it has none."""
    stmt = select(func.avg(BlockchainBlock.transaction_count)).where(
        BlockchainBlock.coin_symbol == coin_symbol
    )
    with db.engine.connect() as conn:
        average = conn.scalar(stmt)
    return None if average is None else float(average)
