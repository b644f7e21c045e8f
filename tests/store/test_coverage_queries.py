"""The reads the Database and Coverage pages were moved onto so that they stay flat as data grows (range
counts with halving, index seeks, estimated row counts, the SQLite run-log grid), each compared, on
SQLite and PostgreSQL, with a straightforward recomputation from the raw rows.

Random inputs come from `random.Random(seed)` with fixed seeds (the `db` fixture is per test, so every
case of a property lives in one database, under its own chain symbol or coin id).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import bindparam, delete, func, insert, select, text

from pipeline.columns import UTCDateTime
from pipeline.database import DatabaseService
from pipeline.models import Base, BlockchainBlock, CoinMetadata, DataIngestionLog, MarketPrice
from pipeline.ranges import utcnow
from pipeline.services.coverage import (
    PRICE_DATA_TYPES,
    CellState,
    held_height_ranges,
    holes_between,
    price_coverage,
)
from pipeline.store import coverage, queries
from tests.support.factories import finished_run, store_blocks

SPAN = coverage.ISLAND_SCAN_SPAN  # 4096: the widest span with a hole split by the window function
# How far a PostgreSQL estimate may be from the exact count right after ANALYZE (of a table this small
# ANALYZE reads every page, so the estimate is in fact exact up to rounding).
PG_TOLERANCE = 0.05
P, M, F, U = CellState.PRESENT, CellState.MISSING, CellState.FAILED, CellState.UNAVAILABLE


# ---------------------------------------------------------------------------------------------- helpers


def islands(values: Iterable[int]) -> list[tuple[int, int]]:
    """(first, last) of each run of consecutive integers, lowest first: the naive recomputation."""
    out: list[tuple[int, int]] = []
    for v in sorted(set(values)):
        if out and out[-1][1] + 1 == v:
            out[-1] = (out[-1][0], v)
        else:
            out.append((v, v))
    return out


def day_islands(days: Iterable[date]) -> list[tuple[date, date]]:
    return [(date.fromordinal(a), date.fromordinal(b)) for a, b in islands(d.toordinal() for d in days)]


def compress(states: list[tuple[date, CellState]]) -> list[tuple[date, date, CellState]]:
    """Per-day states as runs of equal state over consecutive days."""
    out: list[tuple[date, date, CellState]] = []
    for day, state in states:
        if out and out[-1][2] == state and out[-1][1] + timedelta(days=1) == day:
            out[-1] = (out[-1][0], day, state)
        else:
            out.append((day, day, state))
    return out


def raw_heights(db: DatabaseService, symbol: str) -> list[int]:
    with db.engine.connect() as conn:
        stmt = select(BlockchainBlock.block_id).where(BlockchainBlock.coin_symbol == symbol)
        return [int(h) for h in conn.scalars(stmt)]


def raw_days(db: DatabaseService, coin_id: str) -> list[date]:
    with db.engine.connect() as conn:
        return list(conn.scalars(select(MarketPrice.price_date).where(MarketPrice.coin_id == coin_id)))


def store_prices(db: DatabaseService, coin_id: str, days: Iterable[date]) -> None:
    """A daily price for each day (tests/support/factories.py has no price factory)."""
    rows = [
        {"coin_id": coin_id, "price_date": d, "price_usd": Decimal("100.5"), "volume_usd": Decimal(7)}
        for d in sorted(set(days))
    ]
    if rows:
        db.insert_market_prices(rows)


def add_runs(db: DatabaseService, rows: list[dict[str, Any]]) -> None:
    """Run-log rows as given (a started_at of the test's choosing, which `start_run` does not allow)."""
    if rows:
        with db.engine.begin() as conn:
            conn.execute(insert(DataIngestionLog), rows)


def insert_heights(db: DatabaseService, symbol: str, heights: Iterable[int]) -> None:
    """Bare blocks at these heights, generated in SQL island by island: `store_blocks` validates each
    block and keeps the chain's daily rollups (~0.1 ms a block), and even a plain executemany costs
    seconds for the 10^5 blocks of these cases on PostgreSQL."""
    runs = islands(heights)
    if not runs:
        return
    columns = "coin_symbol, block_id, hash, time, transaction_count, created_at, updated_at"
    if db.dialect == "sqlite":
        stmt = text(
            "WITH RECURSIVE i(lo, hi) AS (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')"
            " FROM json_each(:runs)),"
            " g(h, hi) AS (SELECT lo, hi FROM i UNION ALL SELECT h + 1, hi FROM g WHERE h < hi)"
            f" INSERT INTO blockchain_blocks ({columns})"
            " SELECT :symbol, h, :symbol || ':' || h, :when, 0, :when, :when FROM g"
        )
        values: dict[str, Any] = {"runs": json.dumps(runs)}
    else:
        stmt = text(
            f"INSERT INTO blockchain_blocks ({columns})"
            " SELECT CAST(:symbol AS text), g, CAST(:symbol AS text) || ':' || g, :when, 0, :when, :when"
            " FROM unnest(CAST(:lo AS bigint[]), CAST(:hi AS bigint[])) AS i(lo, hi),"
            " generate_series(i.lo, i.hi) AS g"
        )
        values = {"lo": [a for a, _ in runs], "hi": [b for _, b in runs]}
    stmt = stmt.bindparams(bindparam("when", type_=UTCDateTime()))
    with db.engine.begin() as conn:
        conn.execute(stmt, {"symbol": symbol, "when": datetime.now(UTC) - timedelta(hours=3), **values})


def from_parts(start: int, parts: Iterable[tuple[int, int]]) -> list[int]:
    """Heights from `start`: islands of `length` each followed by a hole of `hole` heights."""
    heights, at = [], start
    for length, hole in parts:
        heights += range(at, at + length)
        at += length + hole
    return heights


def today() -> date:
    return utcnow().date()


# ---------------------------------------------------------------------------------------------- heights


def fixed_height_cases() -> dict[str, list[int]]:
    everything = range(0, 3 * SPAN)
    return {
        "EMPTY": [],
        "ONE": [7],
        "GENESIS": [0],
        "PAIR": [5, 7],
        "FAR": [0, 1, 2**62, 2**63 - 2, 2**63 - 1],  # the widest heights the schema takes: 63 halvings
        "FULL": list(range(1000, 1000 + 3 * SPAN + 5)),  # no hole: one count
        "FULL_BIG": list(range(19_000_000, 19_000_000 + 2 * SPAN)),
        "W_EQ": [h for h in range(SPAN) if h != 1000],  # width SPAN with a hole: the window directly
        "W_ABOVE": [h for h in range(SPAN + 1) if h != SPAN // 2],  # width SPAN + 1: halved first
        "W_BELOW": [h for h in range(SPAN - 1) if h != 1],
        "W_ABOVE_END": [h for h in range(SPAN + 1) if h != SPAN - 1],
        "H_EQ": from_parts(0, [(100, SPAN), (100, 0)]),  # holes of SPAN - 1, SPAN, SPAN + 1 heights
        "H_ABOVE": from_parts(0, [(100, SPAN + 1), (100, 0)]),
        "H_BELOW": from_parts(0, [(100, SPAN - 1), (100, 0)]),
        "H_TWO": from_parts(5, [(1, SPAN), (1, SPAN + 1), (1, 0)]),  # single heights far apart
        "I_SIZES": from_parts(
            700_000, [(SPAN - 1, 1), (SPAN, 1), (SPAN + 1, 1), (1, 1), (SPAN, 0)]
        ),  # islands of SPAN - 1, SPAN, SPAN + 1 heights
        "EDGE_HOLES": [h for h in range(2 * SPAN + 2) if h not in (1, 2 * SPAN)],
        "SPLIT_ISLAND": [h for h in everything if h != 10],  # islands that cross the halving points
        "SPARSE": list(range(0, 3 * SPAN, 2)),  # every other height: thousands of single heights
    }


def random_height_case(seed: int) -> list[int]:
    rng = random.Random(seed)
    offset = rng.choice([0, 1, 123_457, 19_000_000])
    target = rng.randint(1, 4 * SPAN)

    def size() -> int:
        return rng.choice(
            [
                rng.randint(1, 3),
                rng.randint(1, 60),
                rng.randint(SPAN - 2, SPAN + 2),
                rng.randint(1, 2 * SPAN),
            ]
        )

    parts, width = [], 0
    while width < target:
        length, hole = size(), size()
        parts.append((length, hole))
        width += length + hole
    heights = from_parts(offset, parts)
    return heights[: 3 * SPAN]  # keeps the insert small; the last hole goes, the shape stays


def test_held_height_ranges_equal_the_islands_of_the_raw_heights(db):
    cases = fixed_height_cases() | {f"R{seed}": random_height_case(seed) for seed in range(8)}
    for symbol, heights in cases.items():
        if len(heights) < 10:
            store_blocks(db, symbol, heights)
        else:
            insert_heights(db, symbol, heights)
    for symbol, heights in cases.items():
        expected = islands(raw_heights(db, symbol))
        assert expected == islands(heights)  # the raw rows are the heights stored
        assert coverage.height_islands(db, symbol) == expected, symbol
        held = held_height_ranges(db, symbol)
        assert [(r.start, r.end) for r in held] == expected, symbol
        holes = [(r.start, r.end) for r in holes_between(held)]
        assert holes == [(a[1] + 1, b[0] - 1) for a, b in zip(expected, expected[1:], strict=False)]


@pytest.mark.parametrize("span", [1, 2, 3, 16])
def test_held_height_ranges_do_not_depend_on_the_scan_span(db, monkeypatch, span):
    """With a narrow window-function span almost every island is found by counting and halving alone,
    and islands are cut at many halving points (and joined again)."""
    monkeypatch.setattr(coverage, "ISLAND_SCAN_SPAN", span)
    cases: dict[str, list[int]] = {}
    for seed in range(12):
        rng = random.Random(1000 + seed)
        width = rng.randint(1, 120)
        density = rng.choice([0.1, 0.5, 0.9, 0.99])
        offset = rng.choice([0, 1, 4095, 1_000_000])
        cases[f"S{seed}"] = [offset + h for h in range(width) if rng.random() < density] or [offset]
    for symbol, heights in cases.items():
        insert_heights(db, symbol, heights)
    for symbol, heights in cases.items():
        assert coverage.height_islands(db, symbol) == islands(heights), (symbol, span)


def test_height_coverage_equals_a_groupby_of_the_raw_blocks(db):
    store_blocks(db, "BTC", random_height_case(3))
    store_blocks(db, "ETH", range(500, 900))
    store_blocks(db, "NOTACOIN", [1, 2, 5])  # not in coin_metadata: not a row of the page
    with db.engine.connect() as conn:
        known = set(conn.scalars(select(CoinMetadata.symbol)))
        raw = pd.DataFrame(
            conn.execute(select(BlockchainBlock.coin_symbol, BlockchainBlock.block_id)).all(),
            columns=["coin_symbol", "block_id"],
        )
    raw = raw[raw["coin_symbol"].isin(known)]
    expected = (
        raw.groupby("coin_symbol")["block_id"]
        .agg(min_height="min", max_height="max", blocks="count")
        .reset_index()
        .sort_values("coin_symbol", ignore_index=True)
    )
    expected["missing_heights"] = expected["max_height"] - expected["min_height"] + 1 - expected["blocks"]
    got = queries.height_coverage(db)
    assert list(got["coin_symbol"]) == ["BTC", "ETH"]  # DOGE has no blocks, NOTACOIN is not a coin
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


# ---------------------------------------------------------------------------------------------- prices


def random_days(rng: random.Random, first: date, last: date) -> list[date]:
    """Days of [first, last] in runs and holes of many lengths."""
    days, day = [], first
    while day <= last:
        run = rng.choice([1, 2, rng.randint(1, 10), rng.randint(10, 120)])
        hole = rng.choice([0, 1, 2, rng.randint(1, 10), rng.randint(10, 90)])
        days += [day + timedelta(days=i) for i in range(run) if day + timedelta(days=i) <= last]
        day += timedelta(days=run + hole)
    return days


def test_price_day_ranges_equal_the_runs_of_the_raw_days(db):
    now = today()
    base = now - timedelta(days=400)
    held: dict[str, list[date]] = {
        "c-none": [],
        "c-one": [base + timedelta(days=200)],
        "c-full": [base + timedelta(days=i) for i in range(401)],  # up to today, no hole
        "c-alt": [base + timedelta(days=i) for i in range(0, 401, 2)],
    }
    for seed in range(8):
        held[f"c-rand{seed}"] = random_days(random.Random(seed), base, now)
    for coin_id, days in held.items():
        store_prices(db, coin_id, days)
    for coin_id, days in held.items():
        stored = raw_days(db, coin_id)
        assert sorted(stored) == sorted(set(days))
        rng = random.Random(coin_id)
        windows = [(base - timedelta(days=30), now + timedelta(days=30)), (base, now), (now, now)]
        for _ in range(12):
            a = base + timedelta(days=rng.randint(-20, 420))
            b = a + timedelta(days=rng.choice([0, 1, rng.randint(0, 60), rng.randint(0, 400)]))
            windows += [(a, b), (b, a) if a != b else (a, a - timedelta(days=1))]  # and reversed: empty
        if stored:  # exactly one stored run, and windows that cut a run
            first, last = day_islands(stored)[0]
            windows += [(first, last), (first + timedelta(days=1), last), (first, first)]
        for start, end in windows:
            expected = day_islands(d for d in stored if start <= d <= end)
            got = coverage.price_day_ranges(db, coin_id, start, end)
            assert got == expected, (coin_id, start, end)


def test_date_coverage_equals_a_groupby_of_the_raw_prices(db):
    now = today()
    for seed in range(5):
        store_prices(db, f"d{seed}", random_days(random.Random(50 + seed), now - timedelta(days=300), now))
    store_prices(db, "d-one", [now - timedelta(days=3)])
    with db.engine.connect() as conn:
        raw = pd.DataFrame(
            conn.execute(select(MarketPrice.coin_id, MarketPrice.price_date)).all(),
            columns=["coin_id", "price_date"],
        )
    expected = (
        raw.groupby("coin_id")["price_date"]
        .agg(first_date="min", last_date="max", days="count")
        .reset_index()
        .sort_values("coin_id", ignore_index=True)
    )
    spans = [(b - a).days + 1 for a, b in zip(expected["first_date"], expected["last_date"], strict=True)]
    expected["missing_days"] = pd.Series(spans, dtype="int64") - expected["days"]
    got = queries.date_coverage(db)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def _first_servable(listed: date | None, history_days: int | None, now: date) -> date:
    earliest = listed or date.min
    if history_days is not None:
        earliest = max(earliest, now - timedelta(days=history_days - 1))
    return earliest


def expected_price_states(
    db: DatabaseService, coin_id: str, start: date, end: date, first_servable: date, now: date
) -> list[tuple[date, date, CellState]]:
    """Day by day from the raw rows: present if stored, else unavailable outside [first_servable, now],
    else failed when the most recent (by started_at, then id) CoinGecko price run covering it failed."""
    held = set(raw_days(db, coin_id))
    r = DataIngestionLog
    with db.engine.connect() as conn:
        runs = conn.execute(
            select(r.start_date, r.end_date, r.status)
            .where(
                r.source == "coingecko",
                r.coin == coin_id,
                r.data_type.in_(PRICE_DATA_TYPES),
                r.start_date.is_not(None),
                r.end_date.is_not(None),
            )
            .order_by(r.started_at, r.id)
        ).all()
    states = []
    for i in range((end - start).days + 1):
        day = start + timedelta(days=i)
        if day in held:
            state = P
        elif day < first_servable or day > now:
            state = U
        else:
            last = None
            for a, b, status in runs:
                if a <= day <= b:
                    last = str(status)
            state = F if last == "failed" else M
        states.append((day, state))
    return compress(states)


def test_price_coverage_day_states_equal_a_day_by_day_recomputation(db, settings):
    now = today()
    bitcoin = next(c for c in db.get_coins() if c.coingecko_id == "bitcoin")
    plans = [settings.model_copy(update={"COINGECKO_HISTORY_DAYS": days}) for days in (1, 20, 60, 365)] + [
        settings.model_copy(update={"COINGECKO_API_PLAN": "pro", "COINGECKO_HISTORY_DAYS": None})
    ]
    clock = datetime.now(UTC) - timedelta(days=40)
    seen: set[CellState] = set()
    for seed in range(10):
        rng = random.Random(seed)
        coin_id = f"s{seed}"
        start = now - timedelta(days=rng.randint(20, 150))
        end = rng.choice(
            [now, now + timedelta(days=rng.randint(1, 6)), now - timedelta(days=rng.randint(1, 10))]
        )
        listed = rng.choice(
            [None, start, start - timedelta(days=5), start + timedelta(days=rng.randint(0, 40)), now, end]
        )
        days = random_days(rng, start - timedelta(days=10), now)
        if listed is not None and listed <= now and rng.random() < 0.5:
            days.append(listed)  # the listing day itself held
        store_prices(db, coin_id, days)
        runs = []
        for _ in range(rng.randint(0, 25)):
            a = start + timedelta(days=rng.randint(-10, 150))
            b = a + timedelta(days=rng.randint(0, 30))
            clock += timedelta(seconds=rng.choice([0, 1, 3600]))  # some runs start at the same moment
            runs.append(
                {
                    "source": rng.choice(["coingecko"] * 6 + ["blockchair"]),
                    "data_type": rng.choice([*PRICE_DATA_TYPES, *PRICE_DATA_TYPES, "blocks"]),
                    "coin": rng.choice([coin_id] * 6 + ["other"]),
                    "start_date": a,
                    "end_date": b,
                    "status": rng.choice(["success", "failed", "failed", "partial", "running"]),
                    "trigger": "manual",
                    "params": {},
                    # not in id order: the most recent run is the one started last
                    "started_at": clock - timedelta(hours=rng.choice([0, 0, 30])),
                }
            )
        add_runs(db, runs)
        coin = bitcoin.model_copy(
            update={"coingecko_id": coin_id, "symbol": coin_id.upper(), "listed_since": listed}
        )
        for plan in plans:
            first_servable = _first_servable(listed, plan.coingecko_history_days, now)
            expected = expected_price_states(db, coin_id, start, end, first_servable, now)
            got = price_coverage(db, plan, coin, start, end)
            assert [(r.start, r.end, r.state) for r in got.ranges] == expected, (
                seed,
                plan.coingecko_history_days,
                listed,
            )
            assert (got.ranges[0].start, got.ranges[-1].end) == (start, end)
            seen |= {r.state for r in got.ranges}
    assert seen == {P, M, F, U}  # the cases reach every state
    assert price_coverage(db, plans[0], bitcoin, now, now - timedelta(days=1)).ranges == []


# ---------------------------------------------------------------------------------------------- row counts


def analyze(db: DatabaseService) -> None:
    """Fresh planner statistics for every table of the schema (PostgreSQL only)."""
    if db.dialect == "postgresql":
        names = ", ".join(
            db.engine.dialect.identifier_preparer.quote(t.name) for t in Base.metadata.sorted_tables
        )
        with db.engine.begin() as conn:
            conn.execute(text(f"ANALYZE {names}"))


def assert_estimates(db: DatabaseService, exact: dict[str, int], limit: int) -> queries.RowCounts:
    got = queries.table_row_estimates(db, exact_limit=limit)
    assert isinstance(got, queries.RowCounts)
    assert set(got) == set(exact)
    above = {name for name, n in exact.items() if n > limit}
    assert got.approximate == above, limit
    for name, n in exact.items():
        # below the limit: counted; above it on SQLite, with no row deleted, the row-id span is the count
        if name not in above or db.dialect == "sqlite":
            assert got[name] == n, (name, limit)
        else:
            assert abs(got[name] - n) <= PG_TOLERANCE * n, (name, limit, got[name], n)
    return got


def seed_tables(db: DatabaseService) -> None:
    store_blocks(db, "BTC", range(120))
    store_blocks(db, "ETH", range(1000, 1040))
    now = today()
    store_prices(db, "bitcoin", [now - timedelta(days=i) for i in range(80)])
    for i in range(30):
        finished_run(db, ("success", "failed", "partial")[i % 3])


def test_row_counts_are_exact_up_to_the_limit_and_estimated_above_it(db):
    seed_tables(db)
    analyze(db)
    exact = queries.table_row_counts(db)
    assert (exact["blockchain_blocks"], exact["market_prices"], exact["data_ingestion_logs"]) == (160, 80, 30)
    limits = {0, 1, 50, queries.EXACT_COUNT_LIMIT}
    for n in set(exact.values()):  # each count just below, at and just above the limit
        limits |= {max(n - 1, 0), n, n + 1}
    for limit in sorted(limits):
        assert_estimates(db, exact, limit)
    # the page's own call: nothing here reaches 10,000 rows
    default = queries.table_row_estimates(db)
    assert dict(default) == exact
    assert default.approximate == frozenset()


def test_row_counts_after_deleting_rows(db):
    store_blocks(db, "BTC", range(200))
    b = BlockchainBlock
    chain = b.coin_symbol == "BTC"
    with db.engine.begin() as conn:  # rows from the middle of the table
        conn.execute(delete(b).where(chain, b.block_id.between(50, 129)))
    analyze(db)
    exact = queries.table_row_counts(db)
    assert exact["blockchain_blocks"] == 120
    got = queries.table_row_estimates(db, exact_limit=50)
    assert "blockchain_blocks" in got.approximate
    if db.dialect == "sqlite":  # the span of the row ids: too high by the deleted rows
        with db.engine.connect() as conn:
            span = conn.scalar(text("SELECT max(rowid) - min(rowid) + 1 FROM blockchain_blocks"))
        assert span == 200
        assert got["blockchain_blocks"] == 200 > exact["blockchain_blocks"]
    else:  # the statistics see the deletion
        assert abs(got["blockchain_blocks"] - 120) <= PG_TOLERANCE * 120
    with db.engine.begin() as conn:  # rows from both ends: the span shrinks with them
        conn.execute(delete(b).where(chain, b.block_id.between(0, 19)))
        conn.execute(delete(b).where(chain, b.block_id.between(180, 199)))
    analyze(db)
    got = queries.table_row_estimates(db, exact_limit=50)
    if db.dialect == "sqlite":
        assert got["blockchain_blocks"] == 160  # 20..49 and 130..179 held: row ids 21..180
    else:
        assert abs(got["blockchain_blocks"] - 80) <= PG_TOLERANCE * 80
    with db.engine.begin() as conn:  # at or below the limit: exact, whatever the span says
        conn.execute(delete(b).where(chain, b.block_id.between(130, 159)))
    got = queries.table_row_estimates(db, exact_limit=50)
    assert got["blockchain_blocks"] == 50
    assert "blockchain_blocks" not in got.approximate


# ---------------------------------------------------------------------------------------------- run log


def test_run_log_grid_equals_a_groupby_of_the_raw_runs(db):
    rng = random.Random(42)
    now = datetime.now(UTC)
    first_day = now.date() - timedelta(days=20)
    runs = []
    for _ in range(300):
        day = first_day + timedelta(days=rng.randint(-3, 20))
        moment = rng.choice(
            [
                time(0, 0),  # the first and last microsecond of a day
                time(23, 59, 59, 999_999),
                time(rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59), rng.randint(0, 999_999)),
            ]
        )
        runs.append(
            {
                "source": rng.choice(["blockchair", "coingecko"]),
                "data_type": rng.choice(["blocks", "transactions", "prices", "price_by_date", "addresses"]),
                "coin": "bitcoin",
                "status": rng.choice(queries.RUN_STATUSES),
                "trigger": "schedule",
                "params": {},
                "records_inserted": rng.choice([0, 1, rng.randint(0, 5000)]),
                "started_at": datetime.combine(day, moment, UTC),
            }
        )
    runs.append({**runs[0], "started_at": now + timedelta(days=1)})  # a clock ahead of ours
    add_runs(db, runs)
    for status in ("success", "failed"):
        finished_run(db, status)  # today's, started by the database's clock
    with db.engine.connect() as conn:
        r = DataIngestionLog
        raw = pd.DataFrame(
            conn.execute(select(r.started_at, r.status, r.data_type, r.records_inserted)).all(),
            columns=["started_at", "status", "data_type", "rows"],
        )
        assert conn.scalar(select(func.count()).select_from(r)) == len(runs) + 2
    for start in [
        first_day - timedelta(days=10),
        first_day,
        first_day + timedelta(days=7),
        now.date(),
        now.date() + timedelta(days=1),
        now.date() + timedelta(days=5),  # after every run
    ]:
        since = raw[raw["started_at"] >= datetime.combine(start, time(0), UTC)].copy()
        since["day"] = pd.to_datetime([t.astimezone(UTC).date() for t in since["started_at"]])
        since["status"] = since["status"].astype(str)
        expected = (
            since.groupby(["day", "status", "data_type"])
            .agg(runs=("rows", "size"), rows=("rows", "sum"))
            .reset_index()
            .astype({"runs": "float64", "rows": "float64"})
        )
        got = queries.run_log_per_day(db, start)
        keys = ["day", "status", "data_type"]
        got = got.sort_values(keys, ignore_index=True)[[*keys, "runs", "rows"]]
        if expected.empty:
            assert got.empty, start
            continue
        got["day"] = pd.to_datetime(got["day"]).astype(expected["day"].dtype)
        pd.testing.assert_frame_equal(got, expected.sort_values(keys, ignore_index=True), obj=str(start))
