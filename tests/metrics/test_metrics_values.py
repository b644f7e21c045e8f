"""The exporter's values equal what the database holds, on SQLite and PostgreSQL: a seeded scenario read
back from a scrape (parsed with prometheus-client's own parser) against the rows themselves, the counters
following new runs, and the run-log totals kept in memory across the horizon."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, insert, select

from pipeline.metrics.background import BackgroundFigures
from pipeline.metrics.runlog import RunLogTotals
from pipeline.models import BlockchainBlock, DataIngestionLog
from pipeline.services.incidents import KINDS
from pipeline.store import queries
from pipeline.store.runs import RunSlice
from tests.dashboard.seed import BTC_GAP, BTC_TIP, ETH_TIP, populate, seed_incidents
from tests.metrics.scraping import Scrape, assert_runs_match, collect, expected_runs, scrape_registry

UNIT = ("source", "data_type", "coin")


@pytest.fixture
def seeded(db):
    """Prices with a 3-day bitcoin hole, blocks with a 2-day bitcoin hole, transactions, runs in every
    state (one running), a live worker, and incidents (one open, one resolved)."""
    seeded = populate(db)
    incidents = seed_incidents(db)
    return db, seeded, incidents


def _run(db, status, *, source="coingecko", data_type="prices", coin="bitcoin", **values):
    """A run as a unit records it, with its requests, retries and waiting."""
    run_id = db.start_run(
        RunSlice(source, data_type, coin, {"coin": coin}), trigger="schedule", parent_run_id=None
    )
    if status != "running":
        db.finish_run(run_id, status=status, finished_at=datetime.now(UTC), **values)
    return run_id


def test_the_run_log_families_equal_its_rows(seeded):
    db, _, _ = seeded
    _run(db, "success", requests_made=3, retries=2, wait_seconds=1.25)
    _, scrape = scrape_registry(db)
    assert scrape.value("crypto_pipeline_database_up") == 1
    assert_runs_match(scrape, expected_runs(db))
    # The seed's running run is a gauge, not a counter: it is counted when it ends.
    assert (
        scrape.value("crypto_pipeline_runs_running", source="blockchair", data_type="blocks", coin="ethereum")
        == 1
    )
    retried = scrape.value(
        "crypto_pipeline_retries_total", source="coingecko", data_type="prices", coin="bitcoin"
    )
    assert retried == 4 + 2  # the seed's failed run retried 4 times, ours twice


def test_incidents_workers_freshness_budget_and_rows_equal_the_database(seeded):
    db, seeded_facts, incidents = seeded
    now = datetime.now(UTC)
    _, scrape = scrape_registry(db)

    open_by_kind = Counter(i.kind for i in db.get_incidents(open_only=True, limit=None))
    assert open_by_kind["unit"] >= 1
    assert scrape.by("crypto_pipeline_open_incidents", "kind") == {(k,): open_by_kind[k] for k in KINDS}
    resolved = db.get_incidents(resolved_since=now - timedelta(hours=24), limit=None)
    assert incidents.resolved_id in {i.id for i in resolved}  # the one a later run made good
    assert scrape.value("crypto_pipeline_incidents_resolved_last_24h") == len(resolved)

    assert scrape.by("crypto_pipeline_workers", "state") == {
        ("up",): 1,
        ("stale",): 0,
        ("down",): 0,
        ("stopped",): 0,
    }
    ((worker, age),) = scrape.by("crypto_pipeline_worker_heartbeat_age_seconds", "worker").items()
    assert worker == ("test-host:1:abc123",)
    assert 0 <= age < 60

    assert scrape.by("crypto_pipeline_blocks_behind_tip", "coin") == {("bitcoin",): 3, ("ethereum",): 80}
    yesterday = datetime.combine(seeded_facts.today - timedelta(days=1), datetime.min.time(), UTC)
    for coin in ("bitcoin", "ethereum", "dogecoin"):
        age = scrape.value("crypto_pipeline_price_age_seconds", coin=coin)
        assert abs(age - (now - yesterday).total_seconds()) < 30
    levels = scrape.by("crypto_pipeline_freshness_level", "source", "data_type", "coin", "level")
    measures = Counter(key[:3] for key, value in levels.items() if value == 1)
    assert set(measures.values()) == {1}  # one level per measure
    assert levels[("blockchair", "blocks", "bitcoin", "ok")] == 1  # 3 blocks behind: under the warn level

    since = now - timedelta(hours=24)
    with db.session() as session:
        recent = session.execute(
            select(DataIngestionLog.source, DataIngestionLog.requests_made).where(
                DataIngestionLog.started_at >= since
            )
        ).all()
    for source in ("blockchair", "coingecko"):
        spent = sum(n for s, n in recent if s == source)
        assert scrape.value("crypto_pipeline_requests_spent", source=source) == spent
    assert (
        scrape.value("crypto_pipeline_daily_request_budget", source="coingecko")
        == db.settings.COINGECKO_DAILY_REQUEST_BUDGET
    )

    counts = queries.table_row_counts(db)  # exact: every table of the seed is small
    assert scrape.by("crypto_pipeline_table_rows", "table") == {(t,): n for t, n in counts.items()}
    assert scrape.value("crypto_pipeline_table_rows", table="blockchain_transactions") == 40


def test_gaps_equal_the_holes_in_the_seed(seeded):
    db, seeded_facts, _ = seeded
    _, scrape = scrape_registry(db)
    ranges = scrape.by("crypto_pipeline_gaps", "coin", "kind")
    missing = scrape.by("crypto_pipeline_gap_missing", "coin", "kind")
    # Bitcoin's prices lack the same days as ethereum's (before the seed, today) plus the 3-day hole.
    assert ranges[("bitcoin", "price_days")] == ranges[("ethereum", "price_days")] + 1
    assert (
        missing[("bitcoin", "price_days")]
        == missing[("ethereum", "price_days")] + BTC_GAP[0] - BTC_GAP[1] + 1
    )
    # Bitcoin's blocks have one hole (two days of them), ethereum's none.
    held = seeded_facts.btc_blocks
    assert (ranges[("bitcoin", "block_heights")], missing[("bitcoin", "block_heights")]) == (
        1, max(held) - min(held) + 1 - len(held),
    )  # fmt: skip
    assert (ranges[("ethereum", "block_heights")], missing[("ethereum", "block_heights")]) == (0, 0)
    # The newest 6 bitcoin blocks (the transaction window) hold 3 of their 2000-odd transactions each.
    assert ranges[("bitcoin", "transactions")] == 1
    assert missing[("bitcoin", "transactions")] == sum(2000 + i % 50 - 3 for i in range(6))
    assert held[0] == BTC_TIP
    assert seeded_facts.eth_blocks[0] == ETH_TIP
    # No price points stored: no hourly series started, so no hour is missing.
    assert scrape.by("crypto_pipeline_gap_missing", "kind", "quote")[("price_hours", "usd")] == 0
    assert scrape.value("crypto_pipeline_background_refreshed_timestamp_seconds") == pytest.approx(
        time.time(), abs=60
    )


def test_counters_follow_runs_as_they_start_and_end(seeded):
    db, _, _ = seeded
    registry, first = scrape_registry(db)
    unit = {"source": "coingecko", "data_type": "prices", "coin": "solana"}  # a unit that never ran
    assert first.value("crypto_pipeline_runs_total", **unit, status="failed") is None

    _run(db, "failed", coin="solana", requests_made=2, retries=1, wait_seconds=0.5)
    after_failure = collect(registry)
    assert after_failure.value("crypto_pipeline_runs_total", **unit, status="failed") == 1
    assert after_failure.value("crypto_pipeline_runs_total", **unit, status="success") == 0  # there at 0
    assert after_failure.value("crypto_pipeline_wait_seconds_total", **unit) == 0.5

    running = _run(db, "running", coin="solana")
    while_running = collect(registry)
    assert while_running.value("crypto_pipeline_runs_running", **unit) == 1
    assert while_running.value("crypto_pipeline_runs_total", **unit, status="success") == 0

    db.finish_run(running, status="success", finished_at=datetime.now(UTC), requests_made=1)
    done = collect(registry)
    assert done.value("crypto_pipeline_runs_running", **unit) is None
    assert done.value("crypto_pipeline_runs_total", **unit, status="success") == 1
    assert done.value("crypto_pipeline_requests_total", **unit) == 3
    finished = db.get_run(running).finished_at
    assert done.value("crypto_pipeline_last_success_timestamp_seconds", **unit) == finished.timestamp()
    assert_runs_match(done, expected_runs(db))


def _insert_runs(db, rows):
    with db.session_factory.begin() as session:
        defaults = {
            "trigger": "schedule",
            "params": {},
            "requests_made": 1,
            "retries": 0,
            "wait_seconds": 0.0,
        }
        session.execute(insert(DataIngestionLog), [{**defaults, **row} for row in rows])


def _scrape_of(db, totals, now):
    """A scrape holding only the run-log families of `totals` read at `now`."""
    from pipeline.metrics.collector import _Families, families_of_runs

    families = _Families()
    families_of_runs(families, totals.read(db, now))
    from prometheus_client import CollectorRegistry, generate_latest

    class Fixed:
        def collect(self):
            return families.built

    registry = CollectorRegistry()
    registry.register(Fixed())
    return Scrape.parse(generate_latest(registry).decode())


def test_totals_kept_in_memory_stay_equal_to_the_log_across_the_horizon(db):
    t0 = db.db_now().replace(minute=30, second=0, microsecond=0)
    hours = lambda n: t0 + timedelta(hours=n)  # noqa: E731
    unit = {"source": "blockchair", "data_type": "blocks", "coin": "bitcoin"}
    _insert_runs(db, [
        {**unit, "status": "success", "started_at": hours(-5), "finished_at": hours(-5), "requests_made": 4},
        {**unit, "status": "failed", "started_at": hours(-3), "finished_at": hours(-3), "retries": 3},
        {**unit, "status": "running", "started_at": hours(-3)},  # a stuck run, behind the horizon
        {**unit, "status": "partial", "started_at": hours(-0.5), "finished_at": hours(-0.5)},
    ])  # fmt: skip
    totals = RunLogTotals()
    assert_runs_match(_scrape_of(db, totals, t0), expected_runs(db))
    assert totals.horizon == hours(-1.5)  # one hour behind, on the hour

    # The stuck run ends (recovery marks it failed): it is counted once, no longer running.
    with db.session_factory.begin() as session:
        session.execute(
            DataIngestionLog.__table__.update()
            .where(DataIngestionLog.status == "running")
            .values(status="failed", finished_at=hours(-0.2))
        )
    assert_runs_match(_scrape_of(db, totals, t0), expected_runs(db))

    # Time passes: the horizon moves over runs that were recent, and new ones come in.
    _insert_runs(db, [
        {**unit, "status": "success", "started_at": hours(1), "finished_at": hours(1)},
        {**unit, "status": "running", "started_at": hours(2.9)},
    ])  # fmt: skip
    scrape = _scrape_of(db, totals, hours(3))
    assert totals.horizon == hours(1.5)
    assert_runs_match(scrape, expected_runs(db))
    assert scrape.value("crypto_pipeline_runs_total", **unit, status="failed") == 2

    # The log shrinks (the newest runs removed by hand): the totals are summed again, not kept.
    with db.session_factory.begin() as session:
        newest = session.scalar(select(DataIngestionLog.id).order_by(DataIngestionLog.id.desc()).limit(1))
        session.execute(delete(DataIngestionLog).where(DataIngestionLog.id >= newest - 1))
    assert_runs_match(_scrape_of(db, totals, hours(3)), expected_runs(db))


def test_gap_figures_are_refreshed_in_the_background(db):
    from tests.support.factories import store_blocks

    store_blocks(db, "BTC", range(100, 110))
    cache = BackgroundFigures(db, db.settings, refresh_seconds=0)
    first = cache.get()
    assert first.ranges[("bitcoin", "block_heights", "")] == 0

    store_blocks(db, "BTC", range(120, 125))  # a hole of 10 heights
    served = cache.get()  # due: served as they were, while a thread refreshes them
    assert served is first
    deadline = time.monotonic() + 10
    while (figures := cache.get()) is first and time.monotonic() < deadline:
        time.sleep(0.05)
    assert figures.ranges[("bitcoin", "block_heights", "")] == 1
    assert figures.missing[("bitcoin", "block_heights", "")] == 10
    assert figures.computed_at > first.computed_at


def test_blocks_removed_by_hand_show_as_a_hole(db):
    """The gap figures read the rows, not the run log: a hole made outside the pipeline shows too."""
    from tests.support.factories import store_blocks

    store_blocks(db, "DOGE", range(1, 21))
    with db.transaction() as conn:
        conn.execute(
            delete(BlockchainBlock).where(
                BlockchainBlock.coin_symbol == "DOGE", BlockchainBlock.block_id.between(5, 7)
            )
        )
    _, scrape = scrape_registry(db)
    assert scrape.value("crypto_pipeline_gap_missing", coin="dogecoin", kind="block_heights", quote="") == 3


def test_wait_seconds_never_decreases_as_the_horizon_moves_and_equals_a_restarted_exporter(db):
    """Fractional waits summed in another order (the database's sum of the settled hours, then the recent
    runs in Python) must not differ by a rounding step: a counter that drops by 5.7e-14 is a counter
    reset to Prometheus, and `increase()` then counts the whole total again."""
    import random

    rng = random.Random(1)
    t0 = db.db_now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=48)
    unit = {"source": "blockchair", "data_type": "blocks", "coin": "bitcoin"}
    waits = [round(rng.random() * 3, 3) for _ in range(48 * 6)]
    statuses = ("success", "failed", "partial")
    _insert_runs(db, [
        {**unit, "status": statuses[i % 3], "started_at": t0 + timedelta(minutes=10 * i),
         "finished_at": t0 + timedelta(minutes=10 * i), "wait_seconds": wait}
        for i, wait in enumerate(waits)
    ])  # fmt: skip
    exact = sum(round(wait * 1_000_000) for wait in waits) / 1_000_000

    def served(totals, now):
        return _scrape_of(db, totals, now).value("crypto_pipeline_wait_seconds_total", **unit)

    totals = RunLogTotals()
    previous = served(totals, t0 + timedelta(hours=3))
    for step in range(1, 46):  # the horizon moves an hour at a time over the runs
        now = t0 + timedelta(hours=3 + step)
        value = served(totals, now)
        assert value >= previous, f"the counter went down at step {step}: {previous!r} -> {value!r}"
        assert value == served(RunLogTotals(), now)  # what an exporter restarted now serves
        assert value == exact
        previous = value
