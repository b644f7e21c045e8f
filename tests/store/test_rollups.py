"""The rollups kept at write time (candles, daily price analytics, chain days) against recomputation from
the raw rows, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import random
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest
from sqlalchemy import delete, event, select

from pipeline.models import (
    ChainDailyStats,
    ChainDayPending,
    DailyPriceStats,
    MarketPrice,
    PriceCandle,
    PricePoint,
)
from pipeline.services.analytics import return_correlation

T0 = datetime(2026, 6, 1, tzinfo=UTC)
D0 = date(2026, 3, 1)


def _walk(seed: int, n: int, start: Decimal) -> list[Decimal]:
    rnd = random.Random(seed)
    prices, price = [], start
    for _ in range(n):
        price = (price * Decimal(str(1 + rnd.uniform(-0.04, 0.04)))).quantize(Decimal("1e-8"))
        prices.append(price)
    return prices


def _points(coin: str, hours: int, *, seed: int = 1, quote: str = "usd") -> list[dict]:
    rnd = random.Random(seed)
    prices = _walk(seed, hours, Decimal("30000"))
    return [
        {
            "coin_id": coin,
            "quote": quote,
            # Irregular, as CoinGecko's real hourly points are, but one per hour.
            "ts": T0 + timedelta(hours=h, seconds=rnd.randint(0, 900)),
            "price": price,
            "volume_24h": Decimal(rnd.randint(10**9, 10**10)) / 7,
            "sampling": "1h",
        }
        for h, price in enumerate(prices)
    ]


def _candles(db, interval: str, coin: str = "bitcoin") -> list:
    return db.get_candles(
        coin_id=coin, interval=interval, start=T0 - timedelta(days=8), end=T0 + timedelta(days=60)
    )


def test_candles_built_piecemeal_equal_candles_built_at_once(db):
    points = _points("bitcoin", 24 * 20)
    shuffled = points[:]
    random.Random(7).shuffle(shuffled)
    for i in range(0, len(shuffled), 37):  # out of order, in small batches, like gap fills
        db.insert_price_points(shuffled[i : i + 37])
    piecemeal = {i: _candles(db, i) for i in ("1h", "4h", "1d", "1w")}
    with db.transaction() as conn:
        conn.execute(delete(PriceCandle))
    db.rebuild_rollups()
    assert {i: _candles(db, i) for i in ("1h", "4h", "1d", "1w")} == piecemeal
    assert len(piecemeal["1h"]) == 24 * 20
    assert len(piecemeal["1d"]) == 20


def test_candle_invariants_and_definitions(db):
    points = _points("bitcoin", 24 * 15, seed=3)
    db.insert_price_points(points)
    by_hour = {p["ts"].replace(minute=0, second=0): p for p in points}
    hours = _candles(db, "1h")
    days = _candles(db, "1d")
    weeks = _candles(db, "1w")
    for candle in [*hours, *_candles(db, "4h"), *days, *weeks]:
        assert candle.low <= min(candle.open, candle.close)
        assert candle.high >= max(candle.open, candle.close)
    for candle in hours[1:]:
        # Open: the previous hour's sample; close: this hour's sample.
        assert candle.open == by_hour[candle.start - timedelta(hours=1)]["price"]
        assert candle.close == by_hour[candle.start]["price"]
        assert candle.volume == (by_hour[candle.start]["volume_24h"] / 24).quantize(Decimal("1e-8"))
        assert candle.sampling == "1h"
    for candle in days:
        last = max((p for p in points if p["ts"].date() == candle.start.date()), key=lambda p: p["ts"])
        assert candle.close == last["price"]
        assert candle.samples == 24
    for week in weeks:
        assert week.start.weekday() == 0
        parts = [d for d in days if week.start <= d.start < week.start + timedelta(days=7)]
        assert (week.open, week.close) == (parts[0].open, parts[-1].close)
        assert week.high == max(d.high for d in parts)
        assert week.low == min(d.low for d in parts)
        assert week.volume == sum((d.volume for d in parts), Decimal(0))


def test_hourly_reads_thin_five_minute_samples_and_latest_is_the_newest(db):
    hourly = _points("ethereum", 48, seed=5)
    five = [
        {
            **hourly[-1],
            "ts": hourly[-1]["ts"].replace(minute=0, second=0) + timedelta(minutes=5 * k + 1),
            "sampling": "5m",
        }
        for k in range(1, 11)
    ]
    db.insert_price_points(hourly + five)
    got = db.get_price_points(coin_id="ethereum", start=T0, end=T0 + timedelta(days=3))
    assert len(got) == 48  # one per hour: the hour's last sample
    assert got[-1].ts == five[-1]["ts"]
    assert (
        len(db.get_price_points(coin_id="ethereum", start=T0, end=T0 + timedelta(days=3), granularity="5m"))
        == 58
    )
    assert db.get_latest_price("ethereum").ts == five[-1]["ts"]
    last_hour = db.get_candles(
        coin_id="ethereum",
        interval="1h",
        start=five[0]["ts"] - timedelta(hours=1),
        end=T0 + timedelta(days=3),
    )[-1]
    assert (last_hour.samples, last_hour.sampling) == (11, "5m")


def _prices(coin: str, days: int, *, seed: int, skip: set[int] = frozenset()) -> list[dict]:
    walk = _walk(seed, days, Decimal("2000"))
    return [
        {"coin_id": coin, "price_date": D0 + timedelta(days=i), "price_usd": p}
        for i, p in enumerate(walk)
        if i not in skip
    ]


def _recomputed(rows: list[dict]) -> pd.DataFrame:
    """The analytics from the raw closes, with pandas, as an analyst would compute them."""
    closes = pd.Series({r["price_date"]: float(r["price_usd"]) for r in rows}).sort_index()
    closes.index = pd.to_datetime(closes.index)
    full = closes.asfreq("D")  # a missing day is NaN, so the returns next to it are too
    returns = full / full.shift(1) - 1
    volatility = returns.rolling(30, min_periods=20).std()
    peak = closes.cummax()
    frame = pd.DataFrame(
        {
            "close": closes,
            "daily_return": returns.reindex(closes.index),
            "volatility_30d": volatility.reindex(closes.index),
            "drawdown": closes / peak - 1,
            "running_peak": peak,
        }
    )
    frame.index = frame.index.date
    return frame


def _stored(db, coin: str) -> pd.DataFrame:
    rows = db.get_daily_price_stats([coin], date(2000, 1, 1), date(2100, 1, 1))
    frame = pd.DataFrame([r.model_dump() for r in rows]).set_index("day")
    return frame.drop(columns="coin_id").apply(lambda c: c.map(lambda v: math.nan if v is None else float(v)))


def _assert_matches(db, coin: str, rows: list[dict]) -> None:
    expected, stored = _recomputed(rows), _stored(db, coin)
    assert list(stored.index) == list(expected.index)
    for column in ("close", "daily_return", "volatility_30d", "drawdown", "running_peak"):
        pd.testing.assert_series_equal(
            stored[column], expected[column], check_names=False, rtol=1e-9, atol=1e-11
        )


def test_daily_analytics_equal_a_recomputation_from_the_closes(db):
    rows = _prices("bitcoin", 120, seed=11, skip={40, 41, 90})
    db.insert_market_prices(rows)
    _assert_matches(db, "bitcoin", rows)
    stats = db.get_daily_price_stats(["bitcoin"], D0, D0 + timedelta(days=200))
    assert all(s.drawdown <= 0 for s in stats)
    assert stats[0].daily_return is None
    assert stats[0].drawdown == 0


def test_a_backfill_of_older_days_updates_every_later_day(db):
    rows = _prices("ethereum", 100, seed=12)
    db.insert_market_prices(rows[60:])
    db.insert_market_prices(rows[:60])  # older days arrive later: returns, volatility and peaks move
    _assert_matches(db, "ethereum", rows)
    changed = [{**rows[50], "price_usd": rows[50]["price_usd"] * 3}]  # a new peak in the past
    db.insert_market_prices(changed)
    _assert_matches(db, "ethereum", [*rows[:50], *changed, *rows[51:]])


def test_return_correlation_equals_pandas_on_the_raw_closes(db):
    a, b = _prices("bitcoin", 90, seed=21), _prices("ethereum", 90, seed=22, skip={10})
    db.insert_market_prices(a + b)
    got = return_correlation(db, ["bitcoin", "ethereum"], D0, D0 + timedelta(days=89))
    ra = _recomputed(a)["daily_return"]
    rb = _recomputed(b)["daily_return"]
    assert got.loc["bitcoin", "ethereum"] == pytest.approx(ra.corr(rb), abs=1e-9)
    assert got.loc["bitcoin", "bitcoin"] == pytest.approx(1.0)


def _block(symbol: str, height: int, at: datetime, fee: int, fee_usd: str | None) -> dict:
    eth = symbol == "ETH"
    return {
        "coin_symbol": symbol,
        "block_id": height,
        "hash": ("0x" if eth else "") + f"{height:064x}",
        "time": at,
        "transaction_count": height % 50 + 1,
        "size": 1000 + height % 300,
        "fee_total": fee,
        "fee_total_usd": None if fee_usd is None else Decimal(fee_usd),
    }


def _recomputed_days(blocks: list[dict]) -> dict[date, tuple]:
    days: dict[date, list[dict]] = {}
    for b in blocks:
        days.setdefault(b["time"].date(), []).append(b)
    out = {}
    for day, group in days.items():
        group.sort(key=lambda b: b["block_id"])
        span = group[-1]["block_id"] - group[0]["block_id"]
        usd = [b["fee_total_usd"] for b in group if b["fee_total_usd"] is not None]
        out[day] = (
            len(group),
            sum(b["transaction_count"] for b in group),
            sum(b["fee_total"] for b in group),
            sum(usd) if usd else None,
            (group[-1]["time"] - group[0]["time"]).total_seconds() / span if span else None,
            sum(b["size"] for b in group) / len(group),
            group[0]["block_id"],
            group[-1]["block_id"],
        )
    return out


def _stored_days(db, symbol: str) -> dict[date, tuple]:
    return {
        s.day: (
            s.blocks,
            s.transactions,
            s.fees_native,
            s.fees_usd,
            s.mean_block_interval_s,
            s.mean_block_size,
            s.first_height,
            s.last_height,
        )
        for s in db.get_chain_daily_stats(symbol, date(2000, 1, 1), date(2100, 1, 1))
    }


def test_chain_days_equal_a_recomputation_with_wei_sums_beyond_int64(db):
    start = datetime(2026, 5, 1, 20, tzinfo=UTC)
    # Ethereum blocks every 12 s with fees near 10**18 wei: a day's sum is far above 2**63.
    blocks = [
        _block(
            "ETH",
            20_000_000 + i,
            start + timedelta(seconds=12 * i),
            9 * 10**17 + i,
            f"{2000 + i}.25" if i % 5 else None,
        )
        for i in range(0, 12_000, 3)  # every third height held: intervals must not double
    ]
    db.insert_blocks(blocks)
    stored = _stored_days(db, "ETH")
    assert stored == _recomputed_days(blocks)
    assert max(v[2] for v in stored.values()) > 2**63
    assert all(abs(v[4] - 12.0) < 1e-9 for v in stored.values() if v[4] is not None)


def test_a_reorganised_block_moving_past_midnight_leaves_both_days_right(db):
    evening = datetime(2026, 5, 1, 23, 50, tzinfo=UTC)
    blocks = [
        _block("BTC", 900_000 + i, evening + timedelta(minutes=4 * i), 5000 + i, "1.5") for i in range(6)
    ]
    db.insert_blocks(blocks)
    moved = {**blocks[2], "hash": f"{999:064x}", "time": blocks[2]["time"] + timedelta(minutes=10)}
    db.insert_blocks([moved])
    now_held = [moved if b["block_id"] == moved["block_id"] else b for b in blocks]
    assert _stored_days(db, "BTC") == _recomputed_days(now_held)


def test_an_upgrade_builds_the_analytics_of_rows_stored_before_it(db):
    rows = _prices("dogecoin", 60, seed=31)
    db.insert_market_prices(rows)
    db.insert_blocks(
        [
            _block(
                "BTC", 800_000 + i, datetime(2026, 4, 1, tzinfo=UTC) + timedelta(minutes=10 * i), 1000, None
            )
            for i in range(300)
        ]
    )
    with db.transaction() as conn:
        conn.execute(delete(DailyPriceStats))
        conn.execute(delete(ChainDailyStats))
    counts = db.rebuild_rollups()
    assert counts["daily_price_stats"] == 60
    assert counts["chain_daily_stats"] == 3
    _assert_matches(db, "dogecoin", rows)
    with db.engine.connect() as conn:
        assert conn.execute(select(ChainDailyStats.blocks).order_by(ChainDailyStats.day)).scalars().all() == [
            144,
            144,
            12,
        ]


def test_blocks_stored_in_a_callers_transaction_mark_their_days_until_the_unit_rebuilds_them(db):
    start = datetime(2026, 5, 1, 22, tzinfo=UTC)
    blocks = [_block("BTC", 700_000 + i, start + timedelta(minutes=10 * i), 2000, "0.5") for i in range(30)]
    for i in range(0, 30, 10):  # pages, each with its own transaction, as the ingestor stores them
        with db.transaction() as conn:
            db.insert_blocks(blocks[i : i + 10], conn=conn)
    assert _stored_days(db, "BTC") == {}  # marked, not yet rebuilt: a crash here loses no mark
    with db.engine.connect() as conn:
        pending = conn.execute(select(ChainDayPending.day).order_by(ChainDayPending.day)).scalars().all()
    assert pending == [date(2026, 5, 1), date(2026, 5, 2)]
    assert db.refresh_chain_rollups("BTC") == 2
    assert _stored_days(db, "BTC") == _recomputed_days(blocks)
    assert db.refresh_chain_rollups("BTC") == 0


def test_reading_candles_reads_only_the_candles_table(db):
    db.insert_price_points(_points("bitcoin", 24 * 10, seed=41))
    statements: list[str] = []

    def capture(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        candles = db.get_candles(
            coin_id="bitcoin", interval="1w", start=T0 - timedelta(days=365), end=T0 + timedelta(days=30)
        )
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    queries = [s for s in statements if s.lstrip().upper().startswith("SELECT")]  # not connection pragmas
    assert candles
    assert queries
    assert all("price_candles" in q and "price_points" not in q for q in queries)


def _concurrently(db, first, second) -> None:
    """`first(conn)` in an open transaction, then `second()` in a thread while it is open; the first
    commits only after giving the second half a second to run into it."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            second()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    with db.transaction() as conn:
        first(conn)
        thread = threading.Thread(target=run)
        thread.start()
        thread.join(timeout=0.5)  # a second writer of the same series waits here for the first to commit
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert not errors, errors


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_writers_of_one_series_at_once_leave_the_candles_a_rebuild_would_make(db):
    points = _points("bitcoin", 24 * 3, seed=51)
    spike = {**points[10], "price": Decimal("99999")}  # day 1, only in the first writer's transaction
    late = {**points[40], "price": Decimal("1")}  # day 2, the second writer's
    _concurrently(
        db,
        lambda conn: db.insert_price_points([*points[:24], spike], conn=conn),
        lambda: db.insert_price_points([*points[24:], late]),
    )
    kept = {i: _candles(db, i) for i in ("1d", "1w")}
    db.rebuild_rollups()
    assert {i: _candles(db, i) for i in ("1d", "1w")} == kept
    assert max(c.high for c in kept["1w"]) == Decimal("99999")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_writers_of_one_coins_closes_at_once_leave_the_analytics_a_rebuild_would_make(db):
    rows = _prices("bitcoin", 40, seed=52)
    db.insert_market_prices(rows[:30])
    peak = [{**rows[5], "price_usd": rows[5]["price_usd"] * 10}]  # an old day becomes the peak
    _concurrently(
        db,
        lambda conn: db.insert_market_prices(peak, conn=conn),
        lambda: db.insert_market_prices(rows[30:]),
    )
    _assert_matches(db, "bitcoin", [*rows[:5], *peak, *rows[6:]])


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_blocks_stored_while_their_day_is_rebuilt_keep_the_day_marked(db):
    start = datetime(2026, 5, 3, 10, tzinfo=UTC)
    first = [_block("BTC", 710_000 + i, start + timedelta(minutes=10 * i), 100, None) for i in range(5)]
    later = [_block("BTC", 710_005 + i, start + timedelta(minutes=50 + 10 * i), 100, None) for i in range(5)]
    with db.transaction() as conn:
        db.insert_blocks(first, conn=conn)
    _concurrently(
        db,
        _refresh_pending,
        lambda: _store_page(db, later),
    )
    db.refresh_chain_rollups("BTC")
    assert _stored_days(db, "BTC") == _recomputed_days(first + later)


def _refresh_pending(conn) -> None:
    from pipeline.store.rollups import refresh_pending_chain_days

    refresh_pending_chain_days(conn, "BTC")


def _store_page(db, blocks: list[dict]) -> None:
    with db.transaction() as conn:
        db.insert_blocks(blocks, conn=conn)


def test_a_rebuild_after_raw_rows_were_deleted_by_hand_drops_what_they_fed(db):
    points = _points("bitcoin", 48, seed=61)
    spike = {**points[30], "price": Decimal("99999")}
    db.insert_price_points([*points[:30], spike, *points[31:]])
    rows = _prices("bitcoin", 35, seed=62)
    db.insert_market_prices(rows)
    with db.transaction() as conn:
        conn.execute(delete(PricePoint).where(PricePoint.ts == spike["ts"]))
        conn.execute(delete(MarketPrice).where(MarketPrice.price_date == rows[-1]["price_date"]))
    db.rebuild_rollups()
    assert max(c.high for c in _candles(db, "1d")) < Decimal("99999")
    assert len(_candles(db, "1h")) == 47
    _assert_matches(db, "bitcoin", rows[:-1])
