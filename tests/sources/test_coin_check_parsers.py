"""The two replies `crypto-pipeline coins add` reads, parsed from saved samples (pure functions).

Samples (tests/fixtures/):
- `coingecko/coin_bitcoin_details_trimmed.json`: a real `/coins/bitcoin` reply of 2021-06-30 asked with
  localization, tickers, market, community and developer data off (quoted whole in a public repository's
  code comment, index file id 5469242007, repository not identified); only `description.en` is cut to its
  first sentence.
- `coingecko/history_bitcoin_30-12-2017.json` (real, apis.md 3): the same top-level id/symbol/name, no
  `genesis_date`.
- `blockchair/bitcoin_testnet_stats.json` (real, apis.md 3): Bitcoin-like stats.
- `blockchair/ethereum_stats_docs_example.json`, `blockchair/cardano_stats_docs_example.json`: the examples
  of Blockchair's API docs ("Ethereum-like" and "Cardano-like blockchain stats"), `context` cut to its code.
"""

from __future__ import annotations

from datetime import date

import pytest

from pipeline.errors import ResponseFormatError
from pipeline.sources.blockchair import KNOWN_FAMILIES, family_of_stats, parse_chain_stats, stats_path
from pipeline.sources.coingecko import COIN_PARAMS, coin_path, parse_coin
from tests.support.fixtures import load_fixture


def test_coin_description_from_a_real_coins_id_reply():
    described = parse_coin(load_fixture("coingecko/coin_bitcoin_details_trimmed.json"), coin_id="bitcoin")
    assert (described.id, described.symbol, described.name) == ("bitcoin", "btc", "Bitcoin")
    assert described.genesis_date == date(2009, 1, 3)


def test_a_reply_without_genesis_date_leaves_it_unknown():
    described = parse_coin(load_fixture("coingecko/history_bitcoin_30-12-2017.json"), coin_id="bitcoin")
    assert described.name == "Bitcoin"
    assert described.genesis_date is None


@pytest.mark.parametrize("genesis", [None, "", "unknown", "2009-13-40", 20090103])
def test_a_genesis_date_that_is_not_a_date_is_unknown(genesis):
    payload = load_fixture("coingecko/coin_bitcoin_details_trimmed.json") | {"genesis_date": genesis}
    assert parse_coin(payload, coin_id="bitcoin").genesis_date is None


@pytest.mark.parametrize(
    ("payload", "complaint"),
    [
        ({"id": "bitcoin-cash", "symbol": "bch", "name": "Bitcoin Cash"}, "reply is about 'bitcoin-cash'"),
        ({"id": "bitcoin", "symbol": "btc"}, "no 'name'"),
        ({"id": "bitcoin", "symbol": "btc", "name": "  "}, "no 'name'"),
        ({"error": "coin not found"}, "error body"),
        ({"status": {"error_code": 429, "error_message": "rate limited"}}, "error body"),
        ([], "not a JSON object"),
    ],
)
def test_a_reply_that_is_not_the_coin_asked_for_is_refused(payload, complaint):
    with pytest.raises(ResponseFormatError, match=complaint):
        parse_coin(payload, coin_id="bitcoin")


def test_the_coin_request_asks_for_the_light_reply():
    assert coin_path("litecoin") == "/coins/litecoin"
    assert {k for k, v in COIN_PARAMS.items() if v == "false"} >= {"tickers", "market_data", "localization"}


def test_bitcoin_like_stats_from_a_real_reply():
    stats = parse_chain_stats(load_fixture("blockchair/bitcoin_testnet_stats.json"))
    assert stats.family == "bitcoin"
    assert stats.tip == 2428755  # context.state
    assert stats.best_block_time == "2023-04-13 15:55:31"


def test_ethereum_like_stats_from_the_docs_example():
    stats = parse_chain_stats(load_fixture("blockchair/ethereum_stats_docs_example.json"))
    assert stats.family == "ethereum"
    assert stats.tip == 8765929  # no context.state here: the best block's height


def test_stats_of_a_chain_of_neither_family_name_none():
    stats = parse_chain_stats(load_fixture("blockchair/cardano_stats_docs_example.json"))
    assert stats.family is None
    assert stats.tip == 3673733


def test_the_ethereum_marks_win_over_a_stray_outputs_field():
    assert family_of_stats({"outputs": 1, "calls": 2}) == "ethereum"
    assert family_of_stats({"outputs": 1}) == "bitcoin"
    assert family_of_stats({"blocks": 1}) is None


@pytest.mark.parametrize(
    "payload",
    [
        {"data": [], "context": {"code": 200, "results": 0}},  # "nothing matched"
        {"data": None, "context": {"code": 200}},
        {"data": {}, "context": {"code": 200}},
        {"context": {"code": 200}},
        "stats",
    ],
)
def test_a_reply_without_stats_is_refused(payload):
    with pytest.raises(ResponseFormatError):
        parse_chain_stats(payload, endpoint="/litecoin/stats")


def test_known_chains_and_the_stats_path():
    assert stats_path("bitcoin/testnet") == "/bitcoin/testnet/stats"
    assert KNOWN_FAMILIES["litecoin"] == KNOWN_FAMILIES["bitcoin-cash"] == "bitcoin"
    assert KNOWN_FAMILIES["ethereum"] == "ethereum"
    assert "cardano" not in KNOWN_FAMILIES
