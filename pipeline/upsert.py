"""Bulk idempotent upserts, the fastest correct path on each dialect.

- SQLite: rows become tuples in storage form and go through one `executemany` of
  `INSERT ... ON CONFLICT DO UPDATE ... WHERE <something changed>` on the raw connection. The ORM's
  per-row machinery would cost about half the throughput.
- PostgreSQL: rows are streamed with COPY into a temporary table, then merged with one
  `INSERT ... SELECT ... ON CONFLICT DO UPDATE ... WHERE <changed>`.

Both count inserted, updated (a value changed) and unchanged rows. Rows that arrive twice in one batch are
merged first (the last one wins), because PostgreSQL refuses to update one row twice in one statement.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, Date, Table

from pipeline.models import utcnow
from pipeline.schemas import UpsertResult
from pipeline.types import (
    ExactDecimal,
    NativeAmount,
    UTCDateTime,
    datetime_to_text,
    decimal_to_text,
    int_to_sqlite,
)

_AUDIT = ("created_at", "updated_at")
# Parameters per statement stay well under SQLite's 32766 limit.
_KEY_LOOKUP_CHUNK = 400


def _sqlite_converter(column_type: Any) -> Callable[[Any], Any] | None:
    """The storage conversion the column's type would apply on SQLite, as a plain function."""
    if isinstance(column_type, ExactDecimal):
        return decimal_to_text
    if isinstance(column_type, NativeAmount):
        return int_to_sqlite
    if isinstance(column_type, UTCDateTime):
        return datetime_to_text
    if isinstance(column_type, Date):
        return _date_to_text
    return None


def _date_to_text(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True)
class UpsertSpec:
    """How one table is upserted: its columns in order, its key, and per-column SQLite converters."""

    table: Table
    columns: tuple[str, ...]
    key: tuple[str, ...]
    converters: tuple[Callable[[Any], Any] | None, ...]

    @classmethod
    def for_table(cls, table: Table) -> UpsertSpec:
        """Build the spec from the table's primary key and columns."""
        # Audit stamps go last so that rows can be built as (*fields, now, now).
        columns = tuple(c.name for c in table.columns if c.name not in _AUDIT) + _AUDIT
        key = tuple(c.name for c in table.primary_key.columns)
        converters = tuple(_sqlite_converter(table.c[name].type) for name in columns)
        return cls(table=table, columns=columns, key=key, converters=converters)

    @property
    def data_columns(self) -> tuple[str, ...]:
        """Columns compared and updated on conflict (not the key, not the audit stamps)."""
        return tuple(c for c in self.columns if c not in self.key and c not in _AUDIT)


def _rows_by_key(spec: UpsertSpec, records: Iterable[Any]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """Records as value tuples in column order, keyed by primary key; later duplicates win."""
    now = utcnow()
    audit = (now, now)
    fields = spec.columns[: -len(_AUDIT)]
    key_positions = [spec.columns.index(k) for k in spec.key]
    rows: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for record in records:
        # A validated model's __dict__ holds every field; a plain dict may leave optional ones out.
        values = record if isinstance(record, dict) else record.__dict__
        row = (*map(values.get, fields), *audit)
        rows[tuple(row[i] for i in key_positions)] = row
    return rows


def upsert(conn: Connection, spec: UpsertSpec, records: Iterable[Any]) -> UpsertResult:
    """Insert or update records (validated models or dicts of column values) in the caller's transaction."""
    rows = _rows_by_key(spec, records)
    if not rows:
        return UpsertResult()
    if conn.dialect.name == "sqlite":
        return _upsert_sqlite(conn, spec, rows)
    return _upsert_postgresql(conn, spec, rows)


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _existing_keys(conn: Connection, spec: UpsertSpec, keys: Sequence[tuple[Any, ...]]) -> int:
    """How many of these keys are already stored (one indexed lookup per chunk)."""
    key_sql = ", ".join(spec.key)
    found = 0
    key_converters = [spec.converters[spec.columns.index(k)] for k in spec.key]
    cursor = conn.connection.cursor()
    try:
        for chunk in _chunks(keys, _KEY_LOOKUP_CHUNK):
            tuples = ", ".join(["(" + ", ".join("?" * len(spec.key)) + ")"] * len(chunk))
            params = [
                conv(v) if conv else v for key in chunk for conv, v in zip(key_converters, key, strict=True)
            ]
            sql = f"SELECT count(*) FROM {spec.table.name} WHERE ({key_sql}) IN (VALUES {tuples})"
            found += cursor.execute(sql, params).fetchone()[0]
    finally:
        cursor.close()
    return found


def _sqlite_statement(spec: UpsertSpec) -> str:
    columns = ", ".join(spec.columns)
    marks = ", ".join("?" * len(spec.columns))
    updates = ", ".join(f"{c} = excluded.{c}" for c in (*spec.data_columns, "updated_at"))
    changed = " OR ".join(f"{spec.table.name}.{c} IS NOT excluded.{c}" for c in spec.data_columns)
    return (
        f"INSERT INTO {spec.table.name} ({columns}) VALUES ({marks}) "
        f"ON CONFLICT ({', '.join(spec.key)}) DO UPDATE SET {updates} WHERE {changed}"
    )


def _to_sqlite(spec: UpsertSpec, rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    converters = spec.converters
    converted_positions = [i for i, conv in enumerate(converters) if conv is not None]
    out = []
    for row in rows:
        values = list(row)
        for i in converted_positions:
            values[i] = converters[i](values[i])
        out.append(tuple(values))
    return out


def _upsert_sqlite(
    conn: Connection, spec: UpsertSpec, rows: dict[tuple[Any, ...], tuple[Any, ...]]
) -> UpsertResult:
    existing = _existing_keys(conn, spec, list(rows))
    cursor = conn.connection.cursor()
    try:
        cursor.executemany(_sqlite_statement(spec), _to_sqlite(spec, rows.values()))
        written = cursor.rowcount
    finally:
        cursor.close()
    inserted = len(rows) - existing
    updated = written - inserted
    return UpsertResult(inserted=inserted, updated=updated, unchanged=existing - updated)


def _postgresql_statement(spec: UpsertSpec, staging: str) -> str:
    table = spec.table.name
    columns = ", ".join(spec.columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in (*spec.data_columns, "updated_at"))
    changed = " OR ".join(f"{table}.{c} IS DISTINCT FROM excluded.{c}" for c in spec.data_columns)
    return (
        f"WITH merged AS (INSERT INTO {table} ({columns}) SELECT {columns} FROM {staging} "
        f"ON CONFLICT ({', '.join(spec.key)}) DO UPDATE SET {updates} WHERE {changed} "
        f"RETURNING (xmax = 0) AS is_new) "
        f"SELECT count(*) FILTER (WHERE is_new), count(*) FILTER (WHERE NOT is_new) FROM merged"
    )


def _upsert_postgresql(
    conn: Connection, spec: UpsertSpec, rows: dict[tuple[Any, ...], tuple[Any, ...]]
) -> UpsertResult:
    staging = f"staging_{spec.table.name}"
    columns = ", ".join(spec.columns)
    cursor = conn.connection.cursor()
    try:
        # ON COMMIT DROP ties the staging table's life to the caller's transaction.
        cursor.execute(f"DROP TABLE IF EXISTS {staging}")
        cursor.execute(
            f"CREATE TEMP TABLE {staging} (LIKE {spec.table.name} INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        with cursor.copy(f"COPY {staging} ({columns}) FROM STDIN") as copy:
            for row in rows.values():
                copy.write_row(row)
        inserted, updated = cursor.execute(_postgresql_statement(spec, staging)).fetchone()
        cursor.execute(f"DROP TABLE {staging}")
    finally:
        cursor.close()
    return UpsertResult(inserted=inserted, updated=updated, unchanged=len(rows) - inserted - updated)
