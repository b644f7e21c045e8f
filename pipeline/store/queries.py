"""Read models of the dashboard: aggregated, index-friendly reads (this module never writes).

Every function takes the service plus filters and aggregates in the database (counts and sums per day,
never whole large tables into pandas). Frames feed charts; Pydantic models carry everything else.

Dialect notes: SQLite stores timestamps as integer epoch microseconds and amounts/decimals as text,
PostgreSQL uses timestamptz and numeric, so the day/hour buckets and numeric sums below are built per
dialect. Grouping is by output label (`GROUP BY day`) so that PostgreSQL sees one expression even when
the bucket expression carries bound parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal, overload

import pandas as pd
from pydantic import BaseModel
from sqlalchemy import (
    Connection,
    Date,
    Float,
    Integer,
    Select,
    Table,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
    type_coerce,
    union_all,
)
from sqlalchemy.sql.elements import ColumnElement

from pipeline.columns import decimal_to_text
from pipeline.models import (
    AuditMixin,
    Base,
    BlockchainAddress,
    BlockchainBlock,
    BlockchainTransaction,
    CoinMetadata,
    DataIngestionLog,
    MarketPrice,
    ReplayRequest,
)
from pipeline.store.engine import DatabaseCore

# Native units per coin, by chain family: satoshi-like (1e-8) or wei (1e-18).
DECIMALS = {"bitcoin": 8, "ethereum": 18}
RUN_STATUSES = ("running", "success", "partial", "failed")
# Tables whose full scans the benchmark flags.
_US_PER_DAY = 86_400_000_000
_US_PER_HOUR = 3_600_000_000
LARGE_TABLES = ("blockchain_transactions", "blockchain_blocks", "market_prices", "data_ingestion_logs")
IN_BATCH = 500  # values per IN list


# ---------------------------------------------------------------------------------------------- helpers


def _is_sqlite(db: DatabaseCore) -> bool:
    return db.dialect == "sqlite"


def day_of(db: DatabaseCore, column: Any) -> ColumnElement[Any]:
    """The UTC calendar day of a UTCDateTime column (on SQLite: days since the epoch, an integer).

    On SQLite integer division of the stored epoch microseconds is much cheaper per row than `date()`;
    `_days` turns the day numbers into timestamps.
    """
    if _is_sqlite(db):
        return type_coerce(column, Integer) // _US_PER_DAY
    return cast(func.timezone(literal_column("'UTC'"), column), Date)


def hour_of(db: DatabaseCore, column: Any) -> ColumnElement[Any]:
    """The UTC hour of a UTCDateTime column (on SQLite: hours since the epoch, an integer)."""
    if _is_sqlite(db):
        return type_coerce(column, Integer) // _US_PER_HOUR
    return func.date_trunc(literal_column("'hour'"), func.timezone(literal_column("'UTC'"), column))


def as_float(column: Any) -> ColumnElement[Any]:
    """A decimal or native-amount column as a float (text on SQLite, numeric on PostgreSQL)."""
    return cast(column, Float)


def start_of(day: date) -> datetime:
    """00:00 UTC of a day."""
    return datetime.combine(day, time(0), UTC)


def _frame(db: DatabaseCore, stmt: Select[*tuple[Any, ...]], columns: Sequence[str]) -> pd.DataFrame:
    with db.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=list(columns))


def _days(frame: pd.DataFrame, column: str = "day", unit: Literal["D", "h"] = "D") -> pd.DataFrame:
    """Bucket labels as naive UTC timestamps: dates (PostgreSQL) or day/hour numbers (SQLite)."""
    if frame.empty:
        return frame
    values = frame[column]
    if pd.api.types.is_integer_dtype(values) or pd.api.types.is_float_dtype(values):
        # pandas takes "h"; its stubs list only D, s, ms, us and ns.
        frame[column] = pd.to_datetime(values.astype("int64"), unit=unit)  # type: ignore[arg-type]
    else:
        frame[column] = pd.to_datetime(values)
    return frame


def _floats(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    for column in columns:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame


@overload
def native_to_coin(amount: int, family: str) -> Decimal: ...
@overload
def native_to_coin(amount: None, family: str) -> None: ...
@overload
def native_to_coin(amount: int | None, family: str) -> Decimal | None: ...
def native_to_coin(amount: int | None, family: str) -> Decimal | None:
    """Exact conversion of a native amount (satoshi, wei) to coin units."""
    if amount is None:
        return None
    return Decimal(int(amount)).scaleb(-DECIMALS.get(family, 8))


def coin_text(amount: int | None, family: str) -> str:
    """A native amount as exact coin-unit text ('' for unknown)."""
    value = native_to_coin(amount, family)
    return "" if value is None else decimal_to_text(value) or "0"


def chain_family(db: DatabaseCore, coin_symbol: str) -> str:
    """'bitcoin' or 'ethereum' for a coin symbol (bitcoin when unknown)."""
    with db.engine.connect() as conn:
        family = conn.scalar(select(CoinMetadata.chain_family).where(CoinMetadata.symbol == coin_symbol))
    return family or "bitcoin"


# ---------------------------------------------------------------------------------------------- prices


def prices_frame(db: DatabaseCore, coin_ids: Sequence[str], start: date, end: date) -> pd.DataFrame:
    """Daily prices of some coins in [start, end], oldest first per coin (prices, volume, cap as floats)."""
    columns = ["coin_id", "price_date", "price_usd", "volume_usd", "market_cap_usd"]
    stmt = (
        select(
            MarketPrice.coin_id,
            MarketPrice.price_date,
            MarketPrice.price_usd,
            MarketPrice.volume_usd,
            MarketPrice.market_cap_usd,
        )
        .where(MarketPrice.coin_id.in_(list(coin_ids)), MarketPrice.price_date.between(start, end))
        .order_by(MarketPrice.coin_id, MarketPrice.price_date)
    )
    frame = _floats(_frame(db, stmt, columns), columns[2:])
    return _days(frame, "price_date")


def price_coverage(db: DatabaseCore, coin_ids: Sequence[str], start: date, end: date) -> pd.DataFrame:
    """Per coin in [start, end]: first and last stored day, days held, and days missing between them."""
    stmt = (
        select(
            MarketPrice.coin_id,
            func.min(MarketPrice.price_date),
            func.max(MarketPrice.price_date),
            func.count(),
        )
        .where(MarketPrice.coin_id.in_(list(coin_ids)), MarketPrice.price_date.between(start, end))
        .group_by(MarketPrice.coin_id)
        .order_by(MarketPrice.coin_id)
    )
    frame = _frame(db, stmt, ["coin_id", "first_date", "last_date", "days"])
    return _with_missing(frame)


def date_coverage(db: DatabaseCore) -> pd.DataFrame:
    """Per coin over all stored prices: first, last, days held, missing days between first and last.

    The coins are found by skipping through the (coin_id, price_date) key, one seek per coin; per coin
    the first and last day are one seek each and only the count walks its entries (a GROUP BY would
    decode every row's day for min and max).
    """
    p = MarketPrice
    coins = _distinct_values(p.coin_id, "coins")
    coin = p.coin_id == coins.c.value
    stmt = (
        select(
            coins.c.value,
            select(func.min(p.price_date)).where(coin).scalar_subquery(),
            select(func.max(p.price_date)).where(coin).scalar_subquery(),
            select(func.count()).where(coin).scalar_subquery(),
        )
        .where(coins.c.value.is_not(None))
        .order_by(coins.c.value)
    )
    return _with_missing(_frame(db, stmt, ["coin_id", "first_date", "last_date", "days"]))


def _with_missing(frame: pd.DataFrame) -> pd.DataFrame:
    for column in ("first_date", "last_date"):
        frame[column] = [
            v if isinstance(v, date) or v is None else date.fromisoformat(v) for v in frame[column]
        ]
    pairs = zip(frame["first_date"], frame["last_date"], strict=True)
    span = [(b - a).days + 1 if a and b else 0 for a, b in pairs]
    frame["missing_days"] = pd.Series(span, dtype="int64") - frame["days"].astype("int64")
    return frame


def price_bounds(db: DatabaseCore, coin_ids: Sequence[str]) -> tuple[date | None, date | None]:
    """The first and last stored day over some coins (for the 'all' range)."""
    stmt = select(func.min(MarketPrice.price_date), func.max(MarketPrice.price_date)).where(
        MarketPrice.coin_id.in_(list(coin_ids))
    )
    with db.engine.connect() as conn:
        low, high = conn.execute(stmt).one()
    return _as_day(low), _as_day(high)


def _as_day(value: date | str | None) -> date | None:
    """A stored day as a date (SQLite returns the text of an aggregate's date)."""
    return value if value is None or isinstance(value, date) else date.fromisoformat(value)


# ---------------------------------------------------------------------------------------------- chains


def blocks_per_day(db: DatabaseCore, coin_symbol: str, start: date, end: date) -> pd.DataFrame:
    """Per UTC day of one chain: blocks, chain transactions (from headers), fees (coin and USD), sizes."""
    day = day_of(db, BlockchainBlock.time).label("day")
    stmt = (
        select(
            day,
            func.count().label("blocks"),
            func.sum(BlockchainBlock.transaction_count).label("transactions"),
            func.sum(as_float(BlockchainBlock.fee_total)).label("fees_native"),
            func.sum(as_float(BlockchainBlock.fee_total_usd)).label("fees_usd"),
            func.avg(BlockchainBlock.size).label("avg_size"),
            func.max(BlockchainBlock.size).label("max_size"),
        )
        .where(
            BlockchainBlock.coin_symbol == coin_symbol,
            BlockchainBlock.time >= start_of(start),
            BlockchainBlock.time < start_of(end + timedelta(days=1)),
        )
        .group_by("day")
        .order_by("day")
    )
    columns = ["day", "blocks", "transactions", "fees_native", "fees_usd", "avg_size", "max_size"]
    frame = _floats(_frame(db, stmt, columns), columns[1:])
    frame["fees"] = frame["fees_native"] / 10 ** DECIMALS.get(chain_family(db, coin_symbol), 8)
    return _days(frame)


def transactions_per_day(db: DatabaseCore, coin_symbol: str, start: date, end: date) -> pd.DataFrame:
    """Per UTC day of one chain: the chain's transactions (from block headers) and the transactions stored.

    Blocks of the window come from the (coin_symbol, time) index; each block's stored transactions are
    counted with a correlated lookup on the (coin_symbol, block_id) index, so the cost follows the window,
    not the size of the transactions table.
    """
    stored = (
        select(func.count())
        .where(
            BlockchainTransaction.coin_symbol == BlockchainBlock.coin_symbol,
            BlockchainTransaction.block_id == BlockchainBlock.block_id,
        )
        .scalar_subquery()
    )
    stmt = (
        select(
            day_of(db, BlockchainBlock.time).label("day"),
            func.sum(BlockchainBlock.transaction_count).label("transactions"),
            func.sum(stored).label("stored"),
        )
        .where(
            BlockchainBlock.coin_symbol == coin_symbol,
            BlockchainBlock.time >= start_of(start),
            BlockchainBlock.time < start_of(end + timedelta(days=1)),
        )
        .group_by("day")
        .order_by("day")
    )
    frame = _floats(_frame(db, stmt, ["day", "transactions", "stored"]), ["transactions", "stored"])
    return _days(frame)


def first_block_day(db: DatabaseCore, coin_symbol: str) -> date | None:
    """The UTC day of a chain's oldest stored block (for the 'all' range), from the (coin, time) index."""
    stmt = select(func.min(BlockchainBlock.time)).where(BlockchainBlock.coin_symbol == coin_symbol)
    with db.engine.connect() as conn:
        first = conn.scalar(stmt)
    if first is None:
        return None
    if isinstance(first, int):  # SQLite returns the stored epoch microseconds for an aggregate
        first = datetime.fromtimestamp(first / 1_000_000, UTC)
    return first.astimezone(UTC).date()


def latest_blocks(db: DatabaseCore, coin_symbol: str, limit: int = 100) -> pd.DataFrame:
    """The newest blocks of a chain, highest first, with fees in coin units as exact text."""
    stmt = (
        select(
            BlockchainBlock.block_id,
            BlockchainBlock.time,
            BlockchainBlock.hash,
            BlockchainBlock.transaction_count,
            BlockchainBlock.size,
            BlockchainBlock.fee_total,
            BlockchainBlock.fee_total_usd,
            BlockchainBlock.miner,
        )
        .where(BlockchainBlock.coin_symbol == coin_symbol)
        .order_by(BlockchainBlock.block_id.desc())
        .limit(limit)
    )
    columns = ["block_id", "time", "hash", "transaction_count", "size", "fee_total", "fee_total_usd", "miner"]
    frame = _frame(db, stmt, columns)
    family = chain_family(db, coin_symbol)
    frame["fees"] = [coin_text(v, family) for v in frame["fee_total"]]
    frame["fee_total_usd"] = pd.to_numeric(frame["fee_total_usd"], errors="coerce").astype("float64")
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame.drop(columns=["fee_total"])


def block_days(db: DatabaseCore, coin_symbol: str, heights: Sequence[int]) -> dict[int, date]:
    """Height -> UTC day of the stored blocks among some heights (unknown heights are left out)."""
    wanted = sorted({int(h) for h in heights})
    days: dict[int, date] = {}
    with db.engine.connect() as conn:
        for i in range(0, len(wanted), IN_BATCH):
            batch = wanted[i : i + IN_BATCH]
            stmt = select(BlockchainBlock.block_id, BlockchainBlock.time).where(
                BlockchainBlock.coin_symbol == coin_symbol, BlockchainBlock.block_id.in_(batch)
            )
            days |= {int(height): when.astimezone(UTC).date() for height, when in conn.execute(stmt)}
    return days


def block_transactions(db: DatabaseCore, coin_symbol: str, block_id: int, limit: int = 1000) -> pd.DataFrame:
    """The stored transactions of one block, amounts in coin units as exact text."""
    t = BlockchainTransaction
    stmt = (
        select(t.tx_hash, t.time, t.fee, t.output_total, t.value, t.fee_usd, t.output_total_usd,
               t.input_count, t.output_count, t.size, t.is_coinbase, t.sender, t.recipient, t.failed)
        .where(t.coin_symbol == coin_symbol, t.block_id == block_id)
        .order_by(t.source_id, t.tx_hash)
        .limit(limit)
    )  # fmt: skip
    columns = ["tx_hash", "time", "fee", "output_total", "value", "fee_usd", "output_total_usd",
               "input_count", "output_count", "size", "is_coinbase", "sender", "recipient",
               "failed"]  # fmt: skip
    frame = _frame(db, stmt, columns)
    family = chain_family(db, coin_symbol)
    for column in ("fee", "output_total", "value"):
        frame[column] = [coin_text(v, family) for v in frame[column]]
    frame = _floats(frame, ["fee_usd", "output_total_usd"])
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


class AddressBalance(BaseModel):
    """A watched address with balances converted exactly to coin units."""

    coin_symbol: str
    address: str
    balance_native: int
    balance: Decimal
    received: Decimal | None = None
    spent: Decimal | None = None
    balance_usd: Decimal | None = None
    transaction_count: int | None = None
    last_seen: datetime | None = None
    updated_at: datetime | None = None


def addresses(db: DatabaseCore, coin_symbol: str | None = None) -> list[AddressBalance]:
    """Watched addresses (optionally of one chain) with balances in coin units."""
    a = BlockchainAddress
    stmt = (
        select(a.coin_symbol, a.address, a.balance, a.received, a.spent, a.balance_usd,
               a.transaction_count, a.last_seen, a.updated_at, CoinMetadata.chain_family)
        .outerjoin(CoinMetadata, CoinMetadata.symbol == a.coin_symbol)
        .order_by(a.coin_symbol, a.address)
    )  # fmt: skip
    if coin_symbol:
        stmt = stmt.where(a.coin_symbol == coin_symbol)
    with db.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [
        AddressBalance(
            coin_symbol=r.coin_symbol,
            address=r.address,
            balance_native=r.balance,
            balance=native_to_coin(r.balance, r.chain_family or "bitcoin"),
            received=native_to_coin(r.received, r.chain_family or "bitcoin"),
            spent=native_to_coin(r.spent, r.chain_family or "bitcoin"),
            balance_usd=r.balance_usd,
            transaction_count=r.transaction_count,
            last_seen=r.last_seen,
            updated_at=r.updated_at,
        )
        for r in rows
    ]


def height_coverage(db: DatabaseCore) -> pd.DataFrame:
    """Per chain: lowest and highest stored height, blocks held and heights missing between them.

    One row per known coin, each figure a correlated subquery on that chain's index range instead of a
    GROUP BY over the whole blocks index: lowest and highest are one index seek each (separate from the
    count, since an aggregate that computes min, max and count together decodes every entry), and only the
    count walks the chain's entries, the least an exact count of held heights can do.
    """
    b, m = BlockchainBlock, CoinMetadata
    chain = b.coin_symbol == m.symbol
    stmt = select(
        m.symbol,
        select(func.min(b.block_id)).where(chain).scalar_subquery(),
        select(func.max(b.block_id)).where(chain).scalar_subquery(),
        select(func.count()).where(chain).scalar_subquery(),
    ).order_by(m.symbol)
    with db.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    frame = pd.DataFrame(
        [tuple(r) for r in rows if r[3]], columns=["coin_symbol", "min_height", "max_height", "blocks"]
    )
    frame["missing_heights"] = frame["max_height"] - frame["min_height"] + 1 - frame["blocks"]
    return frame.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- runs


class RunFacets(BaseModel):
    """The values the runs filters offer."""

    sources: list[str] = []
    data_types: list[str] = []
    coins: list[str] = []


def run_facets(db: DatabaseCore) -> RunFacets:
    """Distinct sources, data types and coins of the run log (read from the unit index)."""
    r = DataIngestionLog
    stmt = select(r.source, r.data_type, r.coin).distinct()
    with db.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return RunFacets(
        sources=sorted({row.source for row in rows}),
        data_types=sorted({row.data_type for row in rows}),
        coins=sorted({row.coin for row in rows if row.coin}),
    )


RUN_COLUMNS = [
    "id", "started_at", "status", "source", "data_type", "coin", "trigger", "records_fetched",
    "records_inserted", "records_updated", "records_rejected", "requests_made", "retries",
    "duration_seconds", "error_class", "error_message", "parent_run_id", "resolved_by_run_id",
]  # fmt: skip


def runs_table(
    db: DatabaseCore,
    *,
    sources: Sequence[str] = (),
    data_types: Sequence[str] = (),
    coins: Sequence[str] = (),
    statuses: Sequence[str] = (),
    start: date | None = None,
    end: date | None = None,
    limit: int = 500,
) -> pd.DataFrame:
    """Runs matching the filters, newest first (at most `limit`)."""
    r = DataIngestionLog
    stmt = (
        select(*(getattr(r, c) for c in RUN_COLUMNS)).order_by(r.started_at.desc(), r.id.desc()).limit(limit)
    )
    filters = [(r.source, sources), (r.data_type, data_types), (r.coin, coins), (r.status, statuses)]
    for column, values in filters:
        if values:
            stmt = stmt.where(column.in_(list(values)))
    if start is not None:
        stmt = stmt.where(r.started_at >= start_of(start))
    if end is not None:
        stmt = stmt.where(r.started_at < start_of(end + timedelta(days=1)))
    frame = _frame(db, stmt, RUN_COLUMNS)
    frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True)
    frame["status"] = [str(getattr(s, "value", s)) for s in frame["status"]]
    for name in ("parent_run_id", "resolved_by_run_id"):
        frame[name] = frame[name].astype("Int64")
    return frame


TIMELINE_COLUMNS = [
    "id", "source", "data_type", "coin", "worker_id", "status", "started_at", "finished_at",
    "duration_seconds", "wait_seconds", "http_seconds", "resolved_by_run_id",
]  # fmt: skip
# How long before a window a run may have started and still reach into it (units take seconds to minutes;
# a run still `running` is found whenever it started).
TIMELINE_LOOKBACK = timedelta(hours=1)


def run_timeline(
    db: DatabaseCore, since: datetime, until: datetime | None = None, *, limit: int = 20_000
) -> pd.DataFrame:
    """The runs on screen in [since, until] (until: now) for the runs timeline, oldest first: those that
    started in it, started shortly before and ended in it, or are still running; only the columns the
    Gantt chart needs (at most `limit`, the newest).

    Two index searches, one per kind: a range of the started_at index, and the older runs still `running`
    from the (status, started_at) index; never a walk over the whole log.
    """
    r = DataIngestionLog
    early = since - TIMELINE_LOOKBACK
    columns = [getattr(r, c) for c in TIMELINE_COLUMNS]
    recent = select(*columns).where(
        r.started_at >= early, or_(r.finished_at.is_(None), r.finished_at >= since)
    )
    stuck = select(*columns).where(r.status == "running", r.started_at < early)
    if until is not None:
        recent = recent.where(r.started_at <= until)
    both = union_all(recent, stuck).subquery()
    stmt = (
        select(*(both.c[c] for c in TIMELINE_COLUMNS))
        .order_by(both.c.started_at.desc(), both.c.id.desc())
        .limit(limit)
    )
    frame = _frame(db, stmt, TIMELINE_COLUMNS).iloc[::-1].reset_index(drop=True)
    for name in ("started_at", "finished_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True)
    frame["status"] = [str(getattr(s, "value", s)) for s in frame["status"]]
    frame["resolved_by_run_id"] = frame["resolved_by_run_id"].astype("Int64")
    return _floats(frame, ["duration_seconds", "wait_seconds", "http_seconds"])


def runs_by_status(db: DatabaseCore, since: datetime) -> dict[str, int]:
    """How many runs started since a time, per status (every status present, zero when none).

    One range scan of the started_at index: conditional sums, not GROUP BY status (which would make
    SQLite walk the whole (status, started_at) index instead).
    """
    status = DataIngestionLog.status
    stmt = select(*(func.sum(case((status == s, 1), else_=0)) for s in RUN_STATUSES)).where(
        DataIngestionLog.started_at >= since
    )
    with db.engine.connect() as conn:
        counts = conn.execute(stmt).one()
    return {s: int(n or 0) for s, n in zip(RUN_STATUSES, counts, strict=True)}


def runs_per_hour(db: DatabaseCore, since: datetime) -> pd.DataFrame:
    """Runs started since a time per UTC hour and status: hour, status, runs."""
    hour = hour_of(db, DataIngestionLog.started_at).label("hour")
    stmt = (
        select(hour, DataIngestionLog.status, func.count().label("runs"))
        .where(DataIngestionLog.started_at >= since)
        .group_by("hour", DataIngestionLog.status)
        .order_by("hour")
    )
    frame = _frame(db, stmt, ["hour", "status", "runs"])
    return _days(frame, "hour", unit="h")


def latest_failures(db: DatabaseCore, limit: int = 10, *, unresolved_only: bool = False) -> pd.DataFrame:
    """The newest failed runs with their (stored, redacted) error; `unresolved_only` leaves out those a
    later run made good (`resolved_by_run_id` set)."""
    r = DataIngestionLog
    stmt = (
        select(r.id, r.started_at, r.source, r.data_type, r.coin, r.error_class, r.error_message)
        .where(r.status == "failed")
        .order_by(r.started_at.desc(), r.id.desc())
        .limit(limit)
    )
    if unresolved_only:
        stmt = stmt.where(r.resolved_by_run_id.is_(None))
    frame = _frame(
        db, stmt, ["id", "started_at", "source", "data_type", "coin", "error_class", "error_message"]
    )
    frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True)
    return frame


def failures_by_resolution(db: DatabaseCore, since: datetime) -> dict[str, int]:
    """Failed runs started since a time: how many nothing has made good yet ("unresolved") and how many
    a later run made good ("made_good"). One range scan of the started_at index, like `runs_by_status`."""
    r = DataIngestionLog
    failed = r.status == "failed"
    stmt = select(
        func.sum(case((and_(failed, r.resolved_by_run_id.is_(None)), 1), else_=0)),
        func.sum(case((and_(failed, r.resolved_by_run_id.is_not(None)), 1), else_=0)),
    ).where(r.started_at >= since)
    with db.engine.connect() as conn:
        unresolved, made_good = conn.execute(stmt).one()
    return {"unresolved": int(unresolved or 0), "made_good": int(made_good or 0)}


def run_log_per_day(db: DatabaseCore, start: date) -> pd.DataFrame:
    """Run-log rows since a day per UTC day, status and data type: day, status, data_type, runs, rows.

    One read feeds both the log-volume and the growth charts. On PostgreSQL it is one range scan of the
    started_at index, hash-aggregated. SQLite can only group by sorting, and sorting every run of the
    window cost more than everything else on the Database page: there each (day, status, data type) cell
    is counted and summed by seeks into the (data_type, status, started_at, records_inserted) index, which
    walk only that cell's entries and never touch the table or a sorter.
    """
    r = DataIngestionLog
    if _is_sqlite(db):
        stmt: Select[*tuple[Any, ...]] = _run_log_cells(start)
    else:
        day = day_of(db, r.started_at).label("day")
        stmt = (
            select(
                day,
                r.status,
                r.data_type,
                func.count().label("runs"),
                func.sum(r.records_inserted).label("rows"),
            )
            .where(r.started_at >= start_of(start))
            .group_by("day", r.status, r.data_type)
            .order_by("day")
        )
    frame = _frame(db, stmt, ["day", "status", "data_type", "runs", "rows"])
    frame["status"] = [str(getattr(s, "value", s)) for s in frame["status"]]
    return _days(_floats(frame, ["runs", "rows"]))


def _run_log_cells(start: date) -> Select[*tuple[Any, ...]]:
    """SQLite: (day, status, data_type, runs, rows) for every day from `start` to the newest run's, every
    status and every data type in the log, cells without runs left out.

    The statuses and data types are found by skipping through their indexes (one seek per value), the days
    are numbered by a recursive CTE, and each cell's count and sum are correlated index range reads.
    """
    r = DataIngestionLog
    at = type_coerce(r.started_at, Integer)  # epoch microseconds on SQLite
    newest_day = select(func.max(at) // _US_PER_DAY).scalar_subquery()
    first_day = (start - date(1970, 1, 1)).days
    days = select(literal(first_day).label("day")).cte("days", recursive=True)
    days = days.union_all(select((days.c.day + 1).label("day")).where(days.c.day < newest_day))
    statuses = _distinct_values(r.status, "statuses")
    types = _distinct_values(r.data_type, "types")
    cell = and_(
        r.status == statuses.c.value,
        r.data_type == types.c.value,
        at >= days.c.day * _US_PER_DAY,
        at < (days.c.day + 1) * _US_PER_DAY,
    )
    cells = (
        select(
            days.c.day,
            statuses.c.value.label("status"),
            types.c.value.label("data_type"),
            select(func.count()).where(cell).scalar_subquery().label("runs"),
            select(func.sum(r.records_inserted)).where(cell).scalar_subquery().label("rows"),
        )
        .select_from(days.join(statuses, true()).join(types, true()))
        .where(statuses.c.value.is_not(None), types.c.value.is_not(None))
        .cte("cells")
        .prefix_with("MATERIALIZED")  # counted once per cell, not again for the filter below
    )
    return select(*cells.c).where(cells.c.runs > 0).order_by(cells.c.day, cells.c.status, cells.c.data_type)


def _distinct_values(column: Any, name: str) -> Any:
    """A recursive CTE (column `value`) of the distinct values of a column that leads an index, then one
    NULL: one index seek per value instead of a walk of the index."""
    first = select(func.min(column).label("value")).cte(name, recursive=True)
    following = select(func.min(column)).where(column > first.c.value).scalar_subquery()
    return first.union_all(select(following.label("value")).where(first.c.value.is_not(None)))


def log_volume_per_day(db: DatabaseCore, start: date, per_day: pd.DataFrame | None = None) -> pd.DataFrame:
    """Ingestion-log rows per UTC day and status since a day: day, status, runs."""
    frame = run_log_per_day(db, start) if per_day is None else per_day
    return frame.groupby(["day", "status"], as_index=False)[["runs"]].sum()


def rows_written_per_day(db: DatabaseCore, start: date, per_day: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows the ingestion runs inserted per UTC day and data type (growth, from the indexed run log)."""
    frame = run_log_per_day(db, start) if per_day is None else per_day
    return frame.groupby(["day", "data_type"], as_index=False)[["rows"]].sum()


GROWTH_TABLES: dict[str, type[AuditMixin]] = {
    "blockchain_blocks": BlockchainBlock,
    "blockchain_transactions": BlockchainTransaction,
    "blockchain_addresses": BlockchainAddress,
    "market_prices": MarketPrice,
    "data_ingestion_logs": DataIngestionLog,
}


def rows_created_per_day(db: DatabaseCore, start: date, tables: Sequence[str] = ()) -> pd.DataFrame:
    """Rows per UTC day of `created_at` and table since a day: day, table, rows.

    `created_at` has no index, so this scans each table; the dashboard runs it only on request.
    """
    parts = []
    for name in tables or GROWTH_TABLES:
        orm = GROWTH_TABLES[name]
        day = day_of(db, orm.created_at).label("day")
        stmt = (
            select(day, func.count().label("rows"))
            .where(orm.created_at >= start_of(start))
            .group_by("day")
            .order_by("day")
        )
        frame = _frame(db, stmt, ["day", "rows"])
        frame.insert(1, "table", name)
        parts.append(frame)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["day", "table", "rows"])
    return _days(frame)


def table_row_counts(db: DatabaseCore) -> dict[str, int]:
    """Rows per table of the schema, each counted exactly (a walk of every table: see
    `table_row_estimates` for a page)."""
    counts = {}
    with db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            counts[table.name] = conn.scalar(select(func.count()).select_from(table)) or 0
    return counts


# A table with more rows than this is not counted row by row on a page: its count is estimated.
EXACT_COUNT_LIMIT = 10_000


class RowCounts(dict[str, int]):
    """Rows per table, a plain mapping to every caller; the tables named in `approximate` hold an
    estimate, not an exact count (see `table_row_estimates`)."""

    approximate: frozenset[str]

    def __init__(self, counts: Mapping[str, int] | None = None, approximate: Iterable[str] = ()) -> None:
        super().__init__(counts or {})
        self.approximate = frozenset(approximate)


def table_row_estimates(db: DatabaseCore, exact_limit: int = EXACT_COUNT_LIMIT) -> RowCounts:
    """Rows per table of the schema at a cost that does not grow with the tables: exact up to
    `exact_limit` rows, an estimate (named in `approximate`) beyond.

    Every table is counted up to `exact_limit + 1` rows (a scan that stops there); one that holds no more
    is counted exactly. A larger one is estimated from what the database keeps anyway:

    - SQLite: the span of its row ids, max(rowid) - min(rowid) + 1 (two seeks of the table's b-tree).
      Rows are appended and upserts update in place, so this is exact until rows are deleted from the
      middle of a table, and then too high by those rows.
    - PostgreSQL: the planner's own estimate, `pg_class.reltuples` (as of the last VACUUM or ANALYZE)
      per page, times the pages the table has now.

    A table without such an estimate (never analysed, or without row ids), or whose estimate is below the
    bounded count (statistics older than the rows), is counted exactly.
    """
    tables = Base.metadata.sorted_tables
    with db.engine.connect() as conn:
        counts = _bounded_counts(db, conn, tables, exact_limit + 1)
        large = [t for t in tables if counts[t.name] > exact_limit]
        estimates = _row_estimates(db, conn, large) if large else {}
        approximate = set()
        for table in large:
            estimate = estimates.get(table.name)
            if estimate is None or estimate < counts[table.name]:  # none, or older than the rows
                counts[table.name] = conn.scalar(select(func.count()).select_from(table)) or 0
            else:
                counts[table.name] = estimate
                approximate.add(table.name)
    return RowCounts(counts, approximate)


def _bounded_counts(db: DatabaseCore, conn: Connection, tables: Sequence[Table], cap: int) -> dict[str, int]:
    """Rows per table, each counted up to `cap` (one statement, one row; each scan stops at `cap` rows).

    Written as text: the dashboard's first render builds a new engine, and compiling an expression of
    this many subqueries cost more than running it."""
    name = db.engine.dialect.identifier_preparer.quote
    counts = ", ".join(
        f"(SELECT count(*) FROM (SELECT 1 FROM {name(t.name)} LIMIT :cap) AS head_{i})"
        for i, t in enumerate(tables)
    )
    row = conn.execute(text(f"SELECT {counts}"), {"cap": cap}).one()
    return {t.name: int(n or 0) for t, n in zip(tables, row, strict=True)}


def _row_estimates(db: DatabaseCore, conn: Connection, tables: Sequence[Table]) -> dict[str, int | None]:
    """The estimated rows of some tables (see `table_row_estimates`); None where the database has none."""
    if _is_sqlite(db):
        name = db.engine.dialect.identifier_preparer.quote
        spans = {
            t.name: f"(SELECT max(rowid) FROM {name(t.name)}) - (SELECT min(rowid) FROM {name(t.name)}) + 1"
            for t in tables
            if t.dialect_options["sqlite"].get("with_rowid") is not False
        }
        row = conn.execute(text(f"SELECT {', '.join(spans.values())}")).one() if spans else ()
        found: dict[str, float | None] = dict(zip(spans, row, strict=True))
    else:
        rows = conn.execute(
            text(
                "SELECT c.relname, CASE WHEN c.reltuples < 0 OR c.relpages = 0 THEN NULL"
                " ELSE c.reltuples::float8 / c.relpages"
                " * (pg_relation_size(c.oid) / current_setting('block_size')::int) END"
                " FROM pg_class AS c"
                " WHERE c.oid IN (SELECT to_regclass(name) FROM unnest(CAST(:names AS text[])) AS name)"
            ),
            {"names": [t.name for t in tables]},
        )
        found = {str(name): estimate for name, estimate in rows}
    return {t.name: None if (e := found.get(t.name)) is None else round(e) for t in tables}


# ---------------------------------------------------------------------------------------------- requests


def open_requests(db: DatabaseCore, run_ids: Sequence[int]) -> dict[int, str]:
    """Run id -> status of its open (pending or running) request, for some runs."""
    if not run_ids:
        return {}
    stmt = select(ReplayRequest.run_id, ReplayRequest.status).where(
        ReplayRequest.run_id.in_(list(run_ids)), ReplayRequest.status.in_(("pending", "running"))
    )
    with db.engine.connect() as conn:
        return {row.run_id: row.status for row in conn.execute(stmt)}


def backfill_queue(db: DatabaseCore) -> dict[str, int]:
    """Backfill requests (queued gap fills) per status: pending, running, done, failed."""
    stmt = (
        select(ReplayRequest.status, func.count())
        .where(ReplayRequest.kind == "backfill")
        .group_by(ReplayRequest.status)
    )
    with db.engine.connect() as conn:
        return {status: int(n) for status, n in conn.execute(stmt)}
