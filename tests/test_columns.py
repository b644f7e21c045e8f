"""Tests for pipeline.columns: canonical decimal text, SQLite integers, epoch microseconds, column types."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, localcontext
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from pipeline.columns import (
    ExactDecimal,
    NativeAmount,
    UTCDateTime,
    datetime_to_epoch_us,
    decimal_to_text,
    epoch_us_to_datetime,
    int_to_sqlite,
)
from tests.support.properties import examples

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# Magnitudes a price, a USD value or a wei amount can take, with any number of decimal places.
realistic_decimals = st.decimals(
    min_value=Decimal("-1e40"), max_value=Decimal("1e40"), allow_nan=False, allow_infinity=False
)
aware_datetimes = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.timezones()
)


def assert_canonical(text: str, value: Decimal) -> None:
    """Plain notation, no trailing zeros after the point, integers without a point, exact."""
    assert "E" not in text.upper()
    assert Decimal(text) == value
    if "." in text:
        assert not text.endswith("0")
        assert not text.endswith(".")
        assert not text.startswith(".")
        assert not text.startswith("-.")
    if value == value.to_integral_value():
        assert "." not in text


# ---------------------------------------------------------------------- decimal_to_text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("0.000000001234"), "0.000000001234"),
        (Decimal("1E-12"), "0.000000000001"),
        (Decimal("3.1337E-14"), "0.000000000000031337"),
        (Decimal("2E12"), "2000000000000"),
        (Decimal("1E13"), "10000000000000"),
        (Decimal("1E+2"), "100"),
        (Decimal("16408802301.8374"), "16408802301.8374"),
        (Decimal("1.50"), "1.5"),
        (Decimal("1.000"), "1"),
        (Decimal("100"), "100"),
        (Decimal("100.0"), "100"),
        (Decimal("0"), "0"),
        (Decimal("0.0"), "0"),
        (Decimal("0E-12"), "0"),
        (Decimal("-0.0"), "0"),
        (Decimal("-0E+2"), "0"),
        (Decimal("-2.50"), "-2.5"),
        (Decimal("-1E+3"), "-1000"),
        (Decimal(2**64 * 1000 + 12345), "18446744073709551628345"),
        (Decimal("123456789012345678901234567890.123456789"), "123456789012345678901234567890.123456789"),
        (
            Decimal("1.2345678901234567890123456789E-30"),
            "0.0000000000000000000000000000012345678901234567890123456789",
        ),
    ],
)
def test_decimal_to_text_writes_canonical_plain_notation(value, expected):
    text = decimal_to_text(value)
    assert text == expected
    assert_canonical(text, value)


def test_decimal_to_text_keeps_none():
    assert decimal_to_text(None) is None


@settings(max_examples=examples(150), deadline=None)
@given(realistic_decimals)
def test_decimal_to_text_round_trips_hypothesis_decimals(value):
    assume(not (value.is_zero() and value.is_signed()))  # negative zero: see the xfail test below
    text = decimal_to_text(value)
    assert_canonical(text, value)
    assert decimal_to_text(Decimal(text)) == text


@settings(max_examples=examples(200), deadline=None)
@given(realistic_decimals, st.integers(min_value=0, max_value=12))
def test_decimal_to_text_is_the_same_for_equal_decimals(value, extra_zeros):
    assume(not value.is_zero())
    with localcontext(prec=1000):
        padded = value.quantize(Decimal(1).scaleb(value.as_tuple().exponent - extra_zeros))
        equal_forms = [padded, value.normalize(), Decimal(format(value, "E"))]
    for other in equal_forms:
        assert other == value
        assert decimal_to_text(other) == decimal_to_text(value)


def test_decimal_to_text_writes_negative_zero_as_0():
    # Decimal("-0") == 0, and every other zero form prints "0"; a SQLite TEXT column holding "-0" makes a
    # later upsert of Decimal("0") count as a change there while PostgreSQL NUMERIC sees no change.
    assert decimal_to_text(Decimal("-0")) == "0"


def test_decimal_to_text_handles_huge_integral_decimals():
    value = Decimal("1E+5000")
    text = decimal_to_text(value)
    assert text == "1" + "0" * 5000


# ---------------------------------------------------------------------- int_to_sqlite


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (0, 0),
        (12345, 12345),
        (INT64_MAX, INT64_MAX),
        (INT64_MIN, INT64_MIN),
        (INT64_MAX + 1, "9223372036854775808"),
        (INT64_MIN - 1, "-9223372036854775809"),
        (2**64 * 1000 + 12345, "18446744073709551628345"),
        (10**30 + 7, "1000000000000000000000000000007"),
    ],
)
def test_int_to_sqlite_passes_int64_and_writes_larger_as_digits(value, expected):
    result = int_to_sqlite(value)
    assert result == expected
    assert type(result) is type(expected)


@given(st.integers(min_value=-(10**77), max_value=10**77))
def test_int_to_sqlite_round_trips_any_integer(value):
    result = int_to_sqlite(value)
    assert int(result) == value
    assert isinstance(result, int) == (INT64_MIN <= value <= INT64_MAX)


# ---------------------------------------------------------------------- epoch microseconds


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(1970, 1, 1, tzinfo=UTC), 0),
        (datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC), 1),
        (datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), -1),
        (datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC), 1709294400123456),
        (
            datetime(2024, 3, 1, 17, 30, 0, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            1709294400123456,
        ),
        (datetime(2024, 3, 1, 12, 0, 0, 123456), 1709294400123456),  # naive means UTC
    ],
)
def test_datetime_to_epoch_us_counts_microseconds_since_epoch(value, expected):
    assert datetime_to_epoch_us(value) == expected


def test_datetime_to_epoch_us_keeps_none():
    assert datetime_to_epoch_us(None) is None


@given(aware_datetimes)
def test_epoch_microseconds_round_trip_aware_datetimes(value):
    micros = datetime_to_epoch_us(value)
    back = epoch_us_to_datetime(micros)
    assert back.utcoffset() == timedelta(0)
    assert back.tzinfo == UTC
    assert back == value.astimezone(UTC)
    assert back.microsecond == value.astimezone(UTC).microsecond


@given(
    st.integers(
        min_value=datetime_to_epoch_us(datetime(1, 1, 1, tzinfo=UTC)),
        max_value=datetime_to_epoch_us(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    )
)
def test_epoch_microseconds_round_trip_integers(micros):
    assert datetime_to_epoch_us(epoch_us_to_datetime(micros)) == micros


@given(aware_datetimes, aware_datetimes)
def test_epoch_microseconds_sort_like_the_instants(first, second):
    a, b = datetime_to_epoch_us(first), datetime_to_epoch_us(second)
    assert (a < b) == (first.astimezone(UTC) < second.astimezone(UTC))


# ---------------------------------------------------------------------- column types


def test_column_types_bind_storage_forms_per_dialect():
    lite, pg = sqlite.dialect(), postgresql.psycopg.dialect()
    assert ExactDecimal().process_bind_param(Decimal("1E-12"), lite) == "0.000000000001"
    assert ExactDecimal().process_bind_param(Decimal("1E-12"), pg) == Decimal("1E-12")
    assert ExactDecimal().process_bind_param(1.5, lite) == "1.5"
    assert NativeAmount().process_bind_param(10**30 + 7, lite) == "1000000000000000000000000000007"
    assert NativeAmount().process_bind_param(12345, lite) == 12345
    assert NativeAmount().process_bind_param(10**30 + 7, pg) == 10**30 + 7
    when = datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=ZoneInfo("America/New_York"))
    assert UTCDateTime().process_bind_param(when, lite) == datetime_to_epoch_us(when)
    assert UTCDateTime().process_bind_param(datetime(2024, 1, 1), pg) == datetime(2024, 1, 1, tzinfo=UTC)


def test_column_types_read_back_python_values():
    pg = postgresql.psycopg.dialect()
    assert UTCDateTime().process_result_value(0, sqlite.dialect()) == datetime(1970, 1, 1, tzinfo=UTC)
    naive = UTCDateTime().process_result_value(datetime(2024, 1, 1, 5), pg)
    assert naive == datetime(2024, 1, 1, 5, tzinfo=UTC)
    assert naive.tzinfo == UTC
    shifted = datetime(2024, 1, 1, 5, tzinfo=timezone(timedelta(hours=-3)))
    back = UTCDateTime().process_result_value(shifted, pg)
    assert back.tzinfo == UTC
    assert back == shifted
    assert NativeAmount().process_result_value("1000000000000000000000000000007", pg) == 10**30 + 7
    assert ExactDecimal().process_result_value("0.000000000001", pg) == Decimal("1E-12")
    for column_type in (ExactDecimal(), NativeAmount(), UTCDateTime()):
        assert column_type.process_bind_param(None, pg) is None
        assert column_type.process_result_value(None, pg) is None


@pytest.fixture(scope="module")
def sqlite_table():
    engine = create_engine("sqlite://")
    table = Table(
        "t",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("dec", ExactDecimal()),
        Column("amount", NativeAmount()),
        Column("at", UTCDateTime()),
    )
    table.create(engine)
    yield engine, table
    engine.dispose()


@settings(max_examples=examples(75), deadline=None)
@given(
    realistic_decimals,
    st.integers(min_value=0, max_value=10**77),
    aware_datetimes,
)
def test_column_types_round_trip_through_real_sqlite(sqlite_table, dec, amount, at):
    engine, table = sqlite_table
    assume(not (dec.is_zero() and dec.is_signed()))
    with engine.begin() as conn:
        conn.execute(table.delete())
        conn.execute(insert(table).values(id=1, dec=dec, amount=amount, at=at))
        row = conn.execute(select(table.c.dec, table.c.amount, table.c.at)).one()
    assert row.dec == dec
    assert row.amount == amount
    assert row.at == at.astimezone(UTC)
    assert row.at.tzinfo == UTC
