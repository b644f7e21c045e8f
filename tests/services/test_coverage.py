"""Coverage read from the data: price days present, missing, failed or unavailable; held heights and holes.

Rows go in through `DatabaseService.insert_*`, runs through the run log, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from pipeline.database import DatabaseService
from pipeline.ingestion.coingecko import CoinGeckoIngestor
from pipeline.ranges import earliest_servable
from pipeline.schemas import CoinMetadataData, IngestionStatus
from pipeline.services.coverage import (
    CellState,
    DayRange,
    HeightRange,
    block_coverage,
    held_height_ranges,
    holes_between,
    price_coverage,
    transaction_gaps,
)
from pipeline.simulator import FaultRule, Simulator, SimulatorConfig
from pipeline.store.runs import RunSlice
from tests.support.factories import fake_hash, store_blocks
from tests.support.settings import make_settings

# Logic above the store: on SQLite in the fast path, on both dialects in the full suite (tests/store
# runs the SQL itself on both in the fast path too).
pytestmark = pytest.mark.slow_on_postgresql

P, M, F, U = CellState.PRESENT, CellState.MISSING, CellState.FAILED, CellState.UNAVAILABLE


def today() -> date:
    return datetime.now(UTC).date()


def ago(days: int) -> date:
    return today() - timedelta(days=days)


def coin(db: DatabaseService, name: str = "bitcoin", **changes: object) -> CoinMetadataData:
    found = next(c for c in db.get_coins() if c.coingecko_id == name)
    return found.model_copy(update=changes)


def store_prices(db: DatabaseService, coin_id: str, days: list[date]) -> None:
    db.insert_market_prices(
        [
            {"coin_id": coin_id, "price_date": d, "price_usd": Decimal("100.5"), "volume_usd": Decimal(7)}
            for d in days
        ]
    )


def days_ago(first: int, last: int) -> list[date]:
    """Every day from `first` days ago to `last` days ago (first >= last)."""
    return [ago(n) for n in range(first, last - 1, -1)]


def ranges(coverage) -> list[tuple[date, date, CellState]]:
    return [(r.start, r.end, r.state) for r in coverage.ranges]


def store_transactions(db: DatabaseService, symbol: str, counts: dict[int, int]) -> None:
    """`counts[height]` transactions for each height."""
    when = datetime.now(UTC) - timedelta(hours=3)
    db.insert_transactions(
        [
            {
                "coin_symbol": symbol,
                "tx_hash": fake_hash(symbol, height, f"tx{i}"),
                "block_id": height,
                "source_id": height * 1000 + i,
                "time": when,
                "fee": 1,
            }
            for height, count in counts.items()
            for i in range(count)
        ]
    )


def record_price_run(
    db: DatabaseService, coin_id: str, start: date, end: date, status: IngestionStatus
) -> int:
    params = {"coin_id": coin_id, "start": start.isoformat(), "end": end.isoformat()}
    run_id = db.start_run(
        RunSlice("coingecko", "prices", coin_id, params, start_date=start, end_date=end),
        trigger="manual",
        parent_run_id=None,
    )
    db.finish_run(run_id, status=status)
    return run_id


# ---------------------------------------------------------------------- prices


def test_missing_price_days_are_found_and_compressed_into_ranges(db, settings):
    store_prices(db, "bitcoin", [d for d in days_ago(29, 0) if d not in {*days_ago(20, 18), ago(5)}])
    coverage = price_coverage(db, settings, coin(db), ago(29), ago(0))
    assert ranges(coverage) == [
        (ago(29), ago(21), P),
        (ago(20), ago(18), M),
        (ago(17), ago(6), P),
        (ago(5), ago(5), M),
        (ago(4), ago(0), P),
    ]
    assert coverage.days_in(M) == [*days_ago(20, 18), ago(5)]
    assert [(g.start, g.end, g.days) for g in coverage.gaps] == [(ago(20), ago(18), 3), (ago(5), ago(5), 1)]
    assert len(coverage.days_in(P)) == 26


def test_prices_of_other_coins_do_not_count(db, settings):
    store_prices(db, "ethereum", days_ago(9, 0))
    coverage = price_coverage(db, settings, coin(db), ago(9), ago(0))
    assert ranges(coverage) == [(ago(9), ago(0), M)]


def test_complete_range_has_no_gaps(db, settings):
    store_prices(db, "bitcoin", days_ago(9, 0))
    coverage = price_coverage(db, settings, coin(db), ago(9), ago(0))
    assert ranges(coverage) == [(ago(9), ago(0), P)]
    assert coverage.gaps == []


def test_days_beyond_the_public_plans_history_and_in_the_future_are_unavailable(db, settings):
    assert settings.coingecko_history_days == 365
    end = today() + timedelta(days=3)
    coverage = price_coverage(db, settings, coin(db), ago(370), end)
    assert ranges(coverage) == [
        (ago(370), ago(365), U),
        (ago(364), ago(0), M),
        (today() + timedelta(days=1), end, U),
    ]
    assert [(g.start, g.end) for g in coverage.gaps] == [(ago(364), ago(0))]


def test_days_before_the_coins_listing_are_unavailable(db, settings):
    listed = coin(db, listed_since=ago(10))
    coverage = price_coverage(db, settings, listed, ago(20), ago(0))
    assert ranges(coverage) == [(ago(20), ago(11), U), (ago(10), ago(0), M)]


def test_unlimited_plan_reaches_back_to_the_listing_date(database_url):
    settings = make_settings(database_url, COINGECKO_API_PLAN="pro", COINGECKO_API_KEY="k")
    db = DatabaseService(settings=settings)
    db.create_tables()
    try:
        btc = coin(db)
        assert btc.listed_since == date(2013, 4, 28)
        coverage = price_coverage(db, settings, btc, date(2013, 4, 20), date(2013, 5, 5))
        assert ranges(coverage) == [
            (date(2013, 4, 20), date(2013, 4, 27), U),
            (date(2013, 4, 28), date(2013, 5, 5), M),
        ]
    finally:
        db.dispose()


def test_a_stored_day_is_present_even_where_the_plan_could_no_longer_serve_it(db, settings):
    store_prices(db, "bitcoin", [ago(400)])
    coverage = price_coverage(db, settings, coin(db), ago(401), ago(399))
    assert ranges(coverage) == [(ago(401), ago(401), U), (ago(400), ago(400), P), (ago(399), ago(399), U)]


def test_missing_day_whose_last_covering_run_failed_is_failed(db, settings):
    store_prices(db, "bitcoin", [d for d in days_ago(20, 0) if d not in days_ago(12, 8)])
    record_price_run(db, "bitcoin", ago(14), ago(6), IngestionStatus.FAILED)  # covers present days too
    coverage = price_coverage(db, settings, coin(db), ago(20), ago(0))
    assert ranges(coverage) == [(ago(20), ago(13), P), (ago(12), ago(8), F), (ago(7), ago(0), P)]
    assert [(g.start, g.end, g.state) for g in coverage.gaps] == [(ago(12), ago(8), F)]


def test_a_later_run_decides_whether_a_missing_day_is_failed(db, settings):
    store_prices(db, "bitcoin", [d for d in days_ago(20, 0) if d not in days_ago(12, 8)])
    record_price_run(db, "bitcoin", ago(12), ago(8), IngestionStatus.FAILED)
    record_price_run(db, "bitcoin", ago(10), ago(8), IngestionStatus.PARTIAL)  # ran, still missing
    coverage = price_coverage(db, settings, coin(db), ago(20), ago(0))
    assert ranges(coverage) == [
        (ago(20), ago(13), P),
        (ago(12), ago(11), F),
        (ago(10), ago(8), M),
        (ago(7), ago(0), P),
    ]
    record_price_run(db, "bitcoin", ago(30), ago(0), IngestionStatus.FAILED)
    again = price_coverage(db, settings, coin(db), ago(20), ago(0))
    assert ranges(again)[1] == (ago(12), ago(8), F)


def test_failed_runs_of_other_coins_and_sources_do_not_mark_days_failed(db, settings):
    record_price_run(db, "ethereum", ago(5), ago(0), IngestionStatus.FAILED)
    run_id = db.start_run(
        RunSlice("blockchair", "blocks", "bitcoin", {"chain": "bitcoin"}, start_date=ago(5), end_date=ago(0)),
        trigger="manual",
        parent_run_id=None,
    )
    db.finish_run(run_id, status=IngestionStatus.FAILED)
    coverage = price_coverage(db, settings, coin(db), ago(5), ago(0))
    assert ranges(coverage) == [(ago(5), ago(0), M)]


def test_days_of_a_failed_coingecko_run_against_the_simulator_are_failed(database_url):
    with Simulator(SimulatorConfig(tip_growth=False)) as sim:
        settings = make_settings(database_url, COINGECKO_BASE_URL=sim.coingecko_url)
        db = DatabaseService(settings=settings)
        db.create_tables()
        try:
            sim.add_fault(FaultRule("402", endpoint="market_chart_range", times=None))
            ingestor = CoinGeckoIngestor(settings=settings, db=db)
            result = ingestor.ingest_price_range(ingestor.coin("dogecoin"), ago(9), ago(0))
            assert result.status == IngestionStatus.FAILED
            coverage = price_coverage(db, settings, coin(db, "dogecoin"), ago(12), ago(0))
            assert ranges(coverage) == [(ago(12), ago(10), M), (ago(9), ago(0), F)]
        finally:
            db.dispose()


def test_day_ranges_know_their_length():
    assert DayRange(start=date(2024, 2, 27), end=date(2024, 3, 1), state=M).days == 4  # leap day included


# ---------------------------------------------------------------------- earliest servable day


@pytest.mark.parametrize(
    ("plan", "listed", "expected_days_ago"),
    [("public", date(2013, 4, 28), 364), ("public", None, 364), ("demo", None, 364)],
)
def test_earliest_servable_day_of_the_free_plans_is_364_days_back(plan, listed, expected_days_ago):
    key = {} if plan == "public" else {"COINGECKO_API_KEY": "k"}
    settings = make_settings("sqlite:///:memory:", COINGECKO_API_PLAN=plan, **key)
    btc = CoinMetadataData(symbol="BTC", name="Bitcoin", coingecko_id="bitcoin", listed_since=listed)
    assert earliest_servable(btc, settings, today()) == ago(expected_days_ago)


def test_earliest_servable_day_is_the_listing_when_it_is_later_or_the_plan_unlimited():
    public = make_settings("sqlite:///:memory:")
    pro = make_settings("sqlite:///:memory:", COINGECKO_API_PLAN="pro", COINGECKO_API_KEY="k")
    recent = CoinMetadataData(symbol="NEW", name="New", coingecko_id="new", listed_since=ago(3))
    old = CoinMetadataData(
        symbol="BTC", name="Bitcoin", coingecko_id="bitcoin", listed_since=date(2013, 4, 28)
    )
    unlisted = CoinMetadataData(symbol="X", name="X", coingecko_id="x")
    assert earliest_servable(recent, public, today()) == ago(3)
    assert earliest_servable(old, pro, today()) == date(2013, 4, 28)
    assert earliest_servable(unlisted, pro, today()) == date.min
    limited = make_settings("sqlite:///:memory:", COINGECKO_HISTORY_DAYS=30)
    assert earliest_servable(old, limited, today()) == ago(29)


# ---------------------------------------------------------------------- blocks


def test_held_heights_and_the_holes_between_them(db):
    store_blocks(db, "BTC", [*range(100, 105), *range(108, 111), 250])
    store_blocks(db, "DOGE", range(105, 108))  # another chain's heights fill nothing
    held = held_height_ranges(db, "BTC")
    assert [(r.start, r.end) for r in held] == [(100, 104), (108, 110), (250, 250)]
    holes = holes_between(held)
    assert [(h.start, h.end, h.size) for h in holes] == [(105, 107, 3), (111, 249, 139)]


def test_no_blocks_no_ranges_and_one_island_no_holes(db):
    assert held_height_ranges(db, "BTC") == []
    assert holes_between([]) == []
    store_blocks(db, "ETH", range(21_000_000, 21_000_050))
    held = held_height_ranges(db, "ETH")
    assert held == [HeightRange(start=21_000_000, end=21_000_049)]
    assert holes_between(held) == []


def test_block_coverage_reports_holes_and_incomplete_transactions_in_the_window(database_url):
    settings = make_settings(database_url, TRANSACTIONS_WINDOW_BLOCKS=10)
    db = DatabaseService(settings=settings)
    db.create_tables()
    try:
        store_blocks(db, "BTC", [*range(1000, 1050), *range(1060, 1100)], tx_count=4)
        stored = {1092: 3, 1093: 0, 1094: 1, 1097: 0, 1010: 0}  # short blocks, in and below the window
        heights = [*range(1000, 1050), *range(1060, 1100)]
        store_transactions(db, "BTC", {h: stored.get(h, 4) for h in heights})
        coverage = block_coverage(db, settings, coin(db))
        assert coverage.coin_symbol == "BTC"
        assert coverage.chain == "bitcoin"
        assert [(r.start, r.end) for r in coverage.held] == [(1000, 1049), (1060, 1099)]
        assert [(r.start, r.end) for r in coverage.holes] == [(1050, 1059)]
        assert [(r.start, r.end) for r in coverage.incomplete_transactions] == [(1092, 1094), (1097, 1097)]
        assert coverage.missing_transactions == 1 + 4 + 3 + 4  # 1010 lies below the window
    finally:
        db.dispose()


def test_transaction_gaps_count_blocks_with_no_stored_transactions(db):
    store_blocks(db, "DOGE", range(10, 15), tx_count=2)
    store_transactions(db, "DOGE", {10: 2, 12: 2})
    store_blocks(db, "DOGE", [15], tx_count=0)
    gaps = transaction_gaps(db, "DOGE", 10, 15)
    assert [(g.start, g.end) for g in gaps] == [(11, 11), (13, 14)]
    assert sum(g.missing for g in gaps) == 6
    assert [g.total for g in gaps] == [2, 4]


def test_block_coverage_with_no_transaction_window_reports_no_transaction_gaps(database_url):
    settings = make_settings(database_url, TRANSACTIONS_WINDOW_BLOCKS=0)
    db = DatabaseService(settings=settings)
    db.create_tables()
    try:
        store_blocks(db, "BTC", [1, 2, 5], tx_count=3)
        coverage = block_coverage(db, settings, coin(db))
        assert [(h.start, h.end) for h in coverage.holes] == [(3, 4)]
        assert (coverage.incomplete_transactions, coverage.missing_transactions) == ([], 0)
    finally:
        db.dispose()
