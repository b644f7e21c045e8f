"""`pipeline.store.queries` on SQLite and PostgreSQL (the root `db` fixture runs each test on both)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest

from pipeline.database import DatabaseService
from pipeline.store import queries
from pipeline.store.coordination import RequestBusy
from tests.dashboard.seed import (
    BTC_GAP,
    BTC_TIP,
    ETH_BALANCE_WEI,
    ETH_TIP,
    PRICE_DAYS,
    Seeded,
    populate,
)
from tests.support.settings import make_settings


@pytest.fixture
def seeded(db: DatabaseService) -> Seeded:
    return populate(db)


def _block(height: int, when: datetime, symbol: str = "DOGE") -> dict:
    return {
        "coin_symbol": symbol,
        "block_id": height,
        "hash": f"{height:064x}",
        "time": when,
        "transaction_count": 10,
        "size": 1000,
        "fee_total": 100_000_000,
    }


def test_prices_frame_is_filtered_ordered_and_numeric(db, seeded):
    start, end = seeded.today - timedelta(days=10), seeded.today
    frame = queries.prices_frame(db, ["ethereum", "bitcoin"], start, end)
    assert set(frame["coin_id"]) == {"bitcoin", "ethereum"}
    assert len(frame) == 20  # prices stop yesterday
    assert frame["price_usd"].dtype == "float64"
    assert frame.groupby("coin_id")["price_date"].is_monotonic_increasing.all()
    assert queries.prices_frame(db, ["nope"], start, end).empty


def test_price_coverage_counts_missing_days_in_range(db, seeded):
    start = seeded.today - timedelta(days=40)
    coverage = queries.price_coverage(db, ["bitcoin", "dogecoin"], start, seeded.today).set_index("coin_id")
    assert coverage.loc["bitcoin", "missing_days"] == BTC_GAP[0] - BTC_GAP[1] + 1
    assert coverage.loc["dogecoin", "missing_days"] == 0
    assert coverage.loc["bitcoin", "first_date"] == start
    everything = queries.date_coverage(db).set_index("coin_id")
    assert everything.loc["bitcoin", "days"] == PRICE_DAYS - 3
    assert everything.loc["ethereum", "days"] == PRICE_DAYS
    assert queries.price_bounds(db, ["bitcoin"]) == (
        seeded.today - timedelta(days=PRICE_DAYS),
        seeded.today - timedelta(days=1),
    )


def test_blocks_per_day_aggregates_in_coin_units(db, seeded):
    daily = queries.blocks_per_day(db, "BTC", seeded.today - timedelta(days=45), seeded.today)
    assert daily["blocks"].sum() == len(seeded.btc_blocks)
    assert daily["day"].dt.date.is_unique
    blocks = db.get_blocks(coin_symbol="BTC", limit=None)
    assert daily["transactions"].sum() == sum(b.transaction_count for b in blocks)
    assert daily["fees"].sum() == pytest.approx(sum(b.fee_total for b in blocks) / 1e8)
    eth = queries.blocks_per_day(db, "ETH", seeded.today - timedelta(days=2), seeded.today)
    assert eth["fees"].sum() == pytest.approx(sum(10**17 + i for i in range(60)) / 1e18)


def test_days_are_utc_whatever_the_session_time_zone(settings, seeded):
    url = settings.DATABASE_URL
    if url.startswith("postgresql"):
        url = url.replace("options=-csearch_path", "options=-ctimezone%3DAmerica/New_York%20-csearch_path")
    db = DatabaseService(settings=make_settings(url))
    day = datetime(2024, 3, 1, tzinfo=UTC)
    db.insert_blocks([_block(1, day - timedelta(seconds=1)), _block(2, day + timedelta(seconds=1))])
    daily = queries.blocks_per_day(db, "DOGE", day.date() - timedelta(days=1), day.date())
    assert [d.date().isoformat() for d in daily["day"]] == ["2024-02-29", "2024-03-01"]
    assert daily["blocks"].tolist() == [1, 1]
    db.dispose()


def test_transactions_per_day_counts_stored_rows_per_block_day(db, seeded):
    tx_daily = queries.transactions_per_day(db, "BTC", seeded.today - timedelta(days=45), seeded.today)
    assert tx_daily["stored"].sum() == 30  # 3 transactions in each of the 10 newest blocks
    blocks = queries.blocks_per_day(db, "BTC", seeded.today - timedelta(days=45), seeded.today)
    assert tx_daily["transactions"].tolist() == blocks["transactions"].tolist()


def test_latest_blocks_and_block_transactions_show_exact_coin_amounts(db, seeded):
    latest = queries.latest_blocks(db, "ETH", 5)
    assert latest["block_id"].tolist() == [ETH_TIP - i for i in range(5)]
    assert latest["fees"].iloc[1] == "0.100000000000000001"
    txs = queries.block_transactions(db, "ETH", ETH_TIP)
    assert sorted(txs["value"]) == ["1", "1.000000000000000001"]
    assert queries.block_transactions(db, "BTC", BTC_TIP)["fee"].tolist() == [
        "0.000025",
        "0.00002501",
        "0.00002502",
    ]


def test_addresses_convert_native_units_exactly(db, seeded):
    by_coin = {a.coin_symbol: a for a in queries.addresses(db)}
    assert by_coin["BTC"].balance == Decimal(50)
    assert by_coin["ETH"].balance == Decimal(ETH_BALANCE_WEI) / Decimal(10**18)
    assert queries.coin_text(ETH_BALANCE_WEI, "ethereum") == "1234.567890123456789012"
    assert [a.coin_symbol for a in queries.addresses(db, "ETH")] == ["ETH"]


def test_first_block_day_is_the_oldest_block_in_utc(db, seeded):
    oldest = min(b.time for b in db.get_blocks(coin_symbol="BTC", limit=None))
    assert queries.first_block_day(db, "BTC") == oldest.astimezone(UTC).date()
    assert queries.first_block_day(db, "DOGE") is None


def test_height_coverage_reports_holes(db, seeded):
    coverage = queries.height_coverage(db).set_index("coin_symbol")
    assert coverage.loc["BTC", "max_height"] == BTC_TIP
    assert coverage.loc["BTC", "missing_heights"] == 480 - len(seeded.btc_blocks)
    assert coverage.loc["ETH", "missing_heights"] == 0


def test_runs_table_filters(db, seeded):
    assert len(queries.runs_table(db)) == 6
    failed = queries.runs_table(db, statuses=["failed"])
    assert failed["id"].tolist() == [seeded.runs["failed"], seeded.runs["old_failed"]]
    assert queries.runs_table(db, sources=["coingecko"], coins=["bitcoin"])["id"].tolist() == [
        seeded.runs["failed"]
    ]
    one = queries.runs_table(db, data_types=["transactions"], limit=1)
    assert one["id"].tolist() == [seeded.runs["child"]]
    assert queries.runs_table(db, start=seeded.today, end=seeded.today)[
        "started_at"
    ].min().date() >= seeded.today - timedelta(days=1)
    facets = queries.run_facets(db)
    assert facets.sources == ["blockchair", "coingecko"]
    assert facets.data_types == ["blocks", "prices", "transactions"]


def test_runs_of_the_last_day_by_status_and_hour(db, seeded):
    since = datetime.now(UTC) - timedelta(hours=24)
    assert queries.runs_by_status(db, since) == {"running": 1, "success": 1, "partial": 1, "failed": 1}
    per_hour = queries.runs_per_hour(db, since)
    assert per_hour["runs"].sum() == 4
    assert set(per_hour["status"]) == {"running", "success", "partial", "failed"}
    failures = queries.latest_failures(db)
    assert failures["id"].tolist() == [seeded.runs["failed"], seeded.runs["old_failed"]]


def test_log_volume_growth_and_row_counts(db, seeded):
    start = seeded.today - timedelta(days=3)
    assert queries.log_volume_per_day(db, start)["runs"].sum() == 6
    growth = queries.rows_written_per_day(db, start)
    assert growth.groupby("data_type")["rows"].sum().to_dict() == {
        "blocks": 100,
        "prices": 28,
        "transactions": 0,
    }
    counts = queries.table_row_counts(db)
    assert counts["blockchain_blocks"] == len(seeded.btc_blocks) + len(seeded.eth_blocks)
    assert counts["coin_metadata"] == 3
    assert counts["scheduler_heartbeats"] == 1
    created = queries.rows_created_per_day(db, start).groupby("table")["rows"].sum()
    assert created["blockchain_transactions"] == counts["blockchain_transactions"]
    assert created["market_prices"] == counts["market_prices"]


def test_claim_request_lets_exactly_one_process_run_it(db, seeded):
    request = db.request_rerun(seeded.runs["failed"], "test")
    assert queries.open_requests(db, [seeded.runs["failed"], seeded.runs["old_failed"]]) == {
        seeded.runs["failed"]: "pending"
    }
    assert db.claim_request(request.id, "dashboard:1").claimed_by == "dashboard:1"
    with pytest.raises(RequestBusy, match="already being served by dashboard:1"):
        db.claim_request(request.id, "scheduler:2")
    assert db.claim_next_request("scheduler:2") is None  # nothing pending is left for the scheduler
    assert db.get_replay_request(request.id).claimed_by == "dashboard:1"
    assert queries.open_requests(db, [seeded.runs["failed"]]) == {seeded.runs["failed"]: "running"}
    assert queries.open_requests(db, []) == {}


def test_block_days_maps_stored_heights_to_their_utc_day(db, seeded, monkeypatch):
    newest = queries.latest_blocks(db, "BTC", 1)
    day = newest["time"].iloc[0].date()
    unknown = BTC_TIP + 1
    assert queries.block_days(db, "BTC", [BTC_TIP, unknown, BTC_TIP]) == {BTC_TIP: day}
    assert queries.block_days(db, "ETH", [BTC_TIP]) == {}
    assert queries.block_days(db, "BTC", []) == {}
    monkeypatch.setattr(queries, "IN_BATCH", 100)
    many = queries.block_days(db, "BTC", seeded.btc_blocks)  # several IN batches
    assert len(many) == len(seeded.btc_blocks)
    assert all(isinstance(d, type(day)) for d in many.values())


def test_backfill_queue_counts_backfill_requests_by_status(db, seeded):
    assert queries.backfill_queue(db) == {}
    slice_a = {"source": "coingecko", "data_type": "prices", "params": {"coin_id": "bitcoin", "start": "x"}}
    slice_b = {
        "source": "blockchair",
        "data_type": "blocks",
        "params": {"chain": "bitcoin", "start_height": 1},
    }
    first = db.request_backfill(slice_a, "test")
    db.request_backfill(slice_a, "test")  # de-duplicated while open
    db.request_backfill(slice_b, "test")
    db.request_rerun(seeded.runs["failed"], "test")  # a rerun is not a backfill
    assert queries.backfill_queue(db) == {"pending": 2}
    db.finish_replay_request(first.id, status="done", result_run_id=None)
    assert queries.backfill_queue(db) == {"pending": 1, "done": 1}


def test_failed_runs_made_good_are_told_from_unresolved_ones(db, seeded):
    assert db.resolve_fixed_runs() == 1  # the old failure's rerun succeeded
    old, child = seeded.runs["old_failed"], seeded.runs["child"]
    table = queries.runs_table(db, statuses=["failed"]).set_index("id")
    assert table.loc[old, "resolved_by_run_id"] == child
    assert pd.isna(table.loc[seeded.runs["failed"], "resolved_by_run_id"])
    assert str(table["resolved_by_run_id"].dtype) == "Int64"
    assert queries.latest_failures(db)["id"].tolist() == [seeded.runs["failed"], old]
    assert queries.latest_failures(db, unresolved_only=True)["id"].tolist() == [seeded.runs["failed"]]
    day = datetime.now(UTC) - timedelta(hours=24)
    assert queries.failures_by_resolution(db, day) == {"unresolved": 1, "made_good": 0}  # old is 30 h old
    week = datetime.now(UTC) - timedelta(days=7)
    assert queries.failures_by_resolution(db, week) == {"unresolved": 1, "made_good": 1}
