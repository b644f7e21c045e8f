"""Tests for pipeline.sources.blockchair: saved samples in, validated records and rejects out.

Every Blockchair sample in tests/fixtures/blockchair is used here, except `bitcoin_testnet_stats.json`:
`/stats` has no parser, so it has nothing to be tested against. The two dashboard samples (block and
transaction) have no parser of their own either; their inner row is the same row a listing returns
(apis.md 1.5), so they are tested by wrapping that row in a listing envelope.

Payloads are decoded the way the HTTP client decodes them (`parse_float=Decimal`), and every parse gets a
fixed `now`, so the "not in the future" rule is deterministic.
"""

from __future__ import annotations

import copy
import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from pipeline.errors import ResponseFormatError
from pipeline.sources.blockchair import (
    chain_tip,
    envelope,
    parse_address_dashboard,
    parse_blocks,
    parse_transactions,
)
from pipeline.sources.common import MAX_SAMPLE_CHARS, Reject
from tests.support.fixtures import load_fixture as load

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

BTC_BLOCK_HASH = "0000000000000000000a405e0eb599136580eed78682bfe6648c5f7b6f81a9cb"
ETH_BLOCK_HASH = "0xf36522b1f6ee2350c322a309ebdffe9afadc7d68713ad5b3a064657c81607ab7"
BTC_TX_HASH = "ee13104d4331cad2fff5ab6cd249a9fec940d64df442a6de5f51ea63c34ef8ff"
ETH_TX_HASH = "0x5c504ed432cb51138bcf09aa5e8a410dd4a1e204ef84bfed1be16dfba1b22060"
TESTNET_ADDRESS = "mpjwFvP88ZwAt3wEHY6irKkGhxcsv22BP6"
ETH_ADDRESS = "0x3282791d6fd713f1e94f4bfd565eaa78b3a0599d"
NOT_RETURNED = "address not returned by the source"


def load_edge(name: str) -> Any:
    return load(f"edge/{name}")


def listing(rows: list[Any], **context: Any) -> dict[str, Any]:
    """A `/blocks` or `/transactions` envelope around the given rows."""
    return {"data": rows, "context": {"code": 200, "limit": 100, "offset": 0, "state": 600_000, **context}}


def btc_block_row(**overrides: Any) -> dict[str, Any]:
    """The docs' Bitcoin block row, with overrides."""
    row = copy.deepcopy(load("blockchair/bitcoin_blocks_docs_example.json")["data"][0])
    row.update(overrides)
    return row


def eth_block_row(**overrides: Any) -> dict[str, Any]:
    row = copy.deepcopy(load("blockchair/ethereum_blocks_docs_example.json")["data"][0])
    row.update(overrides)
    return row


def btc_tx_row(**overrides: Any) -> dict[str, Any]:
    row = copy.deepcopy(load("blockchair/bitcoin_transactions_docs_example.json")["data"][0])
    row.update(overrides)
    return row


def eth_call_row(**overrides: Any) -> dict[str, Any]:
    """The `call` row of the docs' Ethereum transactions sample (the second row)."""
    row = copy.deepcopy(load("blockchair/ethereum_transactions_docs_example.json")["data"][1])
    row.update(overrides)
    return row


def btc_blocks(payload: Any, **kwargs: Any):
    return parse_blocks(payload, coin_symbol="BTC", family="bitcoin", now=NOW, **kwargs)


def eth_blocks(payload: Any, **kwargs: Any):
    return parse_blocks(payload, coin_symbol="ETH", family="ethereum", now=NOW, **kwargs)


def btc_transactions(payload: Any, **kwargs: Any):
    return parse_transactions(payload, coin_symbol="BTC", family="bitcoin", now=NOW, **kwargs)


def eth_transactions(payload: Any, **kwargs: Any):
    return parse_transactions(payload, coin_symbol="ETH", family="ethereum", now=NOW, **kwargs)


def btc_addresses(payload: Any, requested: list[str], **kwargs: Any):
    return parse_address_dashboard(
        payload, coin_symbol="TBTC", family="bitcoin", requested=requested, now=NOW, **kwargs
    )


def eth_addresses(payload: Any, requested: list[str], **kwargs: Any):
    return parse_address_dashboard(
        payload, coin_symbol="ETH", family="ethereum", requested=requested, now=NOW, **kwargs
    )


def single_reason(result: Any) -> str:
    assert len(result.rejects) == 1, result.rejects
    return result.rejects[0].reason


# ---------------------------------------------------------------- saved samples: blocks


def test_bitcoin_blocks_docs_example_gives_block_599954_with_exact_values():
    result = btc_blocks(load("blockchair/bitcoin_blocks_docs_example.json"))

    assert result.rejects == []
    assert result.rows_seen == 1
    assert result.tip == 599954
    (block,) = result.records
    assert block.coin_symbol == "BTC"
    assert block.block_id == 599954
    assert block.hash == BTC_BLOCK_HASH
    assert block.time == datetime(2019, 10, 18, 17, 16, 18, tzinfo=UTC)
    assert block.transaction_count == 2157
    assert block.size == 1291891
    assert block.difficulty == Decimal("13008091666972")
    assert block.output_total == 256840274198
    assert block.fee_total == 14959404
    assert block.reward == 1264959404
    assert block.fee_total_usd == Decimal("1206.3")
    assert block.output_total_usd == Decimal("20711100")
    assert block.reward_usd == Decimal("102004")
    # Ethereum-only columns stay empty on a Bitcoin-like chain.
    assert (block.gas_used, block.gas_limit, block.miner) == (None, None, None)


def test_bitcoin_block_amounts_are_exact_ints_and_usd_exact_decimals():
    (block,) = btc_blocks(load("blockchair/bitcoin_blocks_docs_example.json")).records

    assert type(block.fee_total) is int
    assert type(block.fee_total_usd) is Decimal
    assert str(block.fee_total_usd) == "1206.3"


def test_ethereum_blocks_docs_example_keeps_wei_exact_and_gas():
    result = eth_blocks(load("blockchair/ethereum_blocks_docs_example.json"))

    assert result.rejects == []
    assert result.tip == 8766260
    (block,) = result.records
    assert block.block_id == 8766253
    assert block.hash == ETH_BLOCK_HASH
    assert block.hash.startswith("0x")
    assert block.time == datetime(2019, 10, 18, 17, 39, 40, tzinfo=UTC)
    assert block.transaction_count == 172
    # value_total is a wei string above 2**63: the record keeps it as an exact int.
    assert block.output_total == int("14324135521180578322")
    assert block.output_total > 2**63
    assert block.fee_total == 29252299880000000
    assert block.reward == 2029252299880000000
    assert block.output_total_usd == Decimal("2536.74001038483")
    assert block.gas_used == 9895313
    assert block.gas_limit == 9920736
    assert block.miner == "0x52bc44d5378309ee2abf1539bf71de1b7d7be3b5"
    assert block.difficulty == Decimal(2408192424049377)


def test_genesis_row_from_the_block_dashboard_parses_as_a_block():
    dashboard = load("blockchair/bitcoin_block_dashboard_docs_example.json")
    row = dashboard["data"]["0"]["block"]

    result = btc_blocks(listing([row], state=dashboard["context"]["state"]))

    assert result.rejects == []
    assert result.tip == 555555
    (block,) = result.records
    assert block.block_id == 0
    assert block.hash == "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
    assert block.time == datetime(2009, 1, 3, 18, 15, 5, tzinfo=UTC)
    assert block.transaction_count == 1
    assert block.reward == 5_000_000_000
    assert block.output_total == 5_000_000_000
    assert block.fee_total == 0
    assert block.fee_total_usd == Decimal(0)
    assert block.difficulty == Decimal(1)


def test_block_dashboard_body_is_not_a_blocks_listing():
    with pytest.raises(ResponseFormatError, match="expected a list of rows"):
        btc_blocks(load("blockchair/bitcoin_block_dashboard_docs_example.json"))


# ---------------------------------------------------------------- saved samples: transactions


def test_bitcoin_transactions_docs_example_gives_one_exact_transaction():
    result = btc_transactions(load("blockchair/bitcoin_transactions_docs_example.json"))

    assert result.rejects == []
    assert result.rows_seen == 1
    assert result.tip == 600573
    (tx,) = result.records
    assert tx.coin_symbol == "BTC"
    assert tx.tx_hash == BTC_TX_HASH
    assert tx.block_id == 600573
    assert tx.source_id == 467508697
    assert tx.time == datetime(2019, 10, 22, 19, 9, 34, tzinfo=UTC)
    assert tx.fee == 168
    assert tx.input_total == 29340442
    assert tx.output_total == 29340274
    assert tx.fee_usd == Decimal("0.0137931")
    assert tx.input_total_usd == Decimal("2408.9")
    assert tx.output_total_usd == Decimal("2408.89")
    assert (tx.input_count, tx.output_count, tx.size) == (1, 2, 250)
    assert tx.is_coinbase is False
    assert (tx.sender, tx.recipient, tx.value, tx.failed) == (None, None, None, None)


def test_ethereum_transactions_docs_example_skips_synthetic_coinbase_and_keeps_the_call():
    result = eth_transactions(load("blockchair/ethereum_transactions_docs_example.json"))

    # The synthetic_coinbase row is skipped, not rejected; it still counts as a row the source sent.
    assert result.rejects == []
    assert result.rows_seen == 2
    assert result.tip == 8791945
    (tx,) = result.records
    assert tx.tx_hash == ETH_TX_HASH
    assert tx.block_id == 46147
    assert tx.source_id == 46147000000
    assert tx.time == datetime(2015, 8, 7, 3, 30, 33, tzinfo=UTC)
    assert tx.value == 31337
    assert tx.fee == 1050000000000000000
    assert tx.fee_usd == Decimal("1.05")
    assert tx.output_total_usd == Decimal("3.1337E-14")
    assert tx.sender == "0xa1e4380a3b1f749673e270229993ee55f35663b4"
    assert tx.recipient == "0x5df9b87991262f6ba471f09758cde1c0fc1de734"
    assert tx.gas_used == 21000
    assert tx.failed is False
    # Bitcoin-only columns stay empty on Ethereum.
    assert (tx.input_total, tx.output_total, tx.input_count) == (None, None, None)


def test_transaction_row_from_the_testnet_transaction_dashboard_parses_as_a_transaction():
    dashboard = load("blockchair/bitcoin_testnet_transaction_dashboard.json")
    (tx_hash,) = dashboard["data"]
    row = dashboard["data"][tx_hash]["transaction"]

    result = parse_transactions(listing([row]), coin_symbol="TBTC", family="bitcoin", now=NOW)

    assert result.rejects == []
    (tx,) = result.records
    assert tx.tx_hash == "227178d784150211e8ea5a586ee75bc97655e61f02bc8c07557e475cfecea3cd"
    assert tx.block_id == 2428751
    assert tx.source_id == 65331999
    assert tx.time == datetime(2023, 4, 13, 15, 29, 58, tzinfo=UTC)
    assert tx.fee == 255
    assert tx.input_total == 2392235
    assert tx.output_total == 2391980
    assert tx.size == 255
    assert tx.is_coinbase is False


def test_transaction_dashboard_body_is_not_a_transactions_listing():
    with pytest.raises(ResponseFormatError):
        btc_transactions(load("blockchair/bitcoin_testnet_transaction_dashboard.json"))


# ---------------------------------------------------------------- saved samples: address dashboard


def test_testnet_address_dashboard_gives_balance_and_seen_times():
    result = btc_addresses(load("blockchair/bitcoin_testnet_address_dashboard.json"), [TESTNET_ADDRESS])

    assert result.rejects == []
    assert result.rows_seen == 1
    # context.limit is the string "100,100" in this real reply; it does not get in the way.
    assert result.tip == 2428749
    (address,) = result.records
    assert address.coin_symbol == "TBTC"
    assert address.address == TESTNET_ADDRESS
    assert address.balance == 2392235
    assert address.received == 35323650
    assert address.spent == 32931415
    assert address.balance_usd == Decimal(0)
    assert address.transaction_count == 12
    # first_seen = min(first_seen_receiving, first_seen_spending); last_seen = max of the last_* pair.
    assert address.first_seen == datetime(2023, 4, 12, 16, 16, 31, tzinfo=UTC)
    assert address.last_seen == datetime(2023, 4, 13, 15, 15, 24, tzinfo=UTC)


def test_address_dashboard_rejects_a_requested_address_the_source_left_out():
    payload = load("blockchair/bitcoin_testnet_address_dashboard.json")

    result = btc_addresses(payload, [TESTNET_ADDRESS, "mzBc4XEFSdzCDcTxAgf6EZXgsZWpztRhef"])

    assert [r.address for r in result.records] == [TESTNET_ADDRESS]
    assert single_reason(result) == NOT_RETURNED
    assert result.rejects[0].record == {"address": "mzBc4XEFSdzCDcTxAgf6EZXgsZWpztRhef"}


# ---------------------------------------------------------------- error bodies


@pytest.mark.parametrize(
    "parse",
    [
        btc_blocks,
        btc_transactions,
        lambda payload: btc_addresses(payload, [TESTNET_ADDRESS]),
    ],
    ids=["blocks", "transactions", "address_dashboard"],
)
def test_error_430_body_with_null_data_is_a_response_format_error(parse):
    payload = load("blockchair/error_430.json")
    assert payload["data"] is None

    with pytest.raises(ResponseFormatError) as excinfo:
        parse(payload)

    assert excinfo.value.source == "blockchair"
    assert excinfo.value.status == 200


@pytest.mark.parametrize(
    "name",
    ["error_429.json", "error_500.json", "error_422_missing_date.json", "error_10012_time_range.json"],
)
def test_coingecko_error_bodies_are_not_blockchair_envelopes(name):
    with pytest.raises(ResponseFormatError, match="not a Blockchair envelope"):
        btc_blocks(load(f"coingecko/{name}"))


def test_response_format_error_names_the_endpoint_passed_in():
    with pytest.raises(ResponseFormatError) as excinfo:
        btc_blocks({"context": {}}, endpoint="/bitcoin/blocks")

    assert excinfo.value.endpoint == "/bitcoin/blocks"
    assert "/bitcoin/blocks" in str(excinfo.value)


# ---------------------------------------------------------------- envelope and context


@pytest.mark.parametrize(
    "payload",
    [None, [], [{"data": []}], "data", 42, {}, {"context": {"state": 1}}, {"Data": []}],
    ids=["null", "list", "list_of_envelope", "string", "int", "empty_object", "no_data", "wrong_case"],
)
def test_payload_that_is_not_an_envelope_is_a_response_format_error(payload):
    with pytest.raises(ResponseFormatError):
        btc_blocks(payload)


@pytest.mark.parametrize(
    "data",
    [None, "[]", 0, True, {"0": {"block": {}}}],
    ids=["null", "string", "zero", "true", "non_empty_object"],
)
@pytest.mark.parametrize("parse", [btc_blocks, btc_transactions], ids=["blocks", "transactions"])
def test_listing_data_that_is_not_a_list_is_a_response_format_error(parse, data):
    with pytest.raises(ResponseFormatError, match="expected a list of rows"):
        parse({"data": data, "context": {"state": 1}})


@pytest.mark.parametrize("data", [[], {}], ids=["empty_list", "empty_object"])
@pytest.mark.parametrize("parse", [btc_blocks, btc_transactions], ids=["blocks", "transactions"])
def test_listing_with_no_rows_is_an_empty_result_with_the_tip(parse, data):
    result = parse({"data": data, "context": {"state": 600_001}})

    assert result.records == []
    assert result.rejects == []
    assert result.rows_seen == 0
    assert result.tip == 600_001


def test_envelope_splits_data_and_context_and_tolerates_a_missing_context():
    assert envelope({"data": [1], "context": {"state": 3}}, "/x") == ([1], {"state": 3})
    assert envelope({"data": [1]}, "/x") == ([1], {})
    assert envelope({"data": [1], "context": None}, "/x") == ([1], {})
    assert envelope({"data": [1], "context": ["state", 3]}, "/x") == ([1], {})


@pytest.mark.parametrize(
    ("context", "tip"),
    [
        ({"state": 599954}, 599954),
        ({"state": 0}, 0),
        ({}, None),
        ({"state": None}, None),
        ({"state": "599954"}, None),
        ({"state": -1}, None),
        ({"state": True}, None),
        ({"state": Decimal("599954.0")}, None),
        ({"state": [599954]}, None),
    ],
    ids=["int", "zero", "missing", "null", "string", "negative", "bool", "decimal", "list"],
)
def test_chain_tip_is_only_a_non_negative_int_state(context, tip):
    assert chain_tip(context) == tip


@pytest.mark.parametrize(
    "context",
    [
        {"state": "599954", "limit": "100,100"},
        {"limit": None, "offset": None},
        {"state": -5, "limit": "1"},
    ],
    ids=["string_state_string_limit", "missing_state_null_limit", "negative_state"],
)
def test_unusable_state_gives_no_tip_but_rows_still_parse(context):
    result = btc_blocks({"data": [btc_block_row()], "context": context})

    assert result.tip is None
    assert [b.block_id for b in result.records] == [599954]


@pytest.mark.parametrize("limit", ["100,100", None, 1, "abc"], ids=["string", "null", "int", "garbage"])
def test_context_limit_of_any_type_is_ignored(limit):
    result = btc_blocks(listing([btc_block_row()], limit=limit, offset="0,0"))

    assert len(result.records) == 1
    assert result.tip == 600_000


def test_context_that_is_not_an_object_gives_no_tip():
    result = btc_blocks({"data": [btc_block_row()], "context": "oops"})

    assert result.tip is None
    assert len(result.records) == 1


# ---------------------------------------------------------------- row-level validation


def test_row_missing_hash_is_rejected_naming_hash_and_the_others_still_parse():
    rows = [btc_block_row(id=1), btc_block_row(id=2), btc_block_row(id=3)]
    del rows[1]["hash"]

    result = btc_blocks(listing(rows))

    assert [b.block_id for b in result.records] == [1, 3]
    assert result.rows_seen == 3
    reason = single_reason(result)
    assert reason.startswith("hash=None")
    assert result.rejects[0].record is rows[1]


def test_row_with_non_numeric_id_is_rejected_naming_block_id():
    rows = [btc_block_row(id="abc"), btc_block_row(id=7)]

    result = btc_blocks(listing(rows))

    assert [b.block_id for b in result.records] == [7]
    reason = single_reason(result)
    assert "block_id='abc'" in reason
    assert "valid integer" in reason


def test_several_bad_rows_are_each_rejected_and_counted():
    rows = [
        btc_block_row(id=10),
        btc_block_row(id="abc"),
        "not a row",
        btc_block_row(id=11, hash=None),
        None,
        btc_block_row(id=12),
        btc_block_row(id=13, transaction_count=-1),
    ]

    result = btc_blocks(listing(rows))

    assert [b.block_id for b in result.records] == [10, 12]
    assert len(result.rejects) == 5
    assert len(result.records) + len(result.rejects) == result.rows_seen == 7
    assert [r.reason for r in result.rejects].count("not an object") == 2
    assert "transaction_count=-1" in result.rejects[-1].reason


@pytest.mark.parametrize(
    "row", ["abc", 42, None, [1, 2], True], ids=["string", "int", "null", "list", "bool"]
)
def test_row_that_is_not_an_object_is_rejected_with_the_raw_row(row):
    result = btc_blocks(listing([row, btc_block_row()]))

    assert len(result.records) == 1
    assert single_reason(result) == "not an object"
    assert result.rejects[0].record == row


def test_row_with_all_fields_wrong_names_every_field_in_the_reason():
    result = btc_blocks(listing([{"id": "x", "hash": 5, "time": "yesterday", "transaction_count": "many"}]))

    reason = single_reason(result)
    for name in ("block_id", "hash", "time", "transaction_count"):
        assert f"{name}=" in reason


def test_numbers_sent_as_strings_are_accepted_exactly():
    row = btc_block_row(id="599954", transaction_count="2157", fee_total="14959404", fee_total_usd="1206.3")

    (block,) = btc_blocks(listing([row])).records

    assert block.block_id == 599954
    assert block.transaction_count == 2157
    assert block.fee_total == 14959404
    assert block.fee_total_usd == Decimal("1206.3")


def test_wei_strings_above_2_pow_64_stay_exact_ints():
    huge = 2**128 + 12345
    row = eth_block_row(value_total=str(huge), fee_total=str(2**64 + 1), reward=str(2**70))

    (block,) = eth_blocks(listing([row])).records

    assert block.output_total == huge
    assert block.fee_total == 2**64 + 1
    assert block.reward == 2**70


def test_wei_sent_as_a_json_number_is_accepted_when_integral():
    # apis.md 1.5: some wei fields come as JSON numbers (1.337e+21), which the client decodes as Decimal.
    wei = json.loads("1.337e+21", parse_float=Decimal)
    assert wei == Decimal("1.337E+21")

    (block,) = eth_blocks(listing([eth_block_row(value_total=wei)])).records

    assert block.output_total == 1337 * 10**18


def test_fractional_amount_is_rejected_not_rounded():
    result = btc_blocks(listing([btc_block_row(fee_total=Decimal("12.5"))]))

    assert "fee_total=Decimal('12.5')" in single_reason(result)


def test_amount_beyond_the_column_bound_is_rejected():
    result = eth_blocks(listing([eth_block_row(value_total=str(10**76))]))

    assert single_reason(result).startswith("output_total=")


def test_negative_amount_is_rejected():
    result = btc_blocks(listing([btc_block_row(reward=-1)]))

    assert single_reason(result).startswith("reward=-1")


def test_integer_field_with_a_huge_exponent_is_rejected_quickly():
    huge = json.loads("1e3000000", parse_float=Decimal)

    started = time.perf_counter()
    result = btc_blocks(listing([btc_block_row(id=huge), btc_block_row(id=2)]))
    elapsed = time.perf_counter() - started

    assert single_reason(result).startswith("block_id=")
    # A fixed parser takes microseconds; the threshold is loose so a slow machine cannot trip it.
    assert elapsed < 0.3


def test_bitcoin_hash_with_0x_prefix_is_rejected_under_bitcoin_family():
    result = btc_blocks(listing([btc_block_row(hash="0x" + BTC_BLOCK_HASH)]))

    reason = single_reason(result)
    assert reason.startswith("hash=")
    assert "no 0x prefix" in reason


def test_ethereum_hash_without_0x_is_rejected_under_ethereum_family():
    result = eth_blocks(listing([eth_block_row(hash=ETH_BLOCK_HASH.removeprefix("0x"))]))

    reason = single_reason(result)
    assert reason.startswith("hash=")
    assert "0x-prefixed" in reason


def test_hash_is_normalised_to_lower_case_and_stripped():
    (block,) = btc_blocks(listing([btc_block_row(hash=f" {BTC_BLOCK_HASH.upper()}\n")])).records

    assert block.hash == BTC_BLOCK_HASH


@pytest.mark.parametrize(
    "bad_hash",
    ["", "00" * 31, "00" * 33, "zz" * 32, "0x" + "ab" * 31],
    ids=["empty", "short", "long", "not_hex", "prefixed_short"],
)
def test_hash_that_is_not_64_hex_digits_is_rejected(bad_hash):
    result = btc_blocks(listing([btc_block_row(hash=bad_hash)]))

    assert "not a 64-digit hex hash" in single_reason(result)


def test_future_time_beyond_two_hours_is_rejected_with_a_fixed_now():
    rows = [
        btc_block_row(id=1, time="2025-01-01 14:00:00"),  # now + 2 h: the tolerance, accepted
        btc_block_row(id=2, time="2025-01-01 14:00:01"),  # one second past the tolerance
    ]

    result = btc_blocks(listing(rows))

    assert [b.block_id for b in result.records] == [1]
    reason = single_reason(result)
    assert reason.startswith("time=")
    assert "in the future" in reason


def test_the_clock_is_the_now_passed_in():
    row = btc_block_row(time="2030-06-01 00:00:00")

    early = parse_blocks(listing([row]), coin_symbol="BTC", family="bitcoin", now=NOW)
    late = parse_blocks(
        listing([row]), coin_symbol="BTC", family="bitcoin", now=datetime(2031, 1, 1, tzinfo=UTC)
    )

    assert early.records == []
    assert len(late.records) == 1


def test_time_with_an_offset_is_converted_to_utc():
    (block,) = btc_blocks(listing([btc_block_row(time="2019-10-18T19:16:18+02:00")])).records

    assert block.time == datetime(2019, 10, 18, 17, 16, 18, tzinfo=UTC)


@pytest.mark.parametrize("time", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"])
def test_time_at_the_edge_of_the_datetime_range_is_a_reject_not_a_crash(time):
    result = btc_blocks(listing([btc_block_row(time=time), btc_block_row(id=2)]))

    assert len(result.records) + len(result.rejects) == 2
    assert single_reason(result).startswith("time=")


def test_miner_longer_than_the_column_is_rejected():
    result = eth_blocks(listing([eth_block_row(miner="0x" + "a" * 80)]))

    assert single_reason(result).startswith("miner=")


def test_coin_symbol_is_stamped_on_every_record():
    rows = [btc_block_row(id=i) for i in range(3)]

    result = parse_blocks(listing(rows), coin_symbol="LTC", family="bitcoin", now=NOW)

    assert {b.coin_symbol for b in result.records} == {"LTC"}


# ---------------------------------------------------------------- transactions


def test_mempool_row_is_skipped_but_counted_as_seen():
    rows = [btc_tx_row(), btc_tx_row(block_id=-1, hash="ab" * 32)]

    result = btc_transactions(listing(rows))

    assert [t.block_id for t in result.records] == [600573]
    assert result.rejects == []
    assert result.rows_seen == 2


def test_ethereum_mempool_row_with_nulls_is_skipped():
    row = eth_call_row(block_id=-1, id=None, time="2025-01-01 11:59:00", fee=None, gas_used=None)

    result = eth_transactions(listing([row, eth_call_row()]))

    assert len(result.records) == 1
    assert result.rejects == []


def test_synthetic_coinbase_is_skipped_even_with_a_hash():
    row = eth_call_row(type="synthetic_coinbase")

    result = eth_transactions(listing([row]))

    assert (result.records, result.rejects, result.rows_seen) == ([], [], 1)


def test_transaction_rows_are_each_accounted_for():
    rows = [
        btc_tx_row(),
        btc_tx_row(hash=None),
        btc_tx_row(block_id=-1),
        "junk",
        btc_tx_row(block_id="abc"),
        btc_tx_row(hash="ab" * 32, block_id=600574),
    ]

    result = btc_transactions(listing(rows))

    assert [t.block_id for t in result.records] == [600573, 600574]
    assert [r.reason.split("=")[0] for r in result.rejects] == ["tx_hash", "not an object", "block_id"]
    # One mempool row skipped: records + rejects == rows - skipped.
    assert len(result.records) + len(result.rejects) == result.rows_seen - 1


def test_coinbase_flag_is_kept_and_defaults_to_false_when_missing():
    coinbase = btc_tx_row(is_coinbase=True)
    plain = btc_tx_row(hash="cd" * 32)
    del plain["is_coinbase"]

    result = btc_transactions(listing([coinbase, plain]))

    assert [t.is_coinbase for t in result.records] == [True, False]


def test_ethereum_transaction_with_bad_sender_is_rejected_naming_sender():
    result = eth_transactions(listing([eth_call_row(sender="0x1234")]))

    reason = single_reason(result)
    assert reason.startswith("sender=")
    assert "40-digit hex address" in reason


def test_ethereum_addresses_are_lower_cased():
    row = eth_call_row(recipient="0x5DF9B87991262F6BA471F09758CDE1C0FC1DE734")

    (tx,) = eth_transactions(listing([row])).records

    assert tx.recipient == "0x5df9b87991262f6ba471f09758cde1c0fc1de734"


def test_failed_ethereum_transaction_is_kept_with_failed_true():
    (tx,) = eth_transactions(listing([eth_call_row(failed=True)])).records

    assert tx.failed is True


def test_ethereum_transaction_hash_without_0x_is_rejected():
    result = eth_transactions(listing([eth_call_row(hash=ETH_TX_HASH.removeprefix("0x"))]))

    assert single_reason(result).startswith("tx_hash=")


def test_bitcoin_transaction_hash_with_0x_is_rejected():
    result = btc_transactions(listing([btc_tx_row(hash="0x" + BTC_TX_HASH)]))

    assert "no 0x prefix" in single_reason(result)


def test_ethereum_value_above_2_pow_64_is_exact():
    (tx,) = eth_transactions(listing([eth_call_row(value=str(2**100 + 1))])).records

    assert tx.value == 2**100 + 1


def test_future_transaction_is_rejected():
    result = eth_transactions(listing([eth_call_row(time="2026-01-01 00:00:00")]))

    assert "in the future" in single_reason(result)


def test_transaction_time_at_the_edge_of_the_datetime_range_is_a_reject_not_a_crash():
    result = btc_transactions(listing([btc_tx_row(time="0001-01-01T00:00:00+01:00")]))

    assert single_reason(result).startswith("time=")


# ---------------------------------------------------------------- address dashboards


@pytest.mark.parametrize("data", [[], {}], ids=["empty_list", "empty_object"])
def test_empty_address_dashboard_rejects_every_requested_address(data):
    requested = [TESTNET_ADDRESS, "mzBc4XEFSdzCDcTxAgf6EZXgsZWpztRhef"]

    result = btc_addresses({"data": data, "context": {"state": 7}}, requested)

    assert result.records == []
    assert [r.reason for r in result.rejects] == [NOT_RETURNED, NOT_RETURNED]
    assert [r.record for r in result.rejects] == [{"address": a} for a in requested]
    assert result.rows_seen == 0
    assert result.tip == 7


@pytest.mark.parametrize(
    "data", [None, "x", 3, [{"address": {}}]], ids=["null", "string", "int", "non_empty_list"]
)
def test_address_dashboard_data_that_is_not_an_object_is_a_response_format_error(data):
    with pytest.raises(ResponseFormatError, match="expected an object"):
        btc_addresses({"data": data, "context": {}}, [TESTNET_ADDRESS])


def test_address_dashboard_with_no_requested_addresses_is_empty():
    result = btc_addresses(load("blockchair/bitcoin_testnet_address_dashboard.json"), [])

    assert (result.records, result.rejects) == ([], [])
    assert result.rows_seen == 1


def test_plural_address_dashboard_reads_data_addresses():
    result = btc_addresses(
        load_edge("blockchair_plural_address_dashboard.json"),
        [
            "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",
            "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
            "1MissingAddressXXXXXXXXXXXXXXXXXX",
        ],
    )

    assert result.tip == 870_000
    assert result.rows_seen == 2
    first, second = result.records
    assert first.address == "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"
    assert first.balance == 5_000_000_000
    assert first.received == 5_000_000_000
    assert first.spent == 0
    assert first.balance_usd == Decimal("4876543.21")
    assert first.first_seen == datetime(2009, 1, 9, 2, 54, 25, tzinfo=UTC)
    assert first.last_seen == datetime(2009, 1, 9, 2, 54, 25, tzinfo=UTC)
    assert second.address == "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"
    assert second.balance == 0
    assert (second.received, second.spent) == (123_456_789, 123_456_789)
    assert second.first_seen == datetime(2015, 3, 1, 10, 0, tzinfo=UTC)
    assert second.last_seen == datetime(2021, 7, 1, 8, 30, tzinfo=UTC)
    assert second.transaction_count == 4
    assert single_reason(result) == NOT_RETURNED


def test_ethereum_address_dashboard_reads_wei_strings_and_approximate_totals():
    result = eth_addresses(load_edge("blockchair_ethereum_address_dashboard.json"), [ETH_ADDRESS])

    assert result.rejects == []
    assert result.tip == 21_000_000
    (address,) = result.records
    assert address.address == ETH_ADDRESS
    assert address.balance == int("123456789012345678901234567")  # > 2**64, exact
    assert address.received == int("987654321098765432109876543")  # received_approximate
    assert address.spent == int("864197532086419753208641976")  # spent_approximate
    assert address.balance_usd == Decimal("412345678.9")
    assert address.transaction_count == 231
    assert address.first_seen == datetime(2016, 2, 1, 9, 0, 0, tzinfo=UTC)
    assert address.last_seen == datetime(2024, 11, 30, 23, 59, 59, tzinfo=UTC)


def test_ethereum_family_ignores_bitcoin_style_received_and_spent():
    payload = {"data": {ETH_ADDRESS: {"address": {"balance": "5", "received": "7", "spent": "2"}}}}

    (address,) = eth_addresses(payload, [ETH_ADDRESS]).records

    assert (address.balance, address.received, address.spent) == (5, None, None)


def test_address_never_seen_has_no_first_or_last_seen():
    info = {"balance": 0, "received": 0, "spent": 0, "transaction_count": 0}
    info |= dict.fromkeys(("first_seen_receiving", "last_seen_receiving"))
    info |= {"first_seen_spending": "", "last_seen_spending": None}

    (address,) = btc_addresses({"data": {TESTNET_ADDRESS: {"address": info}}}, [TESTNET_ADDRESS]).records

    assert (address.first_seen, address.last_seen) == (None, None)


def test_address_seen_only_receiving_uses_the_receiving_times():
    info = {
        "balance": 1,
        "first_seen_receiving": "2020-05-05 05:05:05",
        "last_seen_receiving": "2021-06-06 06:06:06",
        "first_seen_spending": None,
        "last_seen_spending": None,
    }

    (address,) = btc_addresses({"data": {TESTNET_ADDRESS: {"address": info}}}, [TESTNET_ADDRESS]).records

    assert address.first_seen == datetime(2020, 5, 5, 5, 5, 5, tzinfo=UTC)
    assert address.last_seen == datetime(2021, 6, 6, 6, 6, 6, tzinfo=UTC)


def test_address_entry_without_an_address_object_is_not_returned():
    payload = {"data": {TESTNET_ADDRESS: {"transactions": [], "utxo": []}}}

    result = btc_addresses(payload, [TESTNET_ADDRESS])

    assert single_reason(result) == NOT_RETURNED


@pytest.mark.parametrize("info", [[1, 2], "abc", 5], ids=["list", "string", "int"])
def test_address_object_that_is_not_an_object_is_rejected(info):
    result = btc_addresses({"data": {TESTNET_ADDRESS: {"address": info}}}, [TESTNET_ADDRESS])

    assert single_reason(result) == "not an object"
    assert result.rejects[0].record == {TESTNET_ADDRESS: info}


def test_address_with_bad_balance_is_rejected_naming_balance():
    payload = {"data": {TESTNET_ADDRESS: {"address": {"balance": "lots"}}}}

    result = btc_addresses(payload, [TESTNET_ADDRESS])

    assert single_reason(result).startswith("balance='lots'")


def test_address_with_future_last_seen_is_rejected():
    info = {"balance": 1, "last_seen_receiving": "2030-01-01 00:00:00"}

    result = btc_addresses({"data": {TESTNET_ADDRESS: {"address": info}}}, [TESTNET_ADDRESS])

    assert single_reason(result).startswith("last_seen=")


def test_requested_address_with_characters_outside_the_pattern_is_rejected():
    bad = "bc1q address"
    payload = {"data": {bad: {"address": {"balance": 1}}}}

    result = btc_addresses(payload, [bad])

    assert single_reason(result).startswith("address=")


def test_plural_dashboard_with_empty_addresses_list_has_no_rows_seen():
    payload = {"data": {"set": {"address_count": 0}, "addresses": [], "transactions": [], "utxo": []}}

    result = btc_addresses(payload, [TESTNET_ADDRESS])

    assert single_reason(result) == NOT_RETURNED
    assert result.rows_seen == 0


# ---------------------------------------------------------------- Reject.sample


def test_reject_sample_is_json_serialisable_with_decimals():
    reject = Reject("fee_total=Decimal('12.5'): bad", {"fee_total": Decimal("12.5"), "rows": [1, None]})

    sample = reject.sample()

    assert json.loads(json.dumps(sample)) == sample
    assert json.loads(sample["record"]) == {"fee_total": "12.5", "rows": [1, None]}


def test_reject_sample_truncates_a_huge_record_and_reason():
    reject = Reject("r" * 10_000, {"blob": "x" * 100_000})

    sample = reject.sample()

    assert len(sample["record"]) == MAX_SAMPLE_CHARS + 1
    assert sample["record"].endswith("…")
    assert len(sample["reason"]) == 500
    json.dumps(sample)


def test_parser_rejects_give_json_safe_samples():
    rows = [btc_block_row(fee_total=Decimal("0.5")), "junk", btc_block_row(hash=None)]

    result = btc_blocks(listing(rows))

    assert len(result.rejects) == 3
    for reject in result.rejects:
        sample = reject.sample()
        assert json.loads(json.dumps(sample)) == sample
        assert sample["reason"] == reject.reason
