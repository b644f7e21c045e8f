"""End to end: the ingestors over real HTTP against the simulator, into SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import math
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select, text

from pipeline.ingestion.blockchair import BlockchairIngestor
from pipeline.ingestion.coingecko import CoinGeckoIngestor
from pipeline.ingestion.replay import Replayer
from pipeline.models import BlockchainTransaction, MarketPrice
from pipeline.simulator import FaultRule, Simulator, SimulatorConfig
from tests.support.databases import migrated_database
from tests.support.settings import make_settings

# Through the simulator or the whole page: on SQLite in the fast path, on both dialects in the full suite.
pytestmark = pytest.mark.slow_on_postgresql

BC_KEY = "BCKEY-SECRET-1234567"
CG_KEY = "CGKEY-SECRET-7654321"
WATCH = {
    "bitcoin": ["1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh"],
    "ethereum": ["0x00000000219ab540356cbb839cbe05303d7705fa"],
}


@pytest.fixture
def sim():
    config = SimulatorConfig(
        tip_growth=False, blockchair_key=BC_KEY, coingecko_key=CG_KEY, coingecko_plan="demo"
    )
    with Simulator(config) as simulator:
        yield simulator


@pytest.fixture
def env(sim, database_url):
    settings = make_settings(
        database_url,
        BLOCKCHAIR_BASE_URL=sim.blockchair_url,
        COINGECKO_BASE_URL=sim.coingecko_url,
        BLOCKCHAIR_API_KEY=BC_KEY,
        COINGECKO_API_KEY=CG_KEY,
        COINGECKO_API_PLAN="demo",
        BLOCKS_INITIAL_DEPTH=250,
        WATCH_ADDRESSES=WATCH,
    )
    with migrated_database(settings) as db:
        yield settings, db


@pytest.fixture
def blockchair(env):
    settings, db = env
    return BlockchairIngestor(settings=settings, db=db)


@pytest.fixture
def coingecko(env):
    settings, db = env
    return CoinGeckoIngestor(settings=settings, db=db)


def test_first_block_run_fills_the_initial_depth_exactly(sim, blockchair):
    tip = sim.tip("bitcoin")
    result = blockchair.ingest_blocks(blockchair.coin("bitcoin"))
    assert result.status == "success", result.error_message
    assert result.records_inserted == 250
    assert result.requests_made <= math.ceil(250 / 100) + 2
    assert (result.start_height, result.end_height) == (tip - 249, tip)
    stored = {b.block_id: b for b in blockchair.db.get_blocks(coin_symbol="BTC", limit=None)}
    assert set(stored) == set(range(tip - 249, tip + 1))
    expected = sim.expected_block("bitcoin", tip - 10)
    block = stored[tip - 10]
    assert (block.hash, block.transaction_count, block.fee_total) == (
        expected["hash"],
        expected["transaction_count"],
        expected["fee_total"],
    )
    coin = blockchair.coin("bitcoin")
    assert (coin.block_bookmark, coin.chain_tip_height) == (tip, tip)


def test_second_run_is_incremental_and_cheap(sim, blockchair):
    coin = blockchair.coin("ethereum")
    blockchair.ingest_blocks(coin)
    again = blockchair.ingest_blocks(coin)
    assert again.status == "success"
    assert (again.records_inserted, again.records_updated, again.requests_made) == (0, 0, 1)

    sim.advance_tip("ethereum", 230)
    newer = blockchair.ingest_blocks(coin)
    assert newer.status == "success"
    assert newer.records_inserted == 230
    assert newer.requests_made <= math.ceil(230 / 100) + 2


def test_ethereum_amounts_stay_exact(sim, blockchair):
    blockchair.ingest_blocks(blockchair.coin("ethereum"))
    tip = sim.tip("ethereum")
    for block in blockchair.db.get_blocks(coin_symbol="ETH", limit=50):
        expected = sim.expected_block("ethereum", block.block_id)
        assert block.output_total == int(expected["value_total"])
        assert block.fee_total == int(expected["fee_total"])
    assert blockchair.db.max_block_height("ETH") == tip


def test_reorganisation_is_repaired_and_its_transactions_refetched(sim, blockchair, caplog):
    coin = blockchair.coin("bitcoin")
    blockchair.ingest_blocks(coin)
    blockchair.ingest_transactions(coin)
    tip = sim.tip("bitcoin")
    old = {b.block_id: b.hash for b in blockchair.db.get_blocks(coin_symbol="BTC", limit=3)}

    sim.reorg("bitcoin", 3)
    with caplog.at_level(logging.WARNING):
        repaired = blockchair.ingest_blocks(coin)
    assert repaired.records_updated == 3
    assert repaired.params["reorganised_heights"] == [tip - 2, tip - 1, tip]
    assert "reorganisation" in caplog.text
    for height in range(tip - 2, tip + 1):
        new_hash = blockchair.db.block_hashes("BTC", height, height)[height]
        assert new_hash == sim.expected_block("bitcoin", height)["hash"] != old[height]
        assert blockchair.db.get_transactions(coin_symbol="BTC", block_id=height) == []

    refetched = blockchair.ingest_transactions(coin)
    assert refetched.status == "success", refetched.error_message
    for height in range(tip - 2, tip + 1):
        got = {
            t.tx_hash for t in blockchair.db.get_transactions(coin_symbol="BTC", block_id=height, limit=None)
        }
        assert got == {t["hash"] for t in sim.expected_transactions("bitcoin", height)}


def test_transactions_complete_the_window_then_cost_nothing(sim, blockchair):
    coin = blockchair.coin("dogecoin")
    blockchair.ingest_blocks(coin)
    first = blockchair.ingest_transactions(coin)
    assert first.status == "success", first.error_message
    tip = sim.tip("dogecoin")
    expected = sum(len(sim.expected_transactions("dogecoin", h)) for h in range(tip - 5, tip + 1))
    assert first.records_inserted == expected
    assert blockchair.db.incomplete_transaction_blocks("DOGE", tip - 5, tip) == []
    second = blockchair.ingest_transactions(coin)
    assert (second.requests_made, second.records_inserted, second.status) == (0, 0, "success")


def test_watched_addresses_on_both_chain_families(blockchair):
    results = blockchair.run_daily_ingestion(["bitcoin", "ethereum"], ["addresses"])
    assert results["bitcoin"]["addresses"].status == "success"
    assert results["bitcoin"]["addresses"].requests_made == 1  # both addresses in one request
    assert results["ethereum"]["addresses"].requests_made == 1
    stored = {(a.coin_symbol, a.address): a for a in blockchair.db.get_addresses()}
    assert set(stored) == {("BTC", a) for a in WATCH["bitcoin"]} | {("ETH", a) for a in WATCH["ethereum"]}
    for address in stored.values():
        assert (
            address.balance == (address.received or 0) - (address.spent or 0) or address.coin_symbol == "ETH"
        )


def test_seed_entry_point_returns_a_result_per_coin_and_type(blockchair):
    results = blockchair.run_daily_ingestion(["bitcoin", "ethereum", "dogecoin"])
    assert set(results) == {"bitcoin", "ethereum", "dogecoin"}
    assert set(results["bitcoin"]) == {"blocks", "transactions", "addresses"}
    assert set(results["dogecoin"]) == {"blocks", "transactions"}  # no watched addresses
    assert all(r.status == "success" for per in results.values() for r in per.values())


def test_year_of_prices_for_three_coins_costs_three_requests(sim, coingecko):
    today = datetime.now(UTC).date()
    results = [
        coingecko.ingest_price_range(coingecko.coin(c), today - timedelta(days=364), today)
        for c in ("bitcoin", "ethereum", "dogecoin")
    ]
    assert [r.status for r in results] == ["success"] * 3
    assert sum(r.requests_made for r in results) == 3
    assert all(r.records_inserted == 365 for r in results)
    assert sim.request_counts()["market_chart_range"] == 3
    again = coingecko.ingest_price_range(coingecko.coin("bitcoin"), today - timedelta(days=364), today)
    assert (again.requests_made, again.records_inserted) == (0, 0)


def test_backfill_fetches_only_the_missing_days(sim, coingecko):
    coin = coingecko.coin("ethereum")
    today = datetime.now(UTC).date()
    coingecko.ingest_price_range(coin, today - timedelta(days=99), today)
    hole = [today - timedelta(days=d) for d in (40, 41, 42)]
    with coingecko.db.transaction() as conn:
        conn.execute(
            delete(MarketPrice).where(MarketPrice.coin_id == "ethereum", MarketPrice.price_date.in_(hole))
        )
    sim.reset_counts()
    filled = coingecko.ingest_price_range(coin, today - timedelta(days=99), today)
    assert (filled.requests_made, filled.records_inserted, filled.status) == (1, 3, "success")
    prices = {p.price_date: p for p in coingecko.db.get_market_prices(coin_id="ethereum", limit=None)}
    expected = {d: price for d, price, _cap, _vol in sim.expected_daily_prices("ethereum", hole[-1], hole[0])}
    assert {d: float(prices[d].price_usd) for d in hole} == pytest.approx(expected)


def test_days_beyond_the_plan_are_never_requested(sim, coingecko):
    today = datetime.now(UTC).date()
    result = coingecko.ingest_price_range(
        coingecko.coin("bitcoin"), today - timedelta(days=800), today - timedelta(days=500)
    )
    assert result.status == "success"
    assert result.requests_made == 0
    assert "unavailable_before" in result.params
    assert sim.request_counts()["market_chart_range"] == 0


def test_price_for_yesterday_through_the_history_endpoint(coingecko):
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    results = coingecko.ingest_coingecko_data_for_date(
        {"BTC": "bitcoin", "ETH": "ethereum", "DOGE": "dogecoin"}
    )
    assert {s: r.status for s, r in results.items()} == {
        "BTC": "success",
        "ETH": "success",
        "DOGE": "success",
    }
    assert coingecko.db.get_market_prices(coin_id="bitcoin")[0].price_date == yesterday


def test_transient_500_is_retried_and_counted(sim, blockchair):
    sim.add_fault(FaultRule("500", endpoint="blocks", times=1))
    result = blockchair.ingest_blocks(blockchair.coin("bitcoin"))
    assert result.status == "success"
    assert result.retries == 1
    assert result.records_inserted == 250


def test_rate_limit_429_honours_retry_after(sim, coingecko):
    sim.add_fault(FaultRule("429", endpoint="market_chart_range", times=1, retry_after=1))
    today = datetime.now(UTC).date()
    result = coingecko.ingest_price_range(coingecko.coin("bitcoin"), today - timedelta(days=9), today)
    assert result.status == "success"
    assert result.retries == 1
    assert result.wait_seconds >= 1.0
    # The wait and the time on the wire are recorded apart (the run timeline splits its bar by them).
    run = coingecko.db.get_run(result.id)
    assert 0 < run.http_seconds < run.duration_seconds - 1.0


def test_rejected_key_fails_without_retry(sim, blockchair):
    sim.add_fault(FaultRule("402", endpoint="blocks", times=None))
    result = blockchair.ingest_blocks(blockchair.coin("bitcoin"))
    assert result.status == "failed"
    assert result.error_class == "AuthError"
    assert result.requests_made == 1


def test_malformed_json_fails_the_run_and_a_rerun_completes_it(sim, env, blockchair):
    settings, db = env
    coin = blockchair.coin("bitcoin")
    sim.add_fault(FaultRule("malformed_json", endpoint="blocks", after=1, times=1))
    failed = blockchair.ingest_blocks(coin)
    assert failed.status == "failed"
    assert failed.error_class == "ResponseFormatError"
    stored_after_failure = db.get_database_stats().total_blocks
    assert stored_after_failure % 100 == 0  # whole pages only: no half-written batch

    rerun = Replayer(settings, db).replay(db.get_run(failed.id))
    assert rerun.status == "success", rerun.error_message
    assert rerun.parent_run_id == failed.id
    assert db.get_child_runs(failed.id)[0].id == rerun.id
    assert db.get_database_stats().total_blocks == 250


def test_invalid_record_is_rejected_and_the_rest_load(sim, blockchair):
    sim.add_fault(FaultRule("missing_field", endpoint="blocks", after=1, times=1))  # after the tip probe
    result = blockchair.ingest_blocks(blockchair.coin("bitcoin"))
    assert result.status == "partial"
    assert result.records_rejected == 1
    assert result.records_inserted == 249
    assert "hash" in result.rejected_samples[0]["reason"]
    assert "rejected" in result.error_message


def test_empty_data_is_not_reported_as_success(sim, blockchair):
    coin = blockchair.coin("bitcoin")
    blockchair.ingest_blocks(coin)
    sim.advance_tip("bitcoin", 20)
    sim.add_fault(FaultRule("empty_data", endpoint="blocks", times=1))
    result = blockchair.ingest_blocks(coin)
    assert result.status == "partial"
    assert "blocks" in result.error_message


def test_keys_never_reach_logs_or_the_database(sim, env, blockchair, coingecko, caplog):
    settings, db = env
    sim.add_fault(FaultRule("401", endpoint="market_chart_range", times=None))
    sim.add_fault(FaultRule("reset", endpoint="blocks", times=None))
    with caplog.at_level(logging.DEBUG):
        failed_blocks = blockchair.ingest_blocks(blockchair.coin("bitcoin"))
        failed_prices = coingecko.ingest_price_range(coingecko.coin("bitcoin"), date.today(), date.today())
    assert failed_blocks.status == failed_prices.status == "failed"
    assert BC_KEY not in caplog.text
    assert CG_KEY not in caplog.text
    with db.engine.connect() as conn:
        dump = " ".join(str(row) for row in conn.execute(text("SELECT * FROM data_ingestion_logs")))
    assert failed_blocks.error_message
    assert BC_KEY not in dump
    assert CG_KEY not in dump


def test_transaction_window_of_explicit_range_counts_in_database(sim, blockchair):
    coin = blockchair.coin("ethereum")
    blockchair.ingest_blocks(coin)
    tip = sim.tip("ethereum")
    result = blockchair.ingest_transactions(coin, start_height=tip - 20, end_height=tip)
    assert result.status == "success"
    with blockchair.db.engine.connect() as conn:
        stored = conn.scalar(select(func.count()).select_from(BlockchainTransaction))
    assert stored == sum(len(sim.expected_transactions("ethereum", h)) for h in range(tip - 20, tip + 1))


def test_a_block_run_leaves_the_chain_days_rebuilt_from_what_it_stored(blockchair):
    result = blockchair.ingest_blocks(blockchair.coin("ethereum"))
    assert result.status == "success", result.error_message
    blocks = blockchair.db.get_blocks(coin_symbol="ETH", limit=None)
    days = {b.time.date() for b in blocks}
    stats = blockchair.db.get_chain_daily_stats("ETH", min(days), max(days))
    assert {s.day for s in stats} == days
    assert sum(s.blocks for s in stats) == len(blocks) == 250
    assert sum(s.fees_native for s in stats) == sum(b.fee_total or 0 for b in blocks)
    assert blockchair.db.refresh_chain_rollups("ETH") == 0  # nothing left pending
