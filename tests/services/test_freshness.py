"""Freshness against the source: block lag behind the tip the source reported, price age; ok/warn/fail.

The levels are checked at their thresholds with hand-made coins, then end to end: the simulator's tip moves
ahead of the stored blocks, each Blockchair block reply records the tip it saw (`context.state`), and
`status --json` exits 1 once a measure is at fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta

import pytest

import pipeline.runtime.cli as cli_module
from benchmarks.harness.processes import ROOT, process_env
from pipeline.config import get_settings
from pipeline.database import DatabaseService
from pipeline.ingestion.blockchair import BlockchairIngestor
from pipeline.ingestion.coingecko import CoinGeckoIngestor
from pipeline.schemas import CoinMetadataData, IngestionStatus
from pipeline.services.freshness import Level, block_freshness, freshness_report, price_freshness
from pipeline.simulator import FaultRule, Simulator, SimulatorConfig
from tests.support.databases import simulated_database
from tests.support.settings import make_settings

# Logic above the store: on SQLite in the fast path, on both dialects in the full suite (tests/store
# runs the SQL itself on both in the fast path too).
pytestmark = pytest.mark.slow_on_postgresql

THRESHOLDS = {
    "BLOCK_LAG_WARN_BLOCKS": 10,
    "BLOCK_LAG_FAIL_BLOCKS": 50,
    "PRICE_AGE_WARN_HOURS": 72,
    "PRICE_AGE_FAIL_HOURS": 240,
}


def today() -> date:
    return datetime.now(UTC).date()


def ago(days: int) -> date:
    return today() - timedelta(days=days)


def btc(**marks: object) -> CoinMetadataData:
    return CoinMetadataData(
        symbol="BTC", name="Bitcoin", coingecko_id="bitcoin", blockchair_chain="bitcoin", **marks
    )


def pure_settings(**overrides: object):
    return make_settings("sqlite:///:memory:", **{**THRESHOLDS, **overrides})


def levels(report) -> dict[tuple[str, str], Level]:
    return {(f.coin, f.data_type): f.level for f in report}


# ---------------------------------------------------------------------- levels at the thresholds


@pytest.mark.parametrize(
    ("tip", "lag", "level"),
    [
        (1000, 0, Level.OK),
        (1009, 9, Level.OK),
        (1010, 10, Level.WARN),
        (1049, 49, Level.WARN),
        (1050, 50, Level.FAIL),
        (5000, 4000, Level.FAIL),
        (990, 0, Level.OK),  # a tip behind the stored blocks (another node) is no lag
    ],
)
def test_block_lag_level_follows_the_thresholds(tip, lag, level):
    measure = block_freshness(btc(block_bookmark=1000, chain_tip_height=tip), pure_settings())
    assert (measure.value, measure.level, measure.unit) == (lag, level, "blocks")
    assert (measure.source, measure.data_type, measure.coin) == ("blockchair", "blocks", "bitcoin")
    assert measure.detail == f"newest 1000, tip {tip}"


def test_block_lag_is_unknown_before_any_block_or_tip():
    for coin in (btc(), btc(block_bookmark=5), btc(chain_tip_height=5)):
        measure = block_freshness(coin, pure_settings())
        assert (measure.value, measure.level) == (None, Level.UNKNOWN)
    assert block_freshness(btc(), pure_settings()).detail == "no blocks ingested yet"


def test_block_lag_thresholds_come_from_settings():
    coin = btc(block_bookmark=1000, chain_tip_height=1040)
    assert block_freshness(coin, make_settings("sqlite:///:memory:")).level == Level.WARN  # 30 / 300
    assert block_freshness(coin, pure_settings(BLOCK_LAG_FAIL_BLOCKS=40)).level == Level.FAIL


@pytest.mark.parametrize(
    ("hours", "level"),
    [(0, Level.OK), (71.9, Level.OK), (72, Level.WARN), (239.9, Level.WARN), (240, Level.FAIL)],
)
def test_price_age_level_follows_the_thresholds(hours, level):
    newest = date(2024, 5, 1)
    now = datetime.combine(newest, time(0), UTC) + timedelta(hours=hours)
    measure = price_freshness(btc(price_bookmark=newest), pure_settings(), now)
    assert (measure.value, measure.level, measure.unit) == (hours, level, "hours")
    assert (measure.source, measure.data_type, measure.coin) == ("coingecko", "prices", "bitcoin")
    assert measure.detail == "newest day 2024-05-01"


def test_price_age_is_unknown_before_any_price():
    measure = price_freshness(btc(), pure_settings())
    assert (measure.value, measure.level, measure.detail) == (None, Level.UNKNOWN, "no prices ingested yet")


def test_report_has_the_measures_each_coin_has_sources_for():
    price_only = CoinMetadataData(symbol="XMR", name="Monero", coingecko_id="monero")
    chain_only = CoinMetadataData(symbol="DASH", name="Dash", blockchair_chain="dash")
    report = freshness_report([btc(), price_only, chain_only], pure_settings())
    assert [(f.coin, f.data_type) for f in report] == [
        ("bitcoin", "blocks"),
        ("bitcoin", "prices"),
        ("monero", "prices"),
        ("dash", "blocks"),
    ]


# ---------------------------------------------------------------------- end to end


@pytest.fixture
def sim():
    # Block times start four days back, so that a tip advanced by a few hundred blocks is not in the future.
    with Simulator(SimulatorConfig(tip_growth=False, history_anchor_hours=96)) as simulator:
        yield simulator


@pytest.fixture
def env(sim, database_url):
    with simulated_database(database_url, sim, BLOCKS_INITIAL_DEPTH=30, **THRESHOLDS) as settings_and_db:
        yield settings_and_db


@pytest.fixture
def status(monkeypatch, capsys, tmp_path, database_url):
    """`crypto-pipeline status --json` in this process; returns (exit code, parsed report)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli_module, "configure_logging", lambda *_args, **_kwargs: None)
    for key in list(os.environ):
        if key.startswith(("DATABASE_URL", "BLOCKCHAIR_", "COINGECKO_", "BLOCK_LAG_", "PRICE_AGE_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("DATABASE_URL", database_url)
    for key, value in THRESHOLDS.items():
        monkeypatch.setenv(key, str(value))

    def run() -> tuple[int, dict]:
        get_settings.cache_clear()
        capsys.readouterr()
        code = cli_module.main(["status", "--json"])
        return code, json.loads(capsys.readouterr().out)

    yield run
    get_settings.cache_clear()


def measure(report: dict, coin: str, data_type: str) -> dict:
    return next(f for f in report["freshness"] if f["coin"] == coin and f["data_type"] == data_type)


def bitcoin_blocks(db: DatabaseService, settings):
    coin = next(c for c in db.get_coins() if c.symbol == "BTC")
    return block_freshness(coin, settings)


@pytest.mark.slow  # end to end, ending with a CLI process
def test_block_freshness_turns_amber_then_red_as_the_tip_moves_ahead(sim, env, status):
    settings, db = env
    blockchair = BlockchairIngestor(settings=settings, db=db)
    first = blockchair.ingest_blocks(blockchair.coin("bitcoin"))
    assert first.status == IngestionStatus.SUCCESS
    tip = sim.tip("bitcoin")
    assert (bitcoin_blocks(db, settings).value, bitcoin_blocks(db, settings).level) == (0, Level.OK)
    code, report = status()
    assert (code, report["ok"]) == (0, True)
    assert measure(report, "bitcoin", "blocks")["level"] == "ok"

    # The source moves on; a small slice re-read near our newest block brings back the tip it now reports.
    sim.advance_tip("bitcoin", 20)
    assert blockchair.ingest_blocks(blockchair.coin("bitcoin"), start_height=tip, end_height=tip).status == (
        IngestionStatus.SUCCESS
    )
    amber = bitcoin_blocks(db, settings)
    assert (amber.value, amber.level, amber.detail) == (20, Level.WARN, f"newest {tip}, tip {tip + 20}")
    code, report = status()
    assert (code, report["ok"]) == (0, True)  # warn is not fail
    assert measure(report, "bitcoin", "blocks")["level"] == "warn"

    # Much further ahead, and the regular run dies after its first page: stored data stays behind.
    sim.advance_tip("bitcoin", 200)
    sim.add_fault(FaultRule("malformed_json", endpoint="blocks", after=1, times=None))
    broken = blockchair.ingest_blocks(blockchair.coin("bitcoin"))
    assert broken.status == IngestionStatus.FAILED
    newest = db.max_block_height("BTC")
    assert newest == tip + 94  # the first page: from REORG_DEPTH below the newest block, 100 blocks
    red = bitcoin_blocks(db, settings)
    assert (red.value, red.level) == (tip + 220 - newest, Level.FAIL)
    report_levels = levels(freshness_report(db.get_coins(active_only=True), settings))
    assert report_levels[("bitcoin", "blocks")] == Level.FAIL
    assert report_levels[("ethereum", "blocks")] == Level.UNKNOWN
    code, report = status()
    assert (code, report["ok"]) == (1, False)
    assert measure(report, "bitcoin", "blocks") | {"detail": None} == {
        "source": "blockchair",
        "data_type": "blocks",
        "coin": "bitcoin",
        "value": tip + 220 - newest,
        "unit": "blocks",
        "level": "fail",
        "detail": None,
    }
    assert {(f["coin"], f["data_type"]) for f in report["freshness"]} == {
        (c, t) for c in ("bitcoin", "ethereum", "dogecoin") for t in ("blocks", "prices")
    }

    finished = subprocess.run(
        [sys.executable, "-m", "pipeline.runtime.cli", "status", "--json"],
        env=process_env(DATABASE_URL=settings.DATABASE_URL, **THRESHOLDS),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 1, finished.stderr
    assert measure(json.loads(finished.stdout), "bitcoin", "blocks")["level"] == "fail"

    # Once the source answers again, the next run catches up and the light is green.
    sim.clear_faults()
    assert blockchair.ingest_blocks(blockchair.coin("bitcoin")).status == IngestionStatus.SUCCESS
    assert bitcoin_blocks(db, settings).level == Level.OK
    assert status()[0] == 0


def test_price_age_turns_amber_and_red_with_old_stored_prices(env, status):
    settings, db = env
    coingecko = CoinGeckoIngestor(settings=settings, db=db)
    for coin_id, newest in (("bitcoin", today()), ("ethereum", ago(4)), ("dogecoin", ago(12))):
        result = coingecko.ingest_price_range(coingecko.coin(coin_id), newest - timedelta(days=5), newest)
        assert result.status == IngestionStatus.SUCCESS, result.error_message
    report = freshness_report(db.get_coins(active_only=True), settings)
    prices = {f.coin: f for f in report if f.data_type == "prices"}
    assert {c: f.level for c, f in prices.items()} == {
        "bitcoin": Level.OK,
        "ethereum": Level.WARN,
        "dogecoin": Level.FAIL,
    }
    assert 0 <= prices["bitcoin"].value < 24.1
    assert 96 <= prices["ethereum"].value < 120.1
    assert 288 <= prices["dogecoin"].value < 312.1
    assert prices["ethereum"].detail == f"newest day {ago(4)}"
    code, out = status()
    assert (code, out["ok"]) == (1, False)
    assert measure(out, "dogecoin", "prices")["level"] == "fail"
    assert measure(out, "ethereum", "prices")["level"] == "warn"


def test_status_json_exits_0_when_nothing_is_known_yet(env, status):
    code, report = status()
    assert (code, report["ok"]) == (0, True)
    assert {f["level"] for f in report["freshness"]} == {"unknown"}
    assert set(report) >= {"workers", "freshness", "recent_runs", "failures_last_24h", "ok"}


def test_filling_an_older_range_never_moves_the_price_mark_backwards(env):
    settings, db = env
    coingecko = CoinGeckoIngestor(settings=settings, db=db)
    coin = coingecko.coin("bitcoin")  # read once, as a long-running job holds it
    assert coingecko.ingest_price_range(coin, ago(2), today()).status == IngestionStatus.SUCCESS
    assert coingecko.ingest_price_range(coin, ago(30), ago(20)).status == IngestionStatus.SUCCESS
    fresh = coingecko.coin("bitcoin")
    assert fresh.price_bookmark == today()
    assert price_freshness(fresh, settings).level == Level.OK
