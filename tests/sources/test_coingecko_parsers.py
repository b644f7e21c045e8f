"""Tests for pipeline.sources.coingecko: `market_chart/range` and `/history` replies into daily prices.

`simple_price_bitcoin_usd.json` and `coins_list_trimmed.json` are not used: `/simple/price` and
`/coins/list` have no parser. Every other CoinGecko sample is used below with concrete values.

Payloads are decoded as the HTTP client decodes them (`parse_float=Decimal`), so prices compare exactly
to `Decimal` literals copied from the files, and every parse gets a fixed `now`.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from pipeline.errors import ResponseFormatError
from pipeline.sources.coingecko import parse_history, parse_market_chart
from tests.support.fixtures import load_fixture as load

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
DAY_MS = 86_400_000
# 2024-03-31 00:00:00 UTC, the first point of the docs' market_chart/range example.
MAR_31 = 1_711_843_200_000
APR_1 = MAR_31 + DAY_MS
APR_2 = MAR_31 + 2 * DAY_MS
ERROR_BODIES = [
    "error_429.json",
    "error_500.json",
    "error_422_missing_date.json",
    "error_10012_time_range.json",
]


def chart(payload: Any, **kwargs: Any):
    return parse_market_chart(payload, coin_id="bitcoin", now=NOW, **kwargs)


def history(payload: Any, day: date = date(2017, 12, 30), **kwargs: Any):
    return parse_history(payload, coin_id="bitcoin", day=day, now=NOW, **kwargs)


def series(*points: tuple[Any, Any]) -> list[list[Any]]:
    return [list(p) for p in points]


def by_day(result: Any) -> dict[date, Any]:
    return {r.price_date: r for r in result.records}


def history_body(**market_data: Any) -> dict[str, Any]:
    """A `/history` reply with the given `market_data` blocks (each a vs-currency -> value map)."""
    return {"id": "bitcoin", "symbol": "btc", "name": "Bitcoin", "market_data": market_data}


# ---------------------------------------------------------------- saved samples: market_chart


def test_range_docs_example_keeps_two_midnight_days_with_exact_prices():
    result = chart(load("coingecko/market_chart_range_docs_example.json"))

    assert result.rejects == []
    assert result.rows_seen == 3
    assert result.tip is None
    assert [r.price_date for r in result.records] == [date(2024, 3, 31), date(2024, 4, 1)]
    first, second = result.records
    assert first.coin_id == "bitcoin"
    assert first.price_usd == Decimal("69702.3087473573")
    assert first.market_cap_usd == Decimal("1370247487960.09")
    assert first.volume_usd == Decimal("16408802301.8374")
    assert second.price_usd == Decimal("71246.9514406015")
    assert second.market_cap_usd == Decimal("1401370211582.37")
    assert second.volume_usd == Decimal("19723005998.215")


def test_range_docs_example_drops_the_trailing_now_point():
    payload = load("coingecko/market_chart_range_docs_example.json")
    now_point = payload["prices"][2]
    assert now_point[0] == 1711983682000
    assert now_point[0] % DAY_MS != 0

    result = chart(payload)

    assert Decimal("68887.7495158568") not in {r.price_usd for r in result.records}
    assert date(2024, 4, 2) not in by_day(result)


def test_hourly_sample_has_no_midnight_point_so_gives_no_daily_records():
    payload = load("coingecko/market_chart_bitcoin_usd_30d_hourly_trimmed.json")
    assert all(ts % DAY_MS for ts, _ in payload["prices"])

    result = chart(payload)

    assert result.records == []
    assert result.rejects == []
    assert result.rows_seen == 12


@pytest.mark.parametrize("name", ERROR_BODIES)
def test_error_body_given_to_market_chart_is_a_response_format_error(name):
    with pytest.raises(ResponseFormatError, match="no 'prices' array") as excinfo:
        chart(load(f"coingecko/{name}"))

    assert excinfo.value.source == "coingecko"
    assert excinfo.value.status == 200


def test_blockchair_error_body_given_to_market_chart_is_a_response_format_error():
    with pytest.raises(ResponseFormatError):
        chart(load("blockchair/error_430.json"))


# ---------------------------------------------------------------- saved samples: history


def test_history_sample_gives_one_record_with_exact_usd_values():
    result = history(load("coingecko/history_bitcoin_30-12-2017.json"))

    assert result.rejects == []
    assert result.rows_seen == 1
    (record,) = result.records
    assert record.coin_id == "bitcoin"
    assert record.price_date == date(2017, 12, 30)
    assert record.price_usd == Decimal("13620.3618741461")
    assert record.market_cap_usd == Decimal("228445816988.881")
    assert record.volume_usd == Decimal("3600481281.03768")


def test_history_record_date_is_the_day_asked_for_not_read_from_the_body():
    result = history(load("coingecko/history_bitcoin_30-12-2017.json"), day=date(2017, 12, 31))

    assert [r.price_date for r in result.records] == [date(2017, 12, 31)]


@pytest.mark.parametrize("body", [*ERROR_BODIES, {"error": "invalid date"}], ids=str)
def test_error_body_given_to_history_is_a_response_format_error(body):
    payload = load(f"coingecko/{body}") if isinstance(body, str) else body

    with pytest.raises(ResponseFormatError):
        history(payload)


# ---------------------------------------------------------------- market_chart: payload shape


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        [[MAR_31, 1]],
        "prices",
        7,
        {},
        {"market_caps": [[MAR_31, 1]], "total_volumes": []},
        {"prices": None},
        {"prices": {"0": [MAR_31, 1]}},
        {"prices": "[]"},
    ],
    ids=[
        "null",
        "empty_list",
        "bare_points",
        "string",
        "int",
        "empty_object",
        "no_prices",
        "null_prices",
        "object_prices",
        "string_prices",
    ],
)
def test_payload_without_a_prices_array_is_a_response_format_error(payload):
    with pytest.raises(ResponseFormatError):
        chart(payload)


def test_response_format_error_names_the_endpoint_passed_in():
    with pytest.raises(ResponseFormatError) as excinfo:
        chart({}, endpoint="/coins/bitcoin/market_chart/range")

    assert excinfo.value.endpoint == "/coins/bitcoin/market_chart/range"


def test_empty_prices_is_an_empty_result():
    result = chart({"prices": [], "market_caps": [], "total_volumes": []})

    assert (result.records, result.rejects, result.rows_seen) == ([], [], 0)


def test_missing_market_caps_and_volumes_keep_prices_with_unknown_caps():
    result = chart({"prices": series((MAR_31, Decimal("1.5")), (APR_1, Decimal("2.5")))})

    assert [(r.price_usd, r.market_cap_usd, r.volume_usd) for r in result.records] == [
        (Decimal("1.5"), None, None),
        (Decimal("2.5"), None, None),
    ]


@pytest.mark.parametrize("caps", [None, "n/a", {"0": 1}, 5], ids=["null", "string", "object", "int"])
def test_market_caps_that_is_not_a_list_means_unknown_caps(caps):
    result = chart({"prices": series((MAR_31, 10)), "market_caps": caps, "total_volumes": caps})

    (record,) = result.records
    assert (record.price_usd, record.market_cap_usd, record.volume_usd) == (Decimal(10), None, None)


# ---------------------------------------------------------------- market_chart: joining and days


def test_arrays_of_unequal_length_are_joined_on_timestamp():
    payload = {
        "prices": series((MAR_31, Decimal("100.1")), (APR_1, Decimal("200.2")), (APR_2, Decimal("300.3"))),
        # The cap of Apr 1 is missing: the arrays are not aligned by position.
        "market_caps": series((MAR_31, Decimal("1000")), (APR_2, Decimal("3000"))),
        "total_volumes": series((MAR_31, 10), (APR_1, 20), (APR_2, 30)),
    }

    days = by_day(chart(payload))

    assert [(d.price_usd, d.market_cap_usd, d.volume_usd) for d in days.values()] == [
        (Decimal("100.1"), Decimal("1000"), Decimal(10)),
        (Decimal("200.2"), None, Decimal(20)),
        (Decimal("300.3"), Decimal("3000"), Decimal(30)),
    ]


def test_cap_and_volume_at_a_different_timestamp_are_not_used():
    payload = {
        "prices": series((MAR_31, 5)),
        "market_caps": series((MAR_31 + 1000, 123)),
        "total_volumes": series((MAR_31 - 1000, 456)),
    }

    (record,) = chart(payload).records

    assert (record.market_cap_usd, record.volume_usd) == (None, None)


@pytest.mark.parametrize("unknown", [None, 0, Decimal("0.0"), "0", "123", -5, True], ids=str)
def test_null_zero_negative_or_non_numeric_caps_and_volumes_are_unknown(unknown):
    payload = {
        "prices": series((MAR_31, Decimal("69702.3"))),
        "market_caps": series((MAR_31, unknown)),
        "total_volumes": series((MAR_31, unknown)),
    }

    result = chart(payload)

    assert result.rejects == []
    (record,) = result.records
    assert record.price_usd == Decimal("69702.3")
    assert (record.market_cap_usd, record.volume_usd) == (None, None)


def test_out_of_order_and_repeated_timestamps_give_one_sorted_record_per_day():
    payload = {
        "prices": series(
            (APR_2, Decimal("3")),
            (MAR_31, Decimal("1")),
            (APR_1, Decimal("2")),
            (MAR_31, Decimal("1")),
            (APR_1 + 3_600_000, Decimal("2.5")),  # intraday, dropped
        )
    }

    result = chart(payload)

    assert [(r.price_date, r.price_usd) for r in result.records] == [
        (date(2024, 3, 31), Decimal("1")),
        (date(2024, 4, 1), Decimal("2")),
        (date(2024, 4, 2), Decimal("3")),
    ]
    assert result.rejects == []
    # Every point the source sent, the repeated one included.
    assert result.rows_seen == 5


def test_repeated_timestamp_with_different_prices_keeps_the_last_one_listed():
    result = chart({"prices": series((MAR_31, Decimal("1")), (MAR_31, Decimal("9")))})

    assert [r.price_usd for r in result.records] == [Decimal("9")]


def test_point_one_millisecond_off_midnight_is_dropped():
    result = chart({"prices": series((MAR_31 - 1, 1), (MAR_31 + 1, 2), (APR_1, 3))})

    assert [r.price_date for r in result.records] == [date(2024, 4, 1)]


def test_timestamp_sent_as_decimal_is_accepted():
    ts = json.loads("1711843200000.0", parse_float=Decimal)

    (record,) = chart({"prices": [[ts, 7]]}).records

    assert record.price_date == date(2024, 3, 31)


def test_epoch_midnight_and_the_first_coingecko_day_are_valid_days():
    first_btc_day = int(datetime(2013, 4, 28, tzinfo=UTC).timestamp() * 1000)

    result = chart({"prices": series((0, 1), (first_btc_day, Decimal("135.3")))})

    assert [r.price_date for r in result.records] == [date(1970, 1, 1), date(2013, 4, 28)]


# ---------------------------------------------------------------- market_chart: bad points


@pytest.mark.parametrize(
    "point",
    [[MAR_31], [], [MAR_31, 1, 2], "abc", None, 5, {"t": MAR_31, "p": 1}, [str(MAR_31), 1], [True, 1]],
    ids=["ts_only", "empty", "three_items", "string", "null", "int", "object", "string_ts", "bool_ts"],
)
def test_malformed_price_point_is_rejected_and_the_rest_parsed(point):
    result = chart({"prices": [point, [APR_1, Decimal("2")]]})

    assert [r.price_date for r in result.records] == [date(2024, 4, 1)]
    assert len(result.rejects) == 1
    assert result.rejects[0].reason == "malformed prices point (expected [timestamp_ms, value])"
    assert result.rejects[0].record == point


def test_malformed_cap_and_volume_points_are_ignored_not_rejected():
    payload = {
        "prices": series((MAR_31, 5)),
        "market_caps": [[MAR_31], "x", None, [MAR_31, 50]],
        "total_volumes": [[MAR_31, 7, 8]],
    }

    result = chart(payload)

    assert result.rejects == []
    (record,) = result.records
    assert (record.market_cap_usd, record.volume_usd) == (Decimal(50), None)


@pytest.mark.parametrize(
    "price", [None, "n/a", 0, Decimal("0.0"), -1, Decimal("-0.01"), True, [], {}, Decimal("1e20")], ids=str
)
def test_unusable_price_is_rejected_naming_price_usd(price):
    result = chart({"prices": series((MAR_31, price), (APR_1, Decimal("71246.95")))})

    assert [r.price_usd for r in result.records] == [Decimal("71246.95")]
    assert len(result.rejects) == 1
    assert result.rejects[0].reason.startswith("price_usd=")
    assert result.rejects[0].record == [MAR_31, price]


def test_price_sent_as_a_numeric_string_is_accepted_exactly():
    (record,) = chart({"prices": series((MAR_31, "69702.3087473573"))}).records

    assert record.price_usd == Decimal("69702.3087473573")


def test_tiny_price_keeps_every_digit():
    (record,) = chart({"prices": series((MAR_31, Decimal("0.000000012345678901")))}).records

    assert record.price_usd == Decimal("0.000000012345678901")


def test_future_day_is_rejected_and_today_is_kept():
    today = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)

    result = chart({"prices": series((today, 1), (today + DAY_MS, 2))})

    assert [r.price_date for r in result.records] == [date(2025, 1, 1)]
    assert len(result.rejects) == 1
    assert "in the future" in result.rejects[0].reason


def test_every_price_point_is_accounted_for():
    payload = {
        "prices": [
            [MAR_31, 1],  # record
            [MAR_31 + 60_000, 1],  # intraday: dropped silently
            [APR_1],  # malformed: reject
            [APR_1, "n/a"],  # bad price: reject
            "junk",  # malformed: reject
            [APR_2, 3],  # record
        ]
    }

    result = chart(payload)

    assert len(result.records) == 2
    assert len(result.rejects) == 3
    assert result.rows_seen == 6  # every point sent, so fetched >= inserted + rejected


@pytest.mark.parametrize(
    "timestamp",
    [253_402_300_800_000, DAY_MS * 10**15, -DAY_MS * 10**9, Decimal("8.64E+400")],
    ids=["year_10000", "far_future", "far_past", "decimal_exponent"],
)
def test_midnight_timestamp_outside_the_date_range_is_a_reject_not_a_crash(timestamp):
    result = chart({"prices": [[timestamp, 1], [MAR_31, 2]]})

    assert [r.price_date for r in result.records] == [date(2024, 3, 31)]
    assert len(result.rejects) == 1


def test_timestamp_with_a_huge_exponent_is_refused_quickly():
    timestamp = json.loads("1e200000", parse_float=Decimal)

    started = time.perf_counter()
    result = chart({"prices": [[timestamp, 1], [MAR_31, 2]]})
    elapsed = time.perf_counter() - started

    assert [r.price_date for r in result.records] == [date(2024, 3, 31)]
    # A fixed parser takes microseconds; the threshold is loose so a slow machine cannot trip it.
    assert elapsed < 0.3


# ---------------------------------------------------------------- history


def test_history_without_market_data_gives_no_records_and_no_rejects():
    payload = load("coingecko/history_bitcoin_30-12-2017.json")
    del payload["market_data"]

    result = history(payload)

    assert (result.records, result.rejects, result.rows_seen) == ([], [], 0)


def test_history_with_null_market_data_is_no_data():
    result = history({"id": "bitcoin", "market_data": None})

    assert (result.records, result.rejects, result.rows_seen) == ([], [], 0)


@pytest.mark.parametrize("market_data", [[], "n/a", 0, [1, 2]], ids=["empty_list", "string", "zero", "list"])
def test_history_market_data_that_is_not_an_object_is_rejected(market_data):
    result = history({"id": "bitcoin", "market_data": market_data})

    assert result.records == []
    assert len(result.rejects) == 1
    assert result.rejects[0].reason == "market_data is not an object"
    assert result.rejects[0].record == market_data
    assert result.rows_seen == 1


@pytest.mark.parametrize(
    "market_data",
    [
        {"current_price": {"eur": 11345.89}, "market_cap": {"usd": 1}},
        {"current_price": {}},
        {"current_price": None},
        {"current_price": 13620.36},
        {},
        {"current_price": {"usd": None}},
        {"current_price": {"usd": 0}},
        {"current_price": {"usd": "n/a"}},
        {"current_price": {"usd": -1}},
    ],
    ids=[
        "no_usd",
        "empty_prices",
        "null_prices",
        "bare_number",
        "empty",
        "null_usd",
        "zero_usd",
        "string_usd",
        "negative_usd",
    ],
)
def test_history_without_a_usable_usd_price_is_rejected(market_data):
    result = history({"id": "bitcoin", "market_data": market_data})

    assert result.records == []
    assert len(result.rejects) == 1
    assert result.rejects[0].reason.startswith("price_usd=")
    assert result.rejects[0].record == market_data


@pytest.mark.parametrize("unknown", [None, 0, "0", "big", Decimal(-3)], ids=str)
def test_history_unknown_cap_and_volume_are_none(unknown):
    payload = history_body(
        current_price={"usd": Decimal("13620.36")}, market_cap={"usd": unknown}, total_volume={"usd": unknown}
    )

    (record,) = history(payload).records

    assert record.price_usd == Decimal("13620.36")
    assert (record.market_cap_usd, record.volume_usd) == (None, None)


def test_history_missing_cap_and_volume_blocks_are_none():
    (record,) = history(history_body(current_price={"usd": 5})).records

    assert (record.price_usd, record.market_cap_usd, record.volume_usd) == (Decimal(5), None, None)


def test_history_of_a_future_day_is_rejected():
    result = history(history_body(current_price={"usd": 5}), day=date(2025, 1, 2))

    assert result.records == []
    assert "in the future" in result.rejects[0].reason


@pytest.mark.parametrize("payload", [None, [], "x", 3, [{"market_data": {}}]], ids=str)
def test_history_payload_that_is_not_an_object_is_a_response_format_error(payload):
    with pytest.raises(ResponseFormatError, match="not a JSON object"):
        history(payload)


def test_history_reject_sample_is_json_safe():
    market_data = {"current_price": {"usd": "n/a", "eur": Decimal("1.5")}}

    (reject,) = history(history_body(**market_data)).rejects

    sample = reject.sample()
    assert json.loads(json.dumps(sample)) == sample
    assert json.loads(sample["record"]) == {"current_price": {"usd": "n/a", "eur": "1.5"}}
