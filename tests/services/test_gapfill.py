"""Gap filling: the fewest requests that close every gap, their cost, the queue, and the fill itself.

`fill-gaps --dry-run` is checked against hand-counted minimal plans; the real fill runs against the
in-process simulator, served by `Scheduler.serve_reruns`, and is compared with the simulator's truth.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import delete

import pipeline.runtime.cli as cli_module
from benchmarks.harness.processes import ROOT, process_env
from pipeline.config import get_settings
from pipeline.database import DatabaseService
from pipeline.ingestion.blockchair import BlockchairIngestor
from pipeline.ingestion.coingecko import CoinGeckoIngestor
from pipeline.models import BlockchainBlock, BlockchainTransaction, MarketPrice
from pipeline.ranges import day_windows
from pipeline.runtime.scheduler import Scheduler
from pipeline.schemas import IngestionStatus
from pipeline.services.coverage import block_coverage, price_coverage
from pipeline.services.gapfill import coverage_window, plan_fill, queue_plan
from pipeline.simulator import FaultRule, Simulator, SimulatorConfig
from tests.support.databases import simulated_database
from tests.support.factories import fake_hash, store_blocks
from tests.support.settings import make_settings

# Logic above the store: on SQLite in the fast path, on both dialects in the full suite (tests/store
# runs the SQL itself on both in the fast path too).
pytestmark = pytest.mark.slow_on_postgresql


def today() -> date:
    return datetime.now(UTC).date()


def ago(days: int) -> date:
    return today() - timedelta(days=days)


def store_prices(db: DatabaseService, coin_id: str, days: list[date]) -> None:
    db.insert_market_prices(
        [{"coin_id": coin_id, "price_date": d, "price_usd": Decimal("10.25")} for d in days]
    )


def every_day_but(first: int, holes: list[int]) -> list[date]:
    """Days from `first` days ago to today, except the given days-ago."""
    return [ago(n) for n in range(first, -1, -1) if n not in set(holes)]


def store_transactions(db: DatabaseService, symbol: str, counts: dict[int, int]) -> None:
    when = datetime.now(UTC) - timedelta(hours=3)
    db.insert_transactions(
        [
            {
                "coin_symbol": symbol,
                "tx_hash": fake_hash(symbol, height * 10_000 + i),
                "block_id": height,
                "source_id": height * 10_000 + i,
                "time": when,
            }
            for height, count in counts.items()
            for i in range(count)
        ]
    )


def coins(db: DatabaseService, *names: str) -> list:
    return [c for name in names for c in db.get_coins() if c.coingecko_id == name]


def summary(plan) -> list[tuple[str, str, dict, int]]:
    return [(s.data_type, s.subject, s.params, s.requests) for s in plan.slices]


def prices_slice(coin_id: str, first: date, last: date) -> tuple[str, str, dict, int]:
    return ("prices", coin_id, {"coin_id": coin_id, "start": first.isoformat(), "end": last.isoformat()}, 1)


def heights_slice(
    data_type: str, chain: str, low: int, high: int, requests: int
) -> tuple[str, str, dict, int]:
    return (data_type, chain, {"chain": chain, "start_height": low, "end_height": high}, requests)


@pytest.fixture
def cli(monkeypatch, capsys, tmp_path):
    """Run `crypto-pipeline ...` in this process with the given environment; returns (exit code, stdout)."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setattr(cli_module, "configure_logging", lambda *_args, **_kwargs: None)

    def run(env: dict[str, object], *args: str) -> tuple[int, str]:
        for key in list(os.environ):
            if key.startswith(("DATABASE_URL", "BLOCKCHAIR_", "COINGECKO_", "COVERAGE_", "TRANSACTIONS_")):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        get_settings.cache_clear()
        capsys.readouterr()
        code = cli_module.main(list(args))
        return code, capsys.readouterr().out

    yield run
    get_settings.cache_clear()


# ---------------------------------------------------------------------- windows


@pytest.mark.parametrize(
    ("offsets", "expected"),
    [
        ([], []),
        ([0], [(0, 0)]),
        ([0, 1, 2, 10, 11], [(0, 11)]),  # two holes within a year: one request
        ([0, 364], [(0, 364)]),  # exactly 365 days
        ([0, 365], [(0, 0), (365, 365)]),  # 366 days cannot be one request
        ([*range(0, 800)], [(0, 364), (365, 729), (730, 799)]),
        ([0, 300, 600, 900], [(0, 300), (600, 900)]),
    ],
)
def test_day_windows_cover_the_days_with_the_fewest_windows_of_365_days(offsets, expected):
    base = date(2024, 1, 1)
    windows = day_windows([base + timedelta(days=o) for o in offsets])
    assert [((a - base).days, (b - base).days) for a, b in windows] == expected


def test_coverage_window_is_the_last_coverage_days():
    settings = make_settings("sqlite:///:memory:", COVERAGE_DAYS=30)
    assert coverage_window(settings, date(2024, 3, 31)) == (date(2024, 3, 2), date(2024, 3, 31))
    assert coverage_window(settings) == (ago(29), today())


# ---------------------------------------------------------------------- planning


PLAN_ENV = {
    "COINGECKO_HISTORY_DAYS": 2000,
    "COVERAGE_DAYS": 800,
    "COINGECKO_DAILY_REQUEST_BUDGET": 300,
    "COINGECKO_RATE_LIMIT_PER_MINUTE": 30,
    "BLOCKCHAIR_DAILY_REQUEST_BUDGET": 1000,
    "BLOCKCHAIR_RATE_LIMIT_PER_MINUTE": 70,
}


@pytest.fixture
def holey(database_url):
    """Prices with holes over 800 days, block holes of 250, 100, 1 and 101 heights."""
    settings = make_settings(database_url, **PLAN_ENV)
    db = DatabaseService(settings=settings)
    db.create_tables()
    store_prices(db, "bitcoin", every_day_but(799, [*range(690, 701), 400, 98, 99, 100]))
    store_prices(db, "ethereum", every_day_but(799, [*range(290, 301), 20]))
    store_blocks(db, "BTC", [*range(1000, 1100), *range(1350, 1401), *range(1501, 1511), 1512])
    store_blocks(db, "ETH", [*range(21_000_000, 21_000_100), 21_000_201])
    yield settings, db
    db.dispose()


def expected_plan() -> list[tuple[str, str, dict, int]]:
    """The plan for `holey`, in days before today as of the call (not of the import: a suite may run
    past midnight UTC)."""
    return [
        prices_slice("bitcoin", ago(700), ago(400)),  # 11 + 1 missing days 300 days apart: one window
        prices_slice("bitcoin", ago(100), ago(98)),  # 600 days after the first hole: a second window
        heights_slice("blocks", "bitcoin", 1100, 1349, 3),
        heights_slice("blocks", "bitcoin", 1401, 1500, 1),
        heights_slice("blocks", "bitcoin", 1511, 1511, 1),
        prices_slice("ethereum", ago(300), ago(20)),
        heights_slice("blocks", "ethereum", 21_000_100, 21_000_200, 2),
    ]


def test_plan_is_one_price_request_per_window_and_ceil_hole_over_100_block_requests(holey):
    settings, db = holey
    plan = plan_fill(db, settings, coins(db, "bitcoin", "ethereum"))
    assert summary(plan) == expected_plan()
    assert plan.requests == 10
    assert plan.requests_by_source == {"coingecko": 3, "blockchair": 7}
    assert plan.minutes_by_source == {"coingecko": 0.1, "blockchair": 0.1}
    assert plan.daily_share_by_source == {"coingecko": 0.01, "blockchair": 0.007}


def test_planned_price_windows_cover_every_gap_day_and_no_window_exceeds_365_days(holey):
    settings, db = holey
    plan = plan_fill(db, settings, coins(db, "bitcoin", "ethereum"))
    start, end = coverage_window(settings)
    for coin in coins(db, "bitcoin", "ethereum"):
        gaps = price_coverage(db, settings, coin, start, end).gaps
        gap_days = {g.start + timedelta(days=i) for g in gaps for i in range(g.days)}
        windows = [
            (date.fromisoformat(s.params["start"]), date.fromisoformat(s.params["end"]))
            for s in plan.slices
            if s.data_type == "prices" and s.subject == coin.coingecko_id
        ]
        assert all((b - a).days < 365 for a, b in windows)
        assert gap_days == {d for d in gap_days if any(a <= d <= b for a, b in windows)}
        # Minimal: gap days more than 364 days apart can never share a request.
        assert len(windows) == len(day_windows(sorted(gap_days)))


def test_dry_run_prints_the_requests_and_budget_share_and_queues_nothing(holey, cli, database_url):
    _settings, db = holey
    code, out = cli(
        {"DATABASE_URL": database_url, **PLAN_ENV}, "fill-gaps", "--coins", "bitcoin,ethereum", "--dry-run"
    )
    assert code == 0
    lines = out.splitlines()
    assert f"  prices bitcoin {ago(700)}..{ago(400)} (301 days): 1 request(s)" in lines
    assert f"  prices ethereum {ago(300)}..{ago(20)} (281 days): 1 request(s)" in lines
    assert "  blocks bitcoin 1100..1349 (250 heights): 3 request(s)" in lines
    assert "  blocks ethereum 21000100..21000200 (101 heights): 2 request(s)" in lines
    assert len([line for line in lines if line.endswith("request(s)")]) == len(expected_plan())
    assert "coingecko: 3 requests, ~0.1 min at the rate limit, 1.0% of the daily budget" in lines
    assert "blockchair: 7 requests, ~0.1 min at the rate limit, 0.7% of the daily budget" in lines
    assert lines[-1] == "dry run: nothing queued"
    assert db.get_replay_requests() == []


def test_transaction_gaps_are_planned_per_range_of_incomplete_blocks(database_url):
    settings = make_settings(database_url, TRANSACTIONS_WINDOW_BLOCKS=10)
    db = DatabaseService(settings=settings)
    db.create_tables()
    try:
        store_blocks(db, "DOGE", range(500, 510), tx_count=5)
        store_transactions(db, "DOGE", {h: 5 for h in range(500, 510) if h not in (503, 507, 508)} | {507: 2})
        plan = plan_fill(db, settings, coins(db, "dogecoin"))
        assert [s for s in summary(plan) if s[0] != "prices"] == [
            heights_slice("transactions", "dogecoin", 503, 503, 1),
            heights_slice("transactions", "dogecoin", 507, 508, 1),
        ]
    finally:
        db.dispose()


def test_each_transaction_range_is_priced_by_its_own_blocks(database_url):
    # An incomplete block is re-read whole (a transaction may be missing from its middle), so a range
    # costs ceil(its blocks' transactions / 100) requests, counted per range, not per chain.
    settings = make_settings(database_url, TRANSACTIONS_WINDOW_BLOCKS=10)
    db = DatabaseService(settings=settings)
    db.create_tables()
    try:
        store_blocks(db, "ETH", range(700, 710), tx_count=125)
        complete = {h: 125 for h in range(700, 710) if h not in (702, 703, 708)}
        store_transactions(db, "ETH", complete | {708: 115})  # 250 missing in 702..703, 10 in 708
        plan = plan_fill(db, settings, coins(db, "ethereum"))
        assert [
            (s.params["start_height"], s.requests) for s in plan.slices if s.data_type == "transactions"
        ] == [
            (702, 3),  # 2 x 125 transactions
            (708, 2),  # 125 transactions, 10 of them missing
        ]
    finally:
        db.dispose()


def test_nothing_missing_plans_nothing(database_url, cli):
    settings = make_settings(database_url, COVERAGE_DAYS=5)
    db = DatabaseService(settings=settings)
    db.create_tables()
    try:
        for coin_id in ("bitcoin", "ethereum", "dogecoin"):
            store_prices(db, coin_id, every_day_but(4, []))
        store_blocks(db, "BTC", range(10, 20))
        plan = plan_fill(db, settings, db.get_coins(active_only=True))
        assert (plan.slices, plan.requests, plan.requests_by_source) == (
            [],
            0,
            {"coingecko": 0, "blockchair": 0},
        )
        code, out = cli({"DATABASE_URL": database_url, "COVERAGE_DAYS": 5}, "fill-gaps")
        assert code == 0
        assert out.splitlines()[-1] == "nothing to fill"
        code, out = cli({"DATABASE_URL": database_url, "COVERAGE_DAYS": 5}, "gaps")
        assert (code, out.split()[:2]) == (0, ["no", "gaps"])
    finally:
        db.dispose()


# ---------------------------------------------------------------------- the queue


def test_queuing_the_same_plan_twice_queues_each_slice_once(holey):
    settings, db = holey
    plan = plan_fill(db, settings, coins(db, "bitcoin", "ethereum"))
    first = queue_plan(db, plan, "test")
    second = queue_plan(db, plan_fill(db, settings, coins(db, "bitcoin", "ethereum")), "test again")
    assert [r.id for r in second] == [r.id for r in first]
    pending = db.get_replay_requests(status="pending")
    assert len(pending) == len(plan.slices) == 7
    assert {r.kind for r in pending} == {"backfill"}
    assert {r.requested_by for r in pending} == {"test"}
    assert sorted((r.slice_params["data_type"], str(r.slice_params["params"])) for r in pending) == sorted(
        (s.data_type, str(s.params)) for s in plan.slices
    )
    assert all(r.run_id is None for r in pending)


def test_fill_gaps_command_queues_once_however_often_it_runs(holey, cli, database_url):
    _settings, db = holey
    env = {"DATABASE_URL": database_url, **PLAN_ENV}
    for _ in range(2):
        code, out = cli(env, "fill-gaps", "--coins", "bitcoin,ethereum")
        assert code == 0
        assert out.splitlines()[-1].startswith("queued 7 backfill requests")
    assert len(db.get_replay_requests(status="pending")) == 7


# ---------------------------------------------------------------------- the fill, against the simulator


@pytest.fixture
def sim():
    with Simulator(SimulatorConfig(tip_growth=False)) as simulator:
        yield simulator


FILL_ENV = {"COVERAGE_DAYS": 60, "TRANSACTIONS_WINDOW_BLOCKS": 6}


@pytest.fixture
def env(sim, database_url):
    with simulated_database(database_url, sim, BLOCKS_INITIAL_DEPTH=250, **FILL_ENV) as settings_and_db:
        yield settings_and_db


def ingest_bitcoin(settings, db) -> None:
    blockchair = BlockchairIngestor(settings=settings, db=db)
    coingecko = CoinGeckoIngestor(settings=settings, db=db)
    results = [
        blockchair.ingest_blocks(blockchair.coin("bitcoin")),
        blockchair.ingest_transactions(blockchair.coin("bitcoin")),
        coingecko.ingest_price_range(coingecko.coin("bitcoin"), ago(59), today()),
    ]
    assert [r.status for r in results] == [IngestionStatus.SUCCESS] * 3, [r.error_message for r in results]


def gap_lines(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()]


@pytest.mark.slow  # end to end, ending with a CLI process
def test_fill_gaps_closes_every_hole_with_the_sources_truth(sim, env, cli, database_url):
    settings, db = env
    ingest_bitcoin(settings, db)
    tip = sim.tip("bitcoin")
    missing_days = [ago(40), ago(39), ago(38), ago(10)]
    missing_heights = [*range(tip - 200, tip - 149), tip - 20]
    with db.transaction() as conn:
        conn.execute(delete(MarketPrice).where(MarketPrice.price_date.in_(missing_days)))
        conn.execute(delete(BlockchainBlock).where(BlockchainBlock.block_id.in_(missing_heights)))
        conn.execute(delete(BlockchainTransaction).where(BlockchainTransaction.block_id == tip - 3))
    cli_env = {"DATABASE_URL": database_url, **FILL_ENV}

    code, out = cli(cli_env, "gaps", "--coins", "bitcoin")
    assert code == 1
    assert gap_lines(out) == [
        ["prices", "bitcoin", f"{ago(40)}..{ago(38)}", "missing", "(3", "days)"],
        ["prices", "bitcoin", f"{ago(10)}..{ago(10)}", "missing", "(1", "days)"],
        ["blocks", "bitcoin", f"{tip - 200}..{tip - 150}", "missing", "(51", "heights)"],
        ["blocks", "bitcoin", f"{tip - 20}..{tip - 20}", "missing", "(1", "heights)"],
        ["txs", "bitcoin", f"{tip - 3}..{tip - 3}", "incomplete"],
    ]

    plan = plan_fill(db, settings, coins(db, "bitcoin"))
    assert plan.requests_by_source == {"coingecko": 1, "blockchair": 3}
    for _ in range(2):
        code, out = cli(cli_env, "fill-gaps", "--coins", "bitcoin")
        assert code == 0
    assert len(db.get_replay_requests(status="pending")) == 4

    sim.reset_counts()
    assert Scheduler(settings, db).serve_reruns(kinds=("backfill",), limit=100) == 4
    requests = db.get_replay_requests()
    assert [r.status for r in requests] == ["done"] * 4
    assert {db.get_run(r.result_run_id).status for r in requests} == {IngestionStatus.SUCCESS}
    served = sim.request_counts()
    assert served.get("market_chart_range", 0) == plan.requests_by_source["coingecko"]
    assert served.get("blocks", 0) + served.get("transactions", 0) == plan.requests_by_source["blockchair"]

    finished = subprocess.run(
        [sys.executable, "-m", "pipeline.runtime.cli", "gaps", "--coins", "bitcoin"],
        env=process_env(DATABASE_URL=database_url, **FILL_ENV),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert finished.stdout.startswith("no gaps")

    for height in missing_heights:
        stored = db.blocks_between("BTC", height, height)[0]
        truth = sim.expected_block("bitcoin", height)
        assert (stored.hash, stored.transaction_count, stored.fee_total, stored.time) == (
            truth["hash"],
            truth["transaction_count"],
            int(truth["fee_total"]),
            sim.block_time("bitcoin", height),
        )
    refetched = {t.tx_hash for t in db.get_transactions(coin_symbol="BTC", block_id=tip - 3, limit=None)}
    assert refetched == {t["hash"] for t in sim.expected_transactions("bitcoin", tip - 3)}
    prices = {p.price_date: p for p in db.get_market_prices(coin_id="bitcoin", limit=None)}
    for day, price, cap, volume in sim.expected_daily_prices("bitcoin", ago(40), ago(10)):
        if day in missing_days:
            assert float(prices[day].price_usd) == pytest.approx(price)
            assert float(prices[day].volume_usd) == pytest.approx(volume)
            assert (prices[day].market_cap_usd is None) == (cap is None)


def test_a_fill_of_nothing_left_to_do_queues_nothing(sim, env, cli, database_url):
    settings, db = env
    ingest_bitcoin(settings, db)
    code, out = cli({"DATABASE_URL": database_url, **FILL_ENV}, "fill-gaps", "--coins", "bitcoin")
    assert (code, out.splitlines()[-1]) == (0, "nothing to fill")
    assert db.get_replay_requests() == []


def test_fill_gaps_refetches_a_transaction_rejected_in_the_middle_of_a_block(sim, env):
    settings, db = env
    blockchair = BlockchairIngestor(settings=settings, db=db)
    coin = blockchair.coin("bitcoin")
    assert blockchair.ingest_blocks(coin).status == IngestionStatus.SUCCESS
    sim.add_fault(FaultRule("missing_field", endpoint="transactions", times=1))  # first row loses its hash
    damaged = blockchair.ingest_transactions(coin)
    assert (damaged.status, damaged.records_rejected) == (IngestionStatus.PARTIAL, 1)
    hole = block_coverage(db, settings, coin).incomplete_transactions
    assert len(hole) == 1

    queue_plan(db, plan_fill(db, settings, [coin]), "test")
    Scheduler(settings, db).serve_reruns(kinds=("backfill",), limit=100)
    assert block_coverage(db, settings, coin).incomplete_transactions == []
