"""Reads of the Parquet export (`pipeline/export/`): which partitions a table has and what changed in them,
and the rows of one partition in keyset chunks (this module never writes).

A table's partitions are its rows grouped by coin (and quote), and by a range of its `span` column: a
range of heights (`block_id // height_span`) or a UTC month, year or day. `partition_stats` counts each
partition's rows and finds its newest `updated_at` (every upsert and update sets it, and an upsert that
changes nothing leaves it alone) and a digest of all of them, which the export compares with what it
wrote last time: a newer `updated_at` or another digest means changed or added rows, a different count
deleted ones.

`partition_chunks` reads one partition inside one read transaction (a snapshot: REPEATABLE READ on
PostgreSQL, a WAL read transaction on SQLite), `chunk_rows` rows at a time in the table's unique key order,
each chunk continuing after the last key of the one before, so memory stays bounded however large the
partition. Values come back portable, whatever the dialect stores: amounts and decimals as canonical
decimal text (every digit), timestamps as integer epoch microseconds (UTC), dates as `date`, JSON as text.

Dialect notes: SQLite stores timestamps as epoch microseconds and dates as ISO text, PostgreSQL as
timestamptz and date, so the month, year and day buckets are built per dialect. Rows are read without the
columns' type processing: the conversion to portable values happens in SQL where the driver then builds a
cheaper object (PostgreSQL's NUMERIC and timestamptz as text and integers, not Decimal and datetime; about
twice as fast), else per column in bulk. The keyset continues from the key columns' stored values,
selected once more at the end of each row. Grouping is by output label, as in `store/queries.py`.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Collection, Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    Integer,
    String,
    Table,
    Text,
    bindparam,
    case,
    cast,
    extract,
    func,
    select,
    tuple_,
    type_coerce,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import NullType

from pipeline.columns import ExactDecimal, NativeAmount, UTCDateTime
from pipeline.models import (
    Base,
    BlockchainAddress,
    BlockchainBlock,
    BlockchainTransaction,
    ChainDailyStats,
    CoinMetadata,
    DailyPriceStats,
    DataIngestionLog,
    MarketPrice,
    PriceCandle,
    PricePoint,
)
from pipeline.store.engine import DatabaseCore

Bucket = Literal["height", "month", "year", "day"]
CoinKind = Literal["symbol", "coingecko"]
# What a column holds, for the export's Parquet types.
ColumnKind = Literal[
    "text", "json", "int32", "int64", "bool", "float", "amount", "decimal", "timestamp", "date"
]
PartitionValue = str | int

_RAW = NullType()
# Per bucket: SQLite's strftime format, PostgreSQL's to_char format, and the width of the ISO prefix.
_FORMATS: dict[str, tuple[str, str, int]] = {
    "month": ("%Y-%m", "YYYY-MM", 7),
    "year": ("%Y", "YYYY", 4),
    "day": ("%Y-%m-%d", "YYYY-MM-DD", 10),
}


@dataclass(frozen=True)
class ExportTable:
    """How one table is exported: its folder name, the columns that partition it and its keyset order.

    `coin` holds the coin (a symbol, or a CoinGecko id for the price tables: `coin_kind`), `groups` any
    further equality columns (the quote), `span` the column a partition covers a range of (`bucket`
    says which kind of range) and `order` a unique key of the rows within one partition.
    """

    name: str
    model: type[Base]
    coin: str | None
    coin_kind: CoinKind | None
    groups: tuple[str, ...]
    span: str | None
    bucket: Bucket | None
    order: tuple[str, ...]

    @property
    def table(self) -> Table:
        """The SQLAlchemy table."""
        table: Table = self.model.__table__  # type: ignore[assignment]
        return table

    @property
    def partition_columns(self) -> tuple[str, ...]:
        """The names of a partition's values, in order: coin, groups, then the bucket (named by kind)."""
        names = (("coin",) if self.coin else ()) + self.groups
        return names + ((self.bucket,) if self.bucket else ())

    @property
    def range_column(self) -> str:
        """The column whose min and max describe a partition's key range."""
        return self.span or self.order[0]


EXPORT_TABLES: dict[str, ExportTable] = {
    t.name: t
    for t in (
        ExportTable(
            "blocks", BlockchainBlock, "coin_symbol", "symbol", (), "block_id", "height", ("block_id",)
        ),
        ExportTable(
            "transactions",
            BlockchainTransaction,
            "coin_symbol",
            "symbol",
            (),
            "block_id",
            "height",
            ("block_id", "tx_hash"),
        ),
        ExportTable("addresses", BlockchainAddress, "coin_symbol", "symbol", (), None, None, ("address",)),
        ExportTable(
            "prices", MarketPrice, "coin_id", "coingecko", (), "price_date", "month", ("price_date",)
        ),
        ExportTable("price_points", PricePoint, "coin_id", "coingecko", ("quote",), "ts", "month", ("ts",)),
        ExportTable(
            "candles",
            PriceCandle,
            "coin_id",
            "coingecko",
            ("quote",),
            "start",
            "month",
            ("interval", "start"),
        ),
        ExportTable("price_stats", DailyPriceStats, "coin_id", "coingecko", (), "day", "year", ("day",)),
        ExportTable("chain_stats", ChainDailyStats, "coin_symbol", "symbol", (), "day", "year", ("day",)),
        ExportTable("runs", DataIngestionLog, None, None, (), "started_at", "day", ("id",)),
        ExportTable("coins", CoinMetadata, None, None, (), None, None, ("symbol",)),
    )
}


@dataclass(frozen=True)
class PartitionStats:
    """One partition as it stands in the database: its values (coin, groups, bucket: see
    `ExportTable.partition_columns`), its row count, its newest `updated_at` and the `updated_digest` of
    all of them."""

    values: tuple[PartitionValue, ...]
    rows: int
    last_updated: datetime
    updated_digest: int


# A fingerprint of a partition's `updated_at` values: the sum of each one's epoch microseconds modulo this
# prime. Any row whose `updated_at` changes changes it (unless by an exact multiple of ~1 s: one chance in
# a million), even when the newest `updated_at` and the row count stay the same: an update committed late
# by a transaction that began before another writer's, or written by a host whose clock is behind.
DIGEST_MODULUS = 1_000_003


def updated_digest(epoch_microseconds: Iterable[int]) -> int:
    """The digest of some `updated_at` values (epoch microseconds), as `partition_stats` computes it."""
    return sum(value % DIGEST_MODULUS for value in epoch_microseconds)


def column_kinds(spec: ExportTable) -> list[tuple[str, ColumnKind]]:
    """Every column of the table, in table order, with what it holds."""
    return [(column.name, _kind(column)) for column in spec.table.columns]


def _kind(column: Column[Any]) -> ColumnKind:
    kind: ColumnKind
    match column.type:
        case NativeAmount():
            kind = "amount"
        case ExactDecimal():
            kind = "decimal"
        case UTCDateTime():
            kind = "timestamp"
        case Date():
            kind = "date"
        case JSON():
            kind = "json"
        case Boolean():
            kind = "bool"
        case BigInteger():
            kind = "int64"
        case Integer():
            kind = "int32"
        case Float():
            kind = "float"
        case String() | Text():
            kind = "text"
        case other:
            msg = f"{column.table.name}.{column.name}: no export kind for {other!r}"
            raise TypeError(msg)
    return kind


def bucket_bounds(bucket: Bucket, value: PartitionValue, height_span: int) -> tuple[Any, Any]:
    """The half-open range [low, high) of `span` values in a bucket: heights, or dates for the others
    (the reads turn them into timestamps for a timestamp column)."""
    if bucket == "height":
        low = int(value) * height_span
        return low, low + height_span
    text = str(value)
    if bucket == "day":
        day = date.fromisoformat(text)
        return day, day + timedelta(days=1)
    if bucket == "month":
        year, month = int(text[:4]), int(text[5:7])
        return date(year, month, 1), date(year + month // 12, month % 12 + 1, 1)
    year = int(text)
    return date(year, 1, 1), date(year + 1, 1, 1)


class ExportReadMixin(DatabaseCore):
    """The export's reads of `DatabaseService`."""

    def partition_stats(
        self, spec: ExportTable, *, coins: Collection[str] | None = None, height_span: int
    ) -> list[PartitionStats]:
        """Every partition of the table (of the given coins, when `coins` is given and the table has a
        coin), with its row count, newest `updated_at` and `updated_digest`, in partition order. One scan
        of the table (there is no index on `updated_at`: a "changed since" filter would scan it too, and
        could not see deleted rows)."""
        table = spec.table
        keys: list[ColumnElement[Any]] = []
        if spec.coin:
            keys.append(table.c[spec.coin].label("p_coin"))
        keys += [table.c[name].label(f"p_{name}") for name in spec.groups]
        if spec.bucket:
            keys.append(self._bucket_expression(spec, height_span).label("p_bucket"))
        digest = func.sum(self._epoch_us(table.c.updated_at) % DIGEST_MODULUS)
        stmt = select(
            *keys, func.count().label("n"), func.max(table.c.updated_at).label("last"), digest.label("digest")
        )
        if spec.coin and coins is not None:
            stmt = stmt.where(table.c[spec.coin].in_(sorted(coins)))
        if keys:
            labels = [key.name for key in keys]
            stmt = stmt.group_by(*labels).order_by(*labels)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        stats = []
        for row in rows:
            *values, count, last, digest = row
            if not count:  # a table without rows and without partition columns still answers one row
                continue
            stats.append(PartitionStats(tuple(values), int(count), last, int(digest)))
        return stats

    def partition_chunks(
        self,
        spec: ExportTable,
        values: tuple[PartitionValue, ...],
        *,
        height_span: int,
        chunk_rows: int,
    ) -> Generator[dict[str, list[Any]], None, None]:
        """The rows of one partition as columnar chunks ({column: values}) of at most `chunk_rows` rows,
        read in one snapshot in the table's key order; values are portable (see the module docstring)."""
        table = spec.table
        kinds = column_kinds(spec)
        names = [name for name, _kind in kinds]
        # The keyset continues from the key's stored values, selected once more after the exported ones.
        order = [type_coerce(table.c[name], _RAW) for name in spec.order]
        keys = [key.label(f"export_key_{i}") for i, key in enumerate(order)]
        exported = [self._exported_column(table.c[name], kind).label(name) for name, kind in kinds]
        stmt = select(*exported, *keys).where(*self._partition_filter(spec, values, height_span))
        stmt = stmt.order_by(*order).limit(chunk_rows)
        converters = [self._portable(kind) for _name, kind in kinds]
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                after: tuple[Any, ...] | None = None
                while True:
                    page = stmt
                    if after is not None:
                        marks = [bindparam(None, v, type_=_RAW) for v in after]
                        page = stmt.where(tuple_(*order) > tuple_(*marks))
                    with _cyclic_gc_paused():
                        rows = conn.execute(page).all()
                        if not rows:
                            return
                        columns = list(zip(*rows, strict=True))[: len(names)]
                        chunk = {
                            name: (list(col) if convert is None else [convert(v) for v in col])
                            for name, col, convert in zip(names, columns, converters, strict=True)
                        }
                    yield chunk
                    if len(rows) < chunk_rows:
                        return
                    after = tuple(rows[-1][len(names) :])

    # ------------------------------------------------------------------ helpers

    def _bucket_expression(self, spec: ExportTable, height_span: int) -> ColumnElement[Any]:
        column = spec.table.c[spec.span or ""]
        if spec.bucket == "height":
            return column // height_span
        sqlite_format, pg_format, width = _FORMATS[spec.bucket or "day"]
        stamp = isinstance(column.type, UTCDateTime)
        if self.dialect == "sqlite":
            if stamp:  # epoch microseconds
                seconds = type_coerce(column, BigInteger) // 1_000_000
                return func.strftime(sqlite_format, seconds, "unixepoch")
            return func.substr(type_coerce(column, String), 1, width)  # ISO text: 'YYYY-MM-DD'
        if stamp:
            return func.to_char(func.timezone("UTC", column), pg_format)
        return func.to_char(column, pg_format)

    def _partition_filter(
        self, spec: ExportTable, values: tuple[PartitionValue, ...], height_span: int
    ) -> list[ColumnElement[bool]]:
        table = spec.table
        names = ([spec.coin] if spec.coin else []) + list(spec.groups)
        where: list[ColumnElement[bool]] = [
            table.c[name] == value for name, value in zip(names, values, strict=False)
        ]
        if spec.bucket and spec.span:
            column = table.c[spec.span]
            low, high = bucket_bounds(spec.bucket, values[len(names)], height_span)
            if isinstance(column.type, UTCDateTime):
                low, high = (datetime(d.year, d.month, d.day, tzinfo=UTC) for d in (low, high))
            where += [column >= low, column < high]
        return where

    def _exported_column(self, column: Column[Any], kind: ColumnKind) -> ColumnElement[Any]:
        """A column as the export selects it: converted to its portable form in SQL where that is cheaper
        than in Python (a text or an integer is built faster by the driver than a Decimal or a datetime)."""
        raw = type_coerce(column, _RAW)
        if self.dialect == "sqlite":
            # Amounts are integers while they fit int64, their digits beyond; decimals are canonical text
            # already, timestamps epoch microseconds, JSON text.
            return cast(raw, Text) if kind == "amount" else raw
        if kind in ("amount", "json"):
            return cast(raw, Text)  # NUMERIC(78, 0) prints its digits
        if kind == "decimal":  # NUMERIC prints no exponent; drop the trailing zeros of its scale
            text = cast(raw, Text)
            trimmed = func.rtrim(func.rtrim(text, "0"), ".")
            return case((func.strpos(text, ".") > 0, trimmed), else_=text)
        if kind == "timestamp":
            return self._epoch_us(column)
        return raw

    def _epoch_us(self, column: Column[Any]) -> ColumnElement[int]:
        """A timestamp column as integer epoch microseconds, exact: SQLite stores them so; on PostgreSQL
        whole seconds plus the microseconds (EXTRACT(EPOCH) was a double before version 14)."""
        if self.dialect == "sqlite":
            return type_coerce(column, BigInteger)
        raw = type_coerce(column, _RAW)
        seconds = cast(extract("epoch", func.date_trunc("second", raw)), BigInteger)
        return seconds * 1_000_000 + cast(extract("microseconds", raw), BigInteger) % 1_000_000

    def _portable(self, kind: ColumnKind) -> Callable[[Any], Any] | None:
        """The conversion in Python from what `_exported_column` selects to the portable value (None: as
        it is)."""
        if self.dialect == "sqlite":
            if kind == "date":
                return _iso_date
            if kind == "bool":
                return _bool
        return None


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a chunk is built: its hundreds of thousands of new tuples, strings
    and numbers hold no cycles, yet their allocation triggers collections that walk the whole heap (about
    half the time of a chunk on SQLite). Reference counting still frees everything as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _iso_date(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


def _bool(value: int | None) -> bool | None:
    return None if value is None else bool(value)
