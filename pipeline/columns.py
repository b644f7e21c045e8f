"""Column types that stay exact on both SQLite and PostgreSQL.

SQLAlchemy's `Numeric` is stored as REAL on SQLite, so wei amounts above 2**53 and prices such as
1.234e-9 would come back rounded. These types keep canonical decimal text on SQLite and NUMERIC on
PostgreSQL; timestamps are TIMESTAMPTZ on PostgreSQL and integer epoch microseconds on SQLite. The
module-level conversion functions are exposed so that the bulk-load fast path in `upsert.py` writes
exactly what the ORM would.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Numeric, String
from sqlalchemy.types import TypeDecorator, TypeEngine

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def decimal_to_text(value: Decimal | None) -> str | None:
    """Canonical plain-notation text for a decimal: no exponent, no trailing zeros."""
    if value is None:
        return None
    text = str(value)
    # Fast path: most values already print in canonical form (this runs once per cell in bulk loads).
    if "E" not in text and not ("." in text and text.endswith("0")) and text != "-0":
        return text
    if value.is_zero():
        return "0"  # also for -0 and 0E-12, so equal values compare equal as text
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def int_to_sqlite(value: int | None) -> int | str | None:
    """Integers that fit SQLite's int64 go in as they are (the TEXT column stores their digits)."""
    if value is None or _INT64_MIN <= value <= _INT64_MAX:
        return value
    return str(value)


def datetime_to_epoch_us(value: datetime | None) -> int | None:
    """A timestamp as integer microseconds since the Unix epoch (SQLite storage: exact, sortable, fast)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND


def epoch_us_to_datetime(value: int) -> datetime:
    """The inverse of `datetime_to_epoch_us`, timezone-aware UTC."""
    return _EPOCH + timedelta(microseconds=value)


class ExactDecimal(TypeDecorator[Decimal]):
    """A decimal with no rounding: NUMERIC on PostgreSQL, decimal text on SQLite."""

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Store as text on SQLite (its NUMERIC is a float) and as arbitrary-precision NUMERIC elsewhere."""
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String())
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """Turn a number into a Decimal via its text (never via a float), canonical text on SQLite."""
        if value is None:
            return None
        value = value if isinstance(value, Decimal) else Decimal(str(value))
        return decimal_to_text(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        """Read the stored text or NUMERIC back as the exact Decimal that was written."""
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(str(value))


class NativeAmount(TypeDecorator[int]):
    """An exact integer of any size (satoshi, wei): NUMERIC(78, 0) on PostgreSQL, digits on SQLite."""

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Store as text on SQLite (so amounts beyond int64 fit) and as NUMERIC(78, 0) elsewhere."""
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String())
        return dialect.type_descriptor(Numeric(78, 0, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """Write a whole number; on SQLite as an integer while it fits int64, as its digits beyond."""
        if value is None:
            return None
        return int_to_sqlite(int(value)) if dialect.name == "sqlite" else int(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        """Read the stored digits, integer or NUMERIC back as a Python int of any size."""
        return None if value is None else int(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp: TIMESTAMPTZ on PostgreSQL, epoch microseconds on SQLite.

    SQLite has no timestamp type; integers keep full precision, sort and index naturally, and cost a
    fraction of ISO text to produce in bulk loads. Read them in SQL with
    `datetime(col / 1000000, 'unixepoch')`.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Store as a BIGINT of epoch microseconds on SQLite and as TIMESTAMPTZ elsewhere."""
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """Write a timestamp as UTC (a naive one is taken to be UTC already), as microseconds on SQLite."""
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return datetime_to_epoch_us(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | int | None, dialect: Dialect) -> datetime | None:
        """Read a stored timestamp back as a timezone-aware UTC datetime, whatever the driver returned."""
        if value is None:
            return None
        if isinstance(value, int):
            return epoch_us_to_datetime(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
