"""Bulk idempotent upserts, the fastest correct path on each dialect.

- SQLite: records become tuples in storage form (one generated function per table, so a row costs a
  single call) and go through `executemany` on the raw connection: first `INSERT ... ON CONFLICT DO
  NOTHING`, whose row count is the number of new rows; only if some keys already existed, a second
  pass `INSERT ... ON CONFLICT DO UPDATE ... WHERE <a value changed>` counts the changed ones. A batch of
  new rows therefore costs exactly one executemany, which is what the raw-driver baseline does.
- PostgreSQL: rows are streamed with COPY into a temporary table, then merged with one
  `INSERT ... SELECT ... ON CONFLICT DO UPDATE ... WHERE <changed> RETURNING (xmax = 0)`.

Both report inserted, updated (a value changed) and unchanged rows; identical rows are not rewritten.
Rows that arrive twice in one batch are merged first (the last one wins), because PostgreSQL refuses
to update one row twice in one statement.

One bad record never fails its batch (the records are already valid models; these are the refusals only
the database or the rest of the batch can see):

- Records of one batch that share a secondary unique key (two heights claiming one block hash)
  contradict each other, and nothing says which one is right: all of them are rejected, before the write,
  so that no wrong row is stored (a later read of those heights stores the right ones).
- Records the database refuses (a unique key held by a stored row, a check, a foreign key, a value out
  of range) become rejects with the database's one-line reason, and the rest is written. On SQLite a
  refused row undoes only its own statement and the executemany carries on after it: the happy path is
  unchanged. On PostgreSQL an error aborts the transaction, so each batch is written in a SAVEPOINT (one
  SAVEPOINT and RELEASE per batch on the happy path, no extra query) and a refused batch is split
  (FANOUT parts, each in its own savepoint, refused parts split again) down to the refused records.
  A record refused on a unique key is tried once more after the rest of its batch, which may have freed
  the key.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import attrgetter, length_hint
from typing import Any

import psycopg
from sqlalchemy import Connection, Date, Table, UniqueConstraint, and_, not_, select
from sqlalchemy.exc import DBAPIError

from pipeline.columns import (
    ExactDecimal,
    NativeAmount,
    UTCDateTime,
    datetime_to_epoch_us,
    decimal_to_text,
    int_to_sqlite,
)
from pipeline.ranges import utcnow
from pipeline.schemas import Reject, UpsertResult

AUDIT_COLUMNS = ("created_at", "updated_at")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
RowBuilder = Callable[[dict[str, Any], tuple[Any, ...]], tuple[Any, ...]]
# What the database says about one row's values (PEP 249 IntegrityError/DataError of both drivers, and
# the OverflowError sqlite3 raises for an integer beyond int64). Anything else (locked, connection
# lost, a bug in a statement) is not the record's fault and still fails the call.
REFUSALS: tuple[type[BaseException], ...] = (
    sqlite3.IntegrityError,
    sqlite3.DataError,
    psycopg.IntegrityError,
    psycopg.DataError,
    OverflowError,
)
MAX_REASON_CHARS = 300
_VALUE_CHARS = 80


def _date_to_text(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _sqlite_converter(column_type: Any) -> Callable[[Any], Any] | None:
    """The storage conversion the column's type applies on SQLite, as a plain function."""
    if isinstance(column_type, ExactDecimal):
        return decimal_to_text
    if isinstance(column_type, NativeAmount):
        return int_to_sqlite
    if isinstance(column_type, UTCDateTime):
        return datetime_to_epoch_us
    if isinstance(column_type, Date):
        return _date_to_text
    return None


def _compile_row_builder(
    fields: tuple[str, ...], converters: list[Callable[[Any], Any] | None]
) -> RowBuilder:
    """Generate `lambda values, audit: (values["a"], conv(values["b"]), ..., *audit)`.

    One generated call per row is several times faster than a loop over columns in Python; the source
    is built only from the table's own column names, never from data. Integers that fit SQLite's int64
    are passed through inline (the TEXT column stores their digits), the rest go through `str`.
    """
    namespace: dict[str, Any] = {"int_min": _INT64_MIN, "int_max": _INT64_MAX, "epoch": _EPOCH, "us": _US}
    parts = []
    for i, (name, conv) in enumerate(zip(fields, converters, strict=True)):
        get = f"values[{name!r}]"
        # The common conversions are inlined: a Python call per cell costs more than the work itself.
        if conv is int_to_sqlite:
            get = f"(v if (v := {get}) is None or int_min <= v <= int_max else str(v))"
        elif conv is decimal_to_text:
            namespace[f"c{i}"] = conv
            fast = "t if 'E' not in (t := str(v)) and t[-1] != '0'"
            get = f"(None if (v := {get}) is None else {fast} else c{i}(v))"
        elif conv is datetime_to_epoch_us:
            get = f"(None if (v := {get}) is None else (v - epoch) // us)"
        elif conv is not None:
            namespace[f"c{i}"] = conv
            get = f"(None if (v := {get}) is None else c{i}(v))"
        parts.append(get)
    source = f"lambda values, audit: ({', '.join(parts)}, *audit)"
    row_maker: Callable[[dict[str, Any], tuple[Any, ...]], tuple[Any, ...]]
    row_maker = eval(source, namespace)  # noqa: S307 - trusted, generated from table metadata
    return row_maker


@dataclass(frozen=True)
class UpsertSpec:
    """How one table is upserted: its columns (audit stamps last), its key, and its row builders."""

    table: Table
    columns: tuple[str, ...]
    key: tuple[str, ...]
    sqlite_builder: RowBuilder = field(repr=False)
    plain_builder: RowBuilder = field(repr=False)
    # Unique keys other than the primary key (a block's (coin_symbol, hash)).
    unique_keys: tuple[tuple[str, ...], ...] = ()

    @classmethod
    def for_table(cls, table: Table) -> UpsertSpec:
        """Build the spec from the table's primary key, unique constraints and columns."""
        key = tuple(c.name for c in table.primary_key.columns)
        # Key columns first, so that a row's key is the slice row[:len(key)].
        fields = key + tuple(
            c.name for c in table.columns if c.name not in AUDIT_COLUMNS and c.name not in key
        )
        converters = [_sqlite_converter(table.c[name].type) for name in fields]
        uniques = [
            tuple(c.name for c in u.columns) for u in table.constraints if isinstance(u, UniqueConstraint)
        ]
        # A partial unique index binds only some rows; the database still refuses those, one by one.
        uniques += [
            tuple(c.name for c in index.columns)
            for index in table.indexes
            if index.unique and not any(o.get("where") is not None for o in index.dialect_options.values())
        ]
        return cls(
            table=table,
            columns=fields + AUDIT_COLUMNS,
            key=key,
            sqlite_builder=_compile_row_builder(fields, converters),
            plain_builder=_compile_row_builder(fields, [None] * len(fields)),
            # A key that contains the whole primary key cannot be shared once duplicates are merged.
            unique_keys=tuple(dict.fromkeys(u for u in uniques if not set(key) <= set(u))),
        )

    @property
    def data_columns(self) -> tuple[str, ...]:
        """Columns compared and updated on conflict (not the key, not the audit stamps)."""
        return tuple(c for c in self.columns if c not in self.key and c not in AUDIT_COLUMNS)

    def unique(self, records: Iterable[Any]) -> list[Any]:
        """Validated models merged by primary key; the last one of a key wins."""
        key_of = attrgetter(*self.key)
        return list({key_of(record): record for record in records}.values())

    def without_contradictions(self, records: list[Any]) -> tuple[list[Any], list[Reject]]:
        """Split off the records that share a secondary unique key with another record of the batch.

        Every record of such a group is rejected: two heights claiming one hash cannot both be right and
        the batch does not say which one is, so storing either could keep a wrong row for good.
        """
        if not self.unique_keys:
            return records, []
        reasons: dict[int, list[str]] = {}
        key_of_pk = _tuple_getter(self.key)
        for columns in self.unique_keys:
            key_of = attrgetter(*columns)
            claims: dict[Any, list[int]] = {}
            for i, record in enumerate(records):
                value = key_of(record)
                # NULLs never collide in a unique constraint, on either dialect.
                if value is not None and not (isinstance(value, tuple) and None in value):
                    claims.setdefault(value, []).append(i)
            for value, holders in claims.items():
                if len(holders) < 2:
                    continue
                values = value if len(columns) > 1 else (value,)
                for i in holders:
                    others = "; ".join(self.describe_key(key_of_pk(records[j])) for j in holders if j != i)
                    reasons.setdefault(i, []).append(
                        f"{self.describe(columns, values)} is also given for {others} in the same batch"
                    )
        if not reasons:
            return records, []
        kept = [record for i, record in enumerate(records) if i not in reasons]
        suffix = " (contradicting records are all rejected)"
        rejects = [Reject("; ".join(reasons[i]) + suffix, storable(records[i])) for i in sorted(reasons)]
        return kept, rejects

    def describe(self, columns: tuple[str, ...], values: tuple[Any, ...]) -> str:
        """`hash='00ab..'`: a unique key's values, without the columns it shares with the primary key
        (the coin), which two rows of one conflict always have in common."""
        shown = [(c, v) for c, v in zip(columns, values, strict=True) if c not in self.key] or list(
            zip(columns, values, strict=True)
        )
        return ", ".join(f"{c}={_short(v)}" for c, v in shown)

    def describe_key(self, values: tuple[Any, ...]) -> str:
        """`block_id=840000`: a primary key's values, without the columns its unique keys share."""
        shared = {c for u in self.unique_keys for c in u}
        shown = [(c, v) for c, v in zip(self.key, values, strict=True) if c not in shared]
        return ", ".join(f"{c}={_short(v)}" for c, v in shown or zip(self.key, values, strict=True))

    def rows(self, records: Iterable[Any], *, sqlite: bool, now: datetime) -> list[tuple[Any, ...]]:
        """Validated models (whose fields are the table's columns) as tuples in column order."""
        build = self.sqlite_builder if sqlite else self.plain_builder
        stamp = datetime_to_epoch_us(now) if sqlite else now
        audit = (stamp, stamp)
        return [build(record.__dict__, audit) for record in records]

    def sqlite_statement(self, *, update: bool) -> str:
        """The SQLite upsert: DO NOTHING, or DO UPDATE of the rows whose values changed."""
        table = self.table.name
        head = (
            f"INSERT INTO {table} ({', '.join(self.columns)}) VALUES ({', '.join('?' * len(self.columns))}) "
            f"ON CONFLICT ({', '.join(self.key)}) DO "
        )
        if not update:
            return head + "NOTHING"
        updates = ", ".join(f"{c} = excluded.{c}" for c in (*self.data_columns, "updated_at"))
        changed = " OR ".join(f"{table}.{c} IS NOT excluded.{c}" for c in self.data_columns)
        return head + f"UPDATE SET {updates} WHERE {changed}"

    def postgresql_statement(self, staging: str) -> str:
        """Merge the staging table into the table, counting new and changed rows."""
        table = self.table.name
        columns = ", ".join(self.columns)
        updates = ", ".join(f"{c} = excluded.{c}" for c in (*self.data_columns, "updated_at"))
        changed = " OR ".join(f"{table}.{c} IS DISTINCT FROM excluded.{c}" for c in self.data_columns)
        return (
            f"WITH merged AS (INSERT INTO {table} ({columns}) SELECT {columns} FROM {staging} "
            f"ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {updates} WHERE {changed} "
            f"RETURNING (xmax = 0) AS is_new) "
            f"SELECT count(*) FILTER (WHERE is_new), count(*) FILTER (WHERE NOT is_new) FROM merged"
        )


Writer = Callable[[Connection, UpsertSpec, list[Any]], UpsertResult]
# On PostgreSQL a refused batch is split into this many parts, and each refused part again: k bad
# records among n cost about FANOUT * k * log_FANOUT(n / k) attempts, and each level rewrites only the
# refused parts' rows. With 5 bad records per 5,000, halving handed the writer 4.9 n rows in total,
# eight parts 2.6 n (sixteen 2.3 n, for 30% more attempts, which cost more than rows there).
FANOUT = 8


@dataclass(frozen=True)
class _Refusal:
    """A record the database refused when written alone, and the driver's exception."""

    record: Any
    error: BaseException


def upsert(conn: Connection, spec: UpsertSpec, records: Iterable[Any]) -> UpsertResult:
    """Insert or update validated records in the caller's transaction; refused records become rejects."""
    unique = spec.unique(records)
    if not unique:
        return UpsertResult()
    unique, contradicting = spec.without_contradictions(unique)
    result = _write_batch(conn, spec, unique) if unique else UpsertResult()
    if contradicting:
        result += UpsertResult(rejects=contradicting)
    return result


def _write_batch(conn: Connection, spec: UpsertSpec, records: list[Any]) -> UpsertResult:
    """Write the batch; only when the database refuses some of it, find the refused records.

    SQLite undoes just the refused row's statement and keeps the transaction, and an executemany stops
    right after the row it could not write, so it carries on from there: no savepoint (whose statement
    journal cost about 5% of a bulk load) and no rewriting. PostgreSQL aborts the whole transaction on
    an error, so the batch goes in one savepoint, and a refused batch is split (`_isolate`).
    """
    if conn.dialect.name == "sqlite":
        result, refused = _upsert_sqlite(conn, spec, records)
        if not refused:
            return result
        return result + _settle(conn, spec, refused, _sqlite_writer, retry=len(records) > len(refused))
    try:
        with conn.begin_nested():
            return _upsert_postgresql(conn, spec, records)
    except REFUSALS as exc:
        refusal = exc
    with _shared_staging(conn, spec) as write:
        return _isolate(conn, spec, records, refusal, write)


def _isolate(
    conn: Connection, spec: UpsertSpec, records: list[Any], refusal: BaseException, write: Writer
) -> UpsertResult:
    """Write a refused batch's acceptable records and reject the others, with their reasons (PostgreSQL)."""
    if len(records) == 1:
        written, refused = UpsertResult(), [_Refusal(records[0], refusal)]
    else:
        written, refused = _split_and_write(conn, spec, records, write)
    return written + _settle(conn, spec, refused, write, retry=len(records) > len(refused))


def _split_and_write(
    conn: Connection, spec: UpsertSpec, records: list[Any], write: Writer
) -> tuple[UpsertResult, list[_Refusal]]:
    """Write a refused batch in FANOUT parts, each in its own savepoint, splitting refused parts again."""
    result, refused = UpsertResult(), []
    size = -(-len(records) // FANOUT)
    for start in range(0, len(records), size):
        part = records[start : start + size]
        try:
            with conn.begin_nested():
                result += write(conn, spec, part)
            continue
        except REFUSALS as exc:
            if len(part) == 1:
                refused.append(_Refusal(part[0], exc))
                continue
        written, still = _split_and_write(conn, spec, part, write)
        result += written
        refused += still
    return result, refused


def _settle(
    conn: Connection, spec: UpsertSpec, refused: list[_Refusal], write: Writer, *, retry: bool
) -> UpsertResult:
    """Turn refusals into rejects with reasons, retrying unique-key refusals once."""
    result = UpsertResult()
    rejects = []
    for refusal in refused:
        if retry and _is_unique_violation(refusal.error):
            # The rest of the batch is in now, and may have moved the row that held the key (a stored
            # block whose hash is being replaced in this very batch): order within a batch must not matter.
            try:
                with conn.begin_nested():
                    result += write(conn, spec, [refusal.record])
                continue
            except REFUSALS as exc:
                refusal = _Refusal(refusal.record, exc)
        rejects.append(Reject(_reason(conn, spec, refusal), storable(refusal.record)))
    return result + UpsertResult(rejects=rejects)


def _is_unique_violation(error: BaseException) -> bool:
    if isinstance(error, psycopg.errors.UniqueViolation):
        return True
    return isinstance(error, sqlite3.IntegrityError) and (
        getattr(error, "sqlite_errorname", "") in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")
        or str(error).startswith("UNIQUE constraint failed")
    )


def _reason(conn: Connection, spec: UpsertSpec, refusal: _Refusal) -> str:
    """Which stored row holds the unique key, when that is the refusal; else the database's message."""
    message = f"refused by the database: {database_message(refusal.error)}"
    if not _is_unique_violation(refusal.error):
        return message
    holder = _stored_holder(conn, spec, refusal.record)
    return message if holder is None else f"{holder} ({message})"


def _stored_holder(conn: Connection, spec: UpsertSpec, record: Any) -> str | None:
    """`hash='00ab..' is already stored for block_id=839999`, from one query (refusals only)."""
    table = spec.table
    not_this_row = not_(and_(*(table.c[c] == getattr(record, c) for c in spec.key)))
    for columns in spec.unique_keys:
        values = tuple(getattr(record, c) for c in columns)
        if None in values:
            continue
        query = (
            select(*(table.c[c] for c in spec.key))
            .where(*(table.c[c] == v for c, v in zip(columns, values, strict=True)), not_this_row)
            .limit(1)
        )
        try:
            # A savepoint again: a failing look-up must not abort the caller's transaction on PostgreSQL,
            # and the database's own message is a good enough reason without it.
            with conn.begin_nested():
                row = conn.execute(query).first()
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise
            return None
        if row is not None:
            holder = spec.describe_key(tuple(row))
            return f"{spec.describe(columns, values)} is already stored for {holder}"
    return None


def database_message(error: BaseException) -> str:
    """The database's reason in one trimmed line: never the statement, never the other rows' values."""
    if isinstance(error, psycopg.Error) and error.diag.message_primary:
        # The primary message, and a DETAIL that names the key ("Key (coin_symbol)=(XYZ) is not present
        # in table ..."); not "Failing row contains (...)" (the sample has the record) nor the CONTEXT
        # line, which quotes the COPY input.
        text = error.diag.message_primary
        detail = error.diag.message_detail or ""
        if detail.startswith("Key ("):
            text += f" ({detail})"
    else:
        text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"{type(error).__name__}: {text}"[:MAX_REASON_CHARS]


def storable(record: Any) -> Any:
    """A rejected model as JSON-safe values for the run log's samples."""
    return record.model_dump(mode="json") if hasattr(record, "model_dump") else record


def _tuple_getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    get = attrgetter(*names)
    return get if len(names) > 1 else lambda record: (get(record),)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 1] + "…"


def _upsert_sqlite(
    conn: Connection, spec: UpsertSpec, records: list[Any]
) -> tuple[UpsertResult, list[_Refusal]]:
    rows = spec.rows(records, sqlite=True, now=utcnow())
    refused: dict[int, BaseException] = {}
    cursor = conn.connection.cursor()
    try:
        inserted = _executemany_past_refusals(cursor, spec.sqlite_statement(update=False), rows, refused)
        updated = 0
        if inserted + len(refused) < len(rows):
            # Some keys existed. Rows inserted a moment ago compare equal to themselves, so this pass
            # rewrites (and counts) only the rows whose values really changed.
            updated = _executemany_past_refusals(cursor, spec.sqlite_statement(update=True), rows, refused)
    finally:
        cursor.close()
    written = len(rows) - len(refused)
    result = UpsertResult(inserted=inserted, updated=updated, unchanged=written - inserted - updated)
    return result, [_Refusal(records[i], refused[i]) for i in sorted(refused)]


def _executemany_past_refusals(
    cursor: Any, statement: str, rows: list[tuple[Any, ...]], refused: dict[int, BaseException]
) -> int:
    """executemany over the rows not refused yet, carrying on past each row the database refuses (kept
    in `refused` by index); returns the number of rows changed."""
    connection = cursor.connection  # the rowcount of a failed executemany is undefined; this count is not
    before = connection.total_changes
    todo = [i for i in range(len(rows)) if i not in refused] if refused else None
    ordered = rows if todo is None else [rows[i] for i in todo]  # the happy path copies nothing
    remaining = iter(ordered)
    while True:
        try:
            cursor.executemany(statement, remaining)
            changed: int = connection.total_changes - before
            return changed
        except REFUSALS as exc:
            # The driver pulls one row at a time and stops at the one it could not write: the rows before
            # it are in (each is its own statement), and the same iterator goes on with the rest.
            failed = len(ordered) - length_hint(remaining) - 1
            refused[failed if todo is None else todo[failed]] = exc


def _sqlite_writer(conn: Connection, spec: UpsertSpec, records: list[Any]) -> UpsertResult:
    """`_upsert_sqlite` as a Writer, for retries: a refusal raises, as on PostgreSQL."""
    result, refused = _upsert_sqlite(conn, spec, records)
    if refused:
        raise refused[0].error
    return result


def _upsert_postgresql(conn: Connection, spec: UpsertSpec, records: list[Any]) -> UpsertResult:
    staging = f"staging_{spec.table.name}"
    cursor = conn.connection.cursor()
    try:
        _create_staging(cursor, spec, staging)
        result = _copy_and_merge(cursor, spec, staging, records)
        cursor.execute(f"DROP TABLE {staging}")
    finally:
        cursor.close()
    return result


def _create_staging(cursor: Any, spec: UpsertSpec, staging: str) -> None:
    # ON COMMIT DROP ties the staging table to the caller's transaction, even if this one fails.
    cursor.execute(f"DROP TABLE IF EXISTS {staging}")
    cursor.execute(f"CREATE TEMP TABLE {staging} (LIKE {spec.table.name} INCLUDING DEFAULTS) ON COMMIT DROP")


def _copy_and_merge(cursor: Any, spec: UpsertSpec, staging: str, records: list[Any]) -> UpsertResult:
    rows = spec.rows(records, sqlite=False, now=utcnow())
    with cursor.copy(f"COPY {staging} ({', '.join(spec.columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    inserted, updated = cursor.execute(spec.postgresql_statement(staging)).fetchone()
    return UpsertResult(inserted=inserted, updated=updated, unchanged=len(rows) - inserted - updated)


@contextmanager
def _shared_staging(conn: Connection, spec: UpsertSpec) -> Iterator[Writer]:
    """A writer for the attempts of a refused batch that all use one staging table, emptied after each.

    Creating and dropping a temporary table costs about 7 ms, four times a small attempt's COPY and
    merge; the table is made once, in the caller's transaction, and a refused attempt's rows leave with
    its savepoint.
    """
    staging = f"staging_{spec.table.name}"

    def write(conn: Connection, spec: UpsertSpec, records: list[Any]) -> UpsertResult:
        cursor = conn.connection.cursor()
        try:
            result = _copy_and_merge(cursor, spec, staging, records)
            cursor.execute(f"DELETE FROM {staging}")
        finally:
            cursor.close()
        return result

    cursor = conn.connection.cursor()
    try:
        _create_staging(cursor, spec, staging)
    finally:
        cursor.close()
    yield write
    # Not in a `finally`: after another error the transaction may be aborted, and ON COMMIT DROP (or
    # the rollback) removes the table anyway.
    cursor = conn.connection.cursor()
    try:
        cursor.execute(f"DROP TABLE {staging}")
    finally:
        cursor.close()
