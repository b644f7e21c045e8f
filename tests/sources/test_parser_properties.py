"""Property tests for the parsers: any JSON in, a ParseResult or a ResponseFormatError out, never a crash.

Each parser gets a valid base payload (a saved or crafted sample) with one node replaced, deleted or
inserted: a field of a row, a whole row, `data`, `context`, a price point, or the whole payload. The
replacement is any JSON value the HTTP client can produce (`json.loads(..., parse_float=Decimal)`, NaN
and Infinity refused): null, booleans, ints up to 2**256, Decimals, text, lists and objects. Then:

* a ResponseFormatError is raised exactly when the envelope is not the documented shape;
* otherwise every row is accounted for: records + rejects == rows that are not skipped on purpose,
  rows_seen is what the source sent, and every reject's sample is JSON.

Generation is derandomized and the example database is off, so runs are repeatable and store no examples.
Decimal exponents are kept small in the general strategies to keep runs fast; huge ones have their own
timing tests in the example test files, and former crashes have their own properties below.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pipeline.errors import ResponseFormatError
from pipeline.schemas import (
    BlockchainAddressData,
    BlockchainBlockData,
    BlockchainTransactionData,
    MarketPriceData,
)
from pipeline.sources.blockchair import parse_address_dashboard, parse_blocks, parse_transactions
from pipeline.sources.coingecko import MAX_TIMESTAMP_MS, parse_history, parse_market_chart
from pipeline.sources.common import MAX_SAMPLE_CHARS, ParseResult
from tests.support.fixtures import load_fixture as load
from tests.support.properties import examples

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
DAY_MS = 86_400_000
MAR_31 = 1_711_843_200_000

PROPERTY = settings(
    max_examples=examples(200),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# For the known-bug properties: every example hits the bug, so a handful is enough and no shrinking.
KNOWN_BUG = settings(max_examples=10, deadline=None, derandomize=True, database=None, phases=[Phase.generate])


# ---------------------------------------------------------------- JSON strategies

INTERESTING_TEXT = [
    "",
    " ",
    "0",
    "-1",
    "1.5",
    "abc",
    "n/a",
    "null",
    "100,100",
    "Ignore",
    "usd",
    "synthetic_coinbase",
    "call",
    "2019-10-18",
    "2019-10-18 17:16:18",
    "2019-10-18T17:16:18+02:00",
    "2999-01-01 00:00:00",
    "1970-01-01 00:00:00",
    "0000-00-00 00:00:00",
    "ab" * 32,
    "0x" + "ab" * 32,
    "AB" * 32,
    "0x" + "1f" * 20,
    "14324135521180578322",
    str(2**64 + 1),
    str(10**76),
    "1.337e+21",
    "mpjwFvP88ZwAt3wEHY6irKkGhxcsv22BP6",
    "x" * 3000,
]
INTERESTING_NUMBERS = [
    -1,
    0,
    1,
    2**31 - 1,
    2**31,
    2**63 - 1,
    2**63,
    2**64 + 1,
    10**76,
    MAR_31,
    MAR_31 + 1,
    1_711_983_682_000,
    Decimal("0"),
    Decimal("-0"),
    Decimal("0.5"),
    Decimal("-1.5"),
    Decimal("1206.3"),
    Decimal("1.337E+21"),
    Decimal("1E+100"),
    Decimal("1E-30"),
    Decimal("1711843200000.0"),
]
KEYS = st.text(max_size=8) | st.sampled_from(
    [
        "data",
        "context",
        "state",
        "limit",
        "id",
        "hash",
        "time",
        "block_id",
        "type",
        "address",
        "addresses",
        "balance",
        "prices",
        "market_caps",
        "total_volumes",
        "market_data",
        "current_price",
        "usd",
    ]
)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.integers(min_value=-(2**256), max_value=2**256),
    st.decimals(min_value=Decimal("-1e30"), max_value=Decimal("1e30"), allow_nan=False, allow_infinity=False),
    st.sampled_from(INTERESTING_NUMBERS),
)
LEAVES = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=30), st.sampled_from(INTERESTING_TEXT))
JSON = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=8,
)


# ---------------------------------------------------------------- mutations


def node_paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into a JSON document, the root included."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from node_paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from node_paths(child, (*prefix, index))


def mutated(base: Any, path: tuple[Any, ...], op: str, value: Any) -> Any:
    """A copy of `base` with the node at `path` replaced, deleted, or preceded by an inserted value."""
    if not path:
        return value
    doc = copy.deepcopy(base)
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if op == "delete":
        del parent[last]
    elif op == "insert" and isinstance(parent, list):
        parent.insert(last, value)
    else:
        parent[last] = value
    return doc


def mutations(base: Any) -> st.SearchStrategy[Any]:
    """`base` with one node (anywhere, the root included) replaced, deleted or given a sibling."""
    paths = list(node_paths(base))
    return st.builds(
        mutated,
        st.just(base),
        st.sampled_from(paths),
        st.sampled_from(["replace", "replace", "replace", "delete", "insert"]),
        JSON,
    )


# ---------------------------------------------------------------- invariants


def check_rejects(result: ParseResult[Any]) -> None:
    for reject in result.rejects:
        assert isinstance(reject.reason, str)
        assert reject.reason
        sample = reject.sample()
        assert json.loads(json.dumps(sample)) == sample
        assert len(sample["record"]) <= MAX_SAMPLE_CHARS + 1


def envelope_data(payload: Any) -> tuple[bool, Any]:
    """(is a Blockchair envelope, its data)."""
    if isinstance(payload, dict) and "data" in payload:
        return True, payload["data"]
    return False, None


def expected_tip(payload: dict[str, Any]) -> int | None:
    context = payload.get("context")
    state = context.get("state") if isinstance(context, dict) else None
    return state if type(state) is int and state >= 0 else None


def is_skipped_transaction(row: Any) -> bool:
    """The documented skips: Ethereum synthetic coinbase rows and mempool rows (block_id -1)."""
    return isinstance(row, dict) and (row.get("type") == "synthetic_coinbase" or row.get("block_id") == -1)


def check_listing(
    parse: Callable[[Any], ParseResult[Any]],
    payload: Any,
    model: type,
    skipped: Callable[[Any], bool] = lambda row: False,
) -> None:
    """A listing parses iff `data` is a list (or `{}`), and then every row not skipped is accounted for."""
    is_envelope, data = envelope_data(payload)
    well_formed = is_envelope and (isinstance(data, list) or (isinstance(data, dict) and not data))
    try:
        result = parse(payload)
    except ResponseFormatError:
        assert not well_formed, "a well-formed listing was refused"
        return
    assert well_formed, "a malformed listing was accepted"
    rows = data if isinstance(data, list) else []
    kept = [row for row in rows if not skipped(row)]
    assert len(result.records) + len(result.rejects) == len(kept)
    assert result.rows_seen == len(rows)
    assert result.tip == expected_tip(payload)
    assert all(isinstance(record, model) for record in result.records)
    check_rejects(result)


def check_address_dashboard(
    parse: Callable[..., ParseResult[Any]], payload: Any, requested: list[str]
) -> None:
    """A dashboard parses iff `data` is an object (or `[]`); then every requested address is accounted for."""
    is_envelope, data = envelope_data(payload)
    well_formed = is_envelope and (isinstance(data, dict) or data == [])
    try:
        result = parse(payload, requested=requested)
    except ResponseFormatError:
        assert not well_formed, "a well-formed dashboard was refused"
        return
    assert well_formed, "a malformed dashboard was accepted"
    assert len(result.records) + len(result.rejects) == len(requested)
    assert {record.address for record in result.records} <= set(requested)
    assert all(isinstance(record, BlockchainAddressData) for record in result.records)
    assert result.tip == expected_tip(payload)
    check_rejects(result)


def is_number(value: Any) -> bool:
    return isinstance(value, int | Decimal) and not isinstance(value, bool)


def check_market_chart(payload: Any) -> None:
    """Parses iff `prices` is a list; then each malformed point and each midnight is accounted for."""
    well_formed = isinstance(payload, dict) and isinstance(payload.get("prices"), list)
    try:
        result = parse_market_chart(payload, coin_id="bitcoin", now=NOW)
    except ResponseFormatError:
        assert not well_formed, "a well-formed chart was refused"
        return
    assert well_formed, "a chart without prices was accepted"
    points = payload["prices"]
    # A point is well formed when its timestamp is a number a calendar date can hold.
    good = [
        p
        for p in points
        if isinstance(p, list) and len(p) == 2 and is_number(p[0]) and 0 <= p[0] < MAX_TIMESTAMP_MS
    ]
    stamps = {int(p[0]) for p in good}
    midnights = {ts for ts in stamps if ts % DAY_MS == 0}
    assert len(result.records) + len(result.rejects) == len(points) - len(good) + len(midnights)
    assert result.rows_seen == len(points)  # every point sent, malformed ones included
    days = [record.price_date for record in result.records]
    assert days == sorted(set(days)), "one record per day, in order"
    for record in result.records:
        assert isinstance(record, MarketPriceData)
        assert record.price_usd > 0
        assert record.market_cap_usd is None or record.market_cap_usd > 0
        assert record.volume_usd is None or record.volume_usd > 0
    check_rejects(result)


def check_history(payload: Any, day: date = date(2017, 12, 30)) -> None:
    """Parses iff the payload is an object; then no market_data is no row, and anything else is one row."""
    try:
        result = parse_history(payload, coin_id="bitcoin", day=day, now=NOW)
    except ResponseFormatError:
        assert not isinstance(payload, dict), "an object was refused"
        return
    assert isinstance(payload, dict)
    if payload.get("market_data") is None:
        assert (result.records, result.rejects, result.rows_seen) == ([], [], 0)
        return
    assert result.rows_seen == 1
    assert len(result.records) + len(result.rejects) == 1
    for record in result.records:
        assert record.price_date == day
        assert record.price_usd > 0
    check_rejects(result)


# ---------------------------------------------------------------- bases


def with_rows(name: str, count: int, **per_row: Callable[[int], Any]) -> dict[str, Any]:
    """A listing sample with its rows repeated `count` times (ids varied), for multi-row mutations."""
    payload = load(name)
    template = payload["data"]
    rows = []
    for i in range(count):
        for row in copy.deepcopy(template):
            for key, make in per_row.items():
                row[key] = make(i) if row.get(key) is not None else None
            rows.append(row)
    payload["data"] = rows
    return payload


BTC_BLOCKS = with_rows("blockchair/bitcoin_blocks_docs_example.json", 3, id=lambda i: 599954 - i)
ETH_BLOCKS = with_rows("blockchair/ethereum_blocks_docs_example.json", 2, id=lambda i: 8766253 - i)
BTC_TRANSACTIONS = with_rows(
    "blockchair/bitcoin_transactions_docs_example.json", 3, id=lambda i: 467508697 + i
)
ETH_TRANSACTIONS = with_rows(
    "blockchair/ethereum_transactions_docs_example.json", 2, id=lambda i: 46147000000 + i
)
TESTNET_DASHBOARD = load("blockchair/bitcoin_testnet_address_dashboard.json")
PLURAL_DASHBOARD = load("edge/blockchair_plural_address_dashboard.json")
ETH_DASHBOARD = load("edge/blockchair_ethereum_address_dashboard.json")
MISSING_ADDRESS = "mzBc4XEFSdzCDcTxAgf6EZXgsZWpztRhef"
RANGE_CHART = load("coingecko/market_chart_range_docs_example.json")
UNEVEN_CHART = {
    "prices": [[MAR_31, Decimal("69702.3")], [MAR_31 + DAY_MS, Decimal("71246.9")], [MAR_31, 1]],
    "market_caps": [[MAR_31, None], [MAR_31 + DAY_MS, 0]],
    "total_volumes": [[MAR_31 + DAY_MS, Decimal("1.5")]],
}
HISTORY = load("coingecko/history_bitcoin_30-12-2017.json")
# The localisation and per-currency maps are not read; a few entries keep the mutations on what matters.
HISTORY_SMALL = {
    "id": "bitcoin",
    "symbol": "btc",
    "name": "Bitcoin",
    "market_data": {
        key: {currency: HISTORY["market_data"][key][currency] for currency in ("usd", "eur", "btc")}
        for key in ("current_price", "market_cap", "total_volume")
    },
}


def btc_blocks(payload: Any) -> ParseResult[Any]:
    return parse_blocks(payload, coin_symbol="BTC", family="bitcoin", now=NOW)


def eth_blocks(payload: Any) -> ParseResult[Any]:
    return parse_blocks(payload, coin_symbol="ETH", family="ethereum", now=NOW)


def btc_transactions(payload: Any) -> ParseResult[Any]:
    return parse_transactions(payload, coin_symbol="BTC", family="bitcoin", now=NOW)


def eth_transactions(payload: Any) -> ParseResult[Any]:
    return parse_transactions(payload, coin_symbol="ETH", family="ethereum", now=NOW)


def btc_addresses(payload: Any, requested: list[str]) -> ParseResult[Any]:
    return parse_address_dashboard(payload, coin_symbol="BTC", family="bitcoin", requested=requested, now=NOW)


def eth_addresses(payload: Any, requested: list[str]) -> ParseResult[Any]:
    return parse_address_dashboard(
        payload, coin_symbol="ETH", family="ethereum", requested=requested, now=NOW
    )


# ---------------------------------------------------------------- the bases are valid


def test_bases_parse_cleanly():
    assert len(btc_blocks(BTC_BLOCKS).records) == 3
    assert len(eth_blocks(ETH_BLOCKS).records) == 2
    assert len(btc_transactions(BTC_TRANSACTIONS).records) == 3
    assert len(eth_transactions(ETH_TRANSACTIONS).records) == 2  # two synthetic rows skipped
    assert len(btc_addresses(TESTNET_DASHBOARD, list(TESTNET_DASHBOARD["data"])).records) == 1
    assert len(btc_addresses(PLURAL_DASHBOARD, list(PLURAL_DASHBOARD["data"]["addresses"])).records) == 2
    assert len(eth_addresses(ETH_DASHBOARD, list(ETH_DASHBOARD["data"])).records) == 1
    assert len(parse_market_chart(RANGE_CHART, coin_id="bitcoin", now=NOW).records) == 2
    assert len(parse_market_chart(UNEVEN_CHART, coin_id="bitcoin", now=NOW).records) == 2
    for payload in (HISTORY, HISTORY_SMALL):
        assert len(parse_history(payload, coin_id="bitcoin", day=date(2017, 12, 30), now=NOW).records) == 1


# ---------------------------------------------------------------- one node changed


@PROPERTY
@given(payload=mutations(BTC_BLOCKS))
def test_bitcoin_blocks_with_any_node_changed_account_for_every_row(payload):
    check_listing(btc_blocks, payload, BlockchainBlockData)


@PROPERTY
@given(payload=mutations(ETH_BLOCKS))
def test_ethereum_blocks_with_any_node_changed_account_for_every_row(payload):
    check_listing(eth_blocks, payload, BlockchainBlockData)


@PROPERTY
@given(payload=mutations(BTC_TRANSACTIONS))
def test_bitcoin_transactions_with_any_node_changed_account_for_every_row(payload):
    check_listing(btc_transactions, payload, BlockchainTransactionData, is_skipped_transaction)


@PROPERTY
@given(payload=mutations(ETH_TRANSACTIONS))
def test_ethereum_transactions_with_any_node_changed_account_for_every_row(payload):
    check_listing(eth_transactions, payload, BlockchainTransactionData, is_skipped_transaction)


@PROPERTY
@given(payload=mutations(TESTNET_DASHBOARD))
def test_singular_address_dashboard_with_any_node_changed_accounts_for_every_address(payload):
    requested = [*TESTNET_DASHBOARD["data"], MISSING_ADDRESS]
    check_address_dashboard(btc_addresses, payload, requested)


@PROPERTY
@given(payload=mutations(PLURAL_DASHBOARD))
def test_plural_address_dashboard_with_any_node_changed_accounts_for_every_address(payload):
    requested = [*PLURAL_DASHBOARD["data"]["addresses"], MISSING_ADDRESS]
    check_address_dashboard(btc_addresses, payload, requested)


@PROPERTY
@given(payload=mutations(ETH_DASHBOARD))
def test_ethereum_address_dashboard_with_any_node_changed_accounts_for_every_address(payload):
    check_address_dashboard(eth_addresses, payload, list(ETH_DASHBOARD["data"]))


@PROPERTY
@given(payload=mutations(RANGE_CHART))
def test_market_chart_with_any_node_changed_accounts_for_every_point(payload):
    check_market_chart(payload)


@PROPERTY
@given(payload=mutations(UNEVEN_CHART))
def test_uneven_market_chart_with_any_node_changed_accounts_for_every_point(payload):
    check_market_chart(payload)


@PROPERTY
@given(payload=mutations(HISTORY_SMALL))
def test_history_with_any_node_changed_is_one_row_or_none(payload):
    check_history(payload)


@PROPERTY
@given(
    point=st.lists(JSON, max_size=3) | JSON,
    price=JSON,
    day=st.integers(min_value=0, max_value=25_000),  # 1970 .. 2038: inside datetime's range
)
def test_market_chart_price_points_of_any_shape_are_accounted_for(point, price, day):
    check_market_chart({"prices": [point, [day * DAY_MS, price], [MAR_31, 1]], "market_caps": [point]})


# ---------------------------------------------------------------- fully arbitrary payloads

ENVELOPES = st.fixed_dictionaries({"data": JSON}, optional={"context": JSON})
LISTING_PARSERS = [
    (btc_blocks, BlockchainBlockData, lambda row: False),
    (eth_blocks, BlockchainBlockData, lambda row: False),
    (btc_transactions, BlockchainTransactionData, is_skipped_transaction),
    (eth_transactions, BlockchainTransactionData, is_skipped_transaction),
]


@PROPERTY
@given(payload=JSON | ENVELOPES, extra=st.lists(st.sampled_from(["a", "0x" + "1f" * 20, "bad addr"])))
def test_arbitrary_payload_to_any_blockchair_parser_is_a_result_or_a_format_error(payload, extra):
    for parse, model, skipped in LISTING_PARSERS:
        check_listing(parse, payload, model, skipped)
    _, data = envelope_data(payload)
    requested = [*(data if isinstance(data, dict) else [])][:3] + extra
    for parse in (btc_addresses, eth_addresses):
        check_address_dashboard(parse, payload, requested)


CHART_LIKE = st.fixed_dictionaries(
    {"prices": st.lists(JSON, max_size=5)}, optional={"market_caps": JSON, "total_volumes": JSON}
)
HISTORY_LIKE = st.fixed_dictionaries({"market_data": JSON}, optional={"id": JSON})


@PROPERTY
@given(payload=JSON | CHART_LIKE | HISTORY_LIKE)
def test_arbitrary_payload_to_any_coingecko_parser_is_a_result_or_a_format_error(payload):
    check_market_chart(payload)
    check_history(payload)


# ---------------------------------------------------------------- former crashes (regression properties)


def out_of_range_aware_times() -> st.SearchStrategy[str]:
    """Aware times whose UTC conversion falls before year 1 or after year 9999."""
    early = st.builds(
        lambda minute, hours: f"0001-01-01T00:{minute:02d}:00+{hours:02d}:00",
        st.integers(0, 59),
        st.integers(1, 23),
    )
    late = st.builds(
        lambda minute, hours: f"9999-12-31T23:{minute:02d}:00-{hours:02d}:00",
        st.integers(0, 59),
        st.integers(1, 23),
    )
    return early | late


@KNOWN_BUG
@given(time=out_of_range_aware_times(), row=st.integers(0, 2))
def test_any_out_of_range_aware_block_time_is_a_reject(time, row):
    payload = mutated(BTC_BLOCKS, ("data", row, "time"), "replace", time)

    result = btc_blocks(payload)

    assert len(result.records) == 2
    assert len(result.rejects) == 1


@KNOWN_BUG
# Day 2_932_897 after the epoch is 10000-01-01; day -719_163 is 0000-12-31.
@given(day=st.integers(2_932_897, 10**12) | st.integers(-(10**12), -719_163))
def test_any_out_of_range_midnight_timestamp_is_a_reject_or_dropped(day):
    payload = {"prices": [[day * DAY_MS, 1], [MAR_31, 2]]}

    result = parse_market_chart(payload, coin_id="bitcoin", now=NOW)

    assert [r.price_date for r in result.records] == [date(2024, 3, 31)]
