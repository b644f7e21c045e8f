"""Column types that stay exact on both SQLite and PostgreSQL.

SQLAlchemy's `Numeric` is stored as REAL on SQLite, so wei amounts above 2**53 and prices such as
1.234e-9 would come back rounded. These types keep canonical decimal text on SQLite and NUMERIC on
PostgreSQL. The `to_db_*` functions are the same conversions, exposed so that the bulk-load fast path
in `database.py` writes exactly what the ORM would.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Dialect, Numeric, String
from sqlalchemy.types import TypeDecorator, TypeEngine

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def decimal_to_text(value: Decimal | None) -> str | None:
    """Canonical plain-notation text for a decimal: no exponent, no trailing zeros."""
    if value is None:
        return None
    if value == value.to_integral_value():
        return str(int(value))
    text = format(value, "f")
    return text.rstrip("0") if "." in text else text


def int_to_sqlite(value: int | None) -> int | str | None:
    """Integers that fit SQLite's int64 go in as they are (the TEXT column stores their digits)."""
    if value is None or _INT64_MIN <= value <= _INT64_MAX:
        return value
    return str(value)


def datetime_to_text(value: datetime | None) -> str | None:
    """UTC timestamps as sortable ISO text, the format SQLite's own date functions understand."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(sep=" ", timespec="microseconds")


class ExactDecimal(TypeDecorator[Decimal]):
    """A decimal with no rounding: NUMERIC on PostgreSQL, decimal text on SQLite."""

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String())
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = value if isinstance(value, Decimal) else Decimal(str(value))
        return decimal_to_text(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(str(value))


class NativeAmount(TypeDecorator[int]):
    """An exact integer of any size (satoshi, wei): NUMERIC(78, 0) on PostgreSQL, digits on SQLite."""

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String())
        return dialect.type_descriptor(Numeric(78, 0, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return int_to_sqlite(int(value)) if dialect.name == "sqlite" else int(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp; SQLite keeps no zone, so values are normalised both ways."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(26))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return datetime_to_text(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
