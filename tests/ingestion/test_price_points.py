"""Price points and candles end to end: the CoinGecko ingestor over real HTTP against the simulator (demo
plan, which refuses `interval=hourly|5m`, so every run here also proves we never send them), into
SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import delete

from pipeline import rollups
from pipeline.config import get_settings
from pipeline.ingestion.coingecko import CoinGeckoIngestor
from pipeline.ingestion.replay import Replayer
from pipeline.models import PricePoint
from pipeline.simulator import Simulator, SimulatorConfig
from tests.support.cli import in_process_cli
from tests.support.databases import migrated_database
from tests.support.settings import make_settings

pytestmark = pytest.mark.slow_on_postgresql

CG_KEY = "CGKEY-SECRET-7654321"
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def sim():
    config = SimulatorConfig(tip_growth=False, coingecko_key=CG_KEY, coingecko_plan="demo")
    with Simulator(config) as simulator:
        yield simulator


def _ingestor(sim: Simulator, database_url: str, **overrides: object):
    settings = make_settings(
        database_url,
        COINGECKO_BASE_URL=sim.coingecko_url,
        COINGECKO_API_KEY=CG_KEY,
        COINGECKO_API_PLAN="demo",
        **overrides,
    )
    return settings, migrated_database(settings)


@pytest.fixture
def gecko(sim, database_url):
    settings, database = _ingestor(sim, database_url, HOURLY_DAYS=30, QUOTE_CURRENCIES="usd,eur")
    with database as db:
        yield CoinGeckoIngestor(settings=settings, db=db)


def _exact(value: float) -> Decimal:
    # The simulator sends floats; JSON carries their shortest repr, which is what must be stored.
    return Decimal(repr(value))


def test_first_run_is_one_request_of_hourly_points_with_exact_values(sim, gecko):
    coin = gecko.coin("ethereum")
    result = gecko.ingest_latest_points(coin, "usd")
    assert result.status == "success", result.error_message
    assert result.requests_made == 1
    now = datetime.now(UTC)
    points = gecko.db.get_price_points(
        coin_id="ethereum", start=now - timedelta(days=31), end=now, granularity="5m"
    )
    assert {p.sampling for p in points} == {"1h"}
    stamps = [p.ts for p in points]
    assert stamps == sorted(stamps)
    assert all(b - a == HOUR for a, b in zip(stamps, stamps[1:], strict=False))
    assert now - stamps[-1] < 2 * HOUR
    assert timedelta(days=30) <= now - stamps[0] <= timedelta(days=30, hours=1)
    for point in points[:: len(points) // 7]:
        price, _cap, volume = sim.expected_price("ethereum", point.ts)
        assert point.price == _exact(price)
        assert point.volume_24h == _exact(volume)


def test_the_default_ninety_days_are_one_request_and_daily_points_never_replace_hourly_ones(
    sim, database_url
):
    settings, database = _ingestor(sim, database_url)  # HOURLY_DAYS=90, the default
    with database as db:
        gecko = CoinGeckoIngestor(settings=settings, db=db)
        coin = gecko.coin("dogecoin")
        first = gecko.ingest_latest_points(coin, "eur")
        assert (first.status, first.requests_made) == ("success", 1), first.error_message
        today = datetime.now(UTC).date()
        days = (today - timedelta(days=5), today - timedelta(days=2))
        hourly = db.get_price_points(coin_id="dogecoin", quote="eur", start=days[0], end=days[1])
        daily = gecko.ingest_price_points(coin, *days, quote="eur", granularity="daily")
        assert daily.requests_made == 0  # the midnight points are already held (as hourly points)
        assert db.get_price_points(coin_id="dogecoin", quote="eur", start=days[0], end=days[1]) == hourly
        midnights = db.get_price_points(
            coin_id="dogecoin", quote="eur", start=days[0], end=days[1], granularity="daily"
        )
        assert [p.ts.date() for p in midnights] == [days[0] + timedelta(days=i) for i in range(4)]


def test_the_next_run_is_one_request_and_stores_the_latest_five_minute_price(sim, gecko):
    coin = gecko.coin("bitcoin")
    gecko.ingest_latest_points(coin, "usd")
    again = gecko.ingest_latest_points(coin, "usd")
    assert again.status == "success", again.error_message
    assert again.requests_made == 1
    latest = gecko.db.get_latest_price("bitcoin", "usd")
    assert latest is not None
    assert latest.sampling == "5m"
    assert latest.ts.timestamp() % 300 == 0
    assert datetime.now(UTC) - latest.ts < timedelta(minutes=10)
    assert latest.price == _exact(sim.expected_price("bitcoin", latest.ts)[0])
    # The daily snapshot table keeps its meaning: nothing intraday lands in it.
    assert gecko.db.get_market_prices(coin_id="bitcoin") == []


def test_other_quotes_carry_their_own_values(sim, gecko):
    coin = gecko.coin("ethereum")
    assert gecko.ingest_latest_points(coin, "eur").status == "success"
    now = datetime.now(UTC)
    eur = gecko.db.get_price_points(coin_id="ethereum", quote="eur", start=now - timedelta(days=2), end=now)
    usd = gecko.db.get_price_points(coin_id="ethereum", quote="usd", start=now - timedelta(days=2), end=now)
    assert eur
    assert not usd
    point = eur[len(eur) // 2]
    assert point.price == _exact(sim.expected_price("ethereum", point.ts, "eur")[0])
    candles = gecko.db.get_candles(
        coin_id="ethereum", interval="1d", quote="eur", start=now - timedelta(days=3), end=now
    )
    assert candles
    assert all(c.quote == "eur" for c in candles)


def test_a_year_of_three_coins_costs_at_most_fifteen_requests(sim, database_url):
    settings, database = _ingestor(sim, database_url, HOURLY_DAYS=365)
    with database as db:
        gecko = CoinGeckoIngestor(settings=settings, db=db)
        spent = 0
        for coin_id in ("bitcoin", "ethereum", "dogecoin"):
            result = gecko.ingest_latest_points(gecko.coin(coin_id), "usd")
            assert result.status == "success", result.error_message
            spent += result.requests_made
        assert spent <= 15
        now = datetime.now(UTC)
        start = now - timedelta(days=364)
        hours = db.price_point_hours("dogecoin", "usd", rollups.bucket_start(start, "1h"), now - HOUR)
        assert len(hours) == int((now - HOUR - rollups.bucket_start(start, "1h")) / HOUR) + 1


def test_missing_hours_are_fetched_in_the_fewest_windows(sim, gecko):
    coin = gecko.coin("dogecoin")
    gecko.ingest_latest_points(coin, "usd")
    now = datetime.now(UTC)
    holes = [rollups.bucket_start(now - timedelta(days=d, hours=3), "1h") for d in (5, 6, 20)]
    with gecko.db.transaction() as conn:
        for hole in holes:
            conn.execute(
                delete(PricePoint).where(
                    PricePoint.coin_id == "dogecoin", PricePoint.ts >= hole, PricePoint.ts < hole + HOUR
                )
            )
    result = gecko.ingest_price_points(coin, (now - timedelta(days=25)).date(), now.date())
    assert result.status == "success", result.error_message
    assert result.requests_made == 1  # three holes within 90 days: one window
    assert result.records_inserted == 3
    for hole in holes:
        assert gecko.db.price_point_hours("dogecoin", "usd", hole, hole + HOUR) == {hole}


def test_a_failed_price_point_run_replays_its_slice(sim, gecko):
    coin = gecko.coin("bitcoin")
    now = datetime.now(UTC)
    first = gecko.ingest_price_points(
        coin, (now - timedelta(days=3)).date(), (now - timedelta(days=2)).date()
    )
    assert first.status == "success"
    run = gecko.db.get_ingestion_logs(source="coingecko", limit=1)[0]
    assert run.data_type == "price_points"
    with gecko.db.transaction() as conn:
        conn.execute(delete(PricePoint).where(PricePoint.coin_id == "bitcoin"))
    replayer = Replayer(gecko.settings, gecko.db, coingecko=gecko)
    again = replayer.replay(run)
    assert again is not None
    assert again.status == "success"
    assert again.records_inserted == 48


def test_candles_follow_the_points_they_are_built_from(sim, gecko):
    coin = gecko.coin("bitcoin")
    gecko.ingest_latest_points(coin, "usd")
    now = datetime.now(UTC)
    start = now - timedelta(days=30)
    points = gecko.db.get_price_points(coin_id="bitcoin", start=start, end=now, granularity="5m")
    days = gecko.db.get_candles(coin_id="bitcoin", interval="1d", start=start - timedelta(days=8), end=now)
    weeks = gecko.db.get_candles(coin_id="bitcoin", interval="1w", start=start - timedelta(days=7), end=now)
    hours = gecko.db.get_candles(coin_id="bitcoin", interval="1h", start=start, end=now)
    assert len(hours) == len({rollups.bucket_start(p.ts, "1h") for p in points})
    for candle in [*hours, *days, *weeks]:
        assert candle.low <= min(candle.open, candle.close) <= max(candle.open, candle.close) <= candle.high
    by_day: dict[object, list] = {}
    for point in points:
        by_day.setdefault(point.ts.date(), []).append(point)
    for candle in days:
        if candle.start < start:
            continue
        inside = by_day[candle.start.date()]
        assert candle.close == inside[-1].price  # the day's last point
        assert candle.sampling in ("1h", "5m")
    for week in weeks:
        parts = [c for c in days if week.start <= c.start < week.start + timedelta(days=7)]
        assert week.open == parts[0].open
        assert week.close == parts[-1].close
        assert week.high == max(c.high for c in parts)
        assert week.low == min(c.low for c in parts)
        assert week.volume == sum((c.volume for c in parts), Decimal(0))


@pytest.fixture
def cli(monkeypatch, capsys, tmp_path):
    run = in_process_cli(monkeypatch, capsys, tmp_path)
    yield run
    get_settings.cache_clear()


def test_cli_ingests_hourly_points_in_each_quote_and_rebuilds_rollups(sim, gecko, cli):
    env = {
        "DATABASE_URL": gecko.settings.DATABASE_URL,
        "COINGECKO_BASE_URL": sim.coingecko_url,
        "COINGECKO_API_KEY": CG_KEY,
        "COINGECKO_API_PLAN": "demo",
    }
    today = datetime.now(UTC).date()
    first, last = today - timedelta(days=4), today - timedelta(days=3)
    args = ["ingest", "coingecko", "--granularity", "hourly", "--quotes", "usd,eur", "--coins", "ethereum"]
    done = cli(*args, "--start", first.isoformat(), "--end", last.isoformat(), **env)
    assert done.code == 0, done
    for quote in ("usd", "eur"):
        points = gecko.db.get_price_points(coin_id="ethereum", quote=quote, start=first, end=last)
        assert len(points) == 48
        candles = gecko.db.get_candles(coin_id="ethereum", quote=quote, interval="1d", start=first, end=last)
        assert [c.start.date() for c in candles] == [first, last]
    daily = cli(
        *args[:3],
        "daily",
        "--quotes",
        "eur",
        "--coins",
        "ethereum",
        "--start",
        first.isoformat(),
        "--end",
        last.isoformat(),
        **env,
    )
    assert daily.code == 0, daily
    eur_days = gecko.db.get_price_points(
        coin_id="ethereum", quote="eur", start=first, end=last, granularity="daily"
    )
    assert [p.ts.date() for p in eur_days] == [first, last]
    assert eur_days[0].price == _exact(sim.expected_price("ethereum", eur_days[0].ts, "eur")[0])
    rebuilt = cli("rebuild-rollups", **env)
    assert rebuilt.code == 0, rebuilt
    assert "price_candles:" in rebuilt.out


def test_gaps_and_fill_gaps_name_missing_hours_and_plan_one_request_per_window(sim, gecko, cli):
    env = {
        "DATABASE_URL": gecko.settings.DATABASE_URL,
        "COINGECKO_BASE_URL": sim.coingecko_url,
        "COINGECKO_API_KEY": CG_KEY,
        "COINGECKO_API_PLAN": "demo",
        "HOURLY_DAYS": 30,
        "COINS": "dogecoin",
    }
    coin = gecko.coin("dogecoin")
    gecko.ingest_latest_points(coin, "usd")
    now = datetime.now(UTC)
    hole = rollups.bucket_start(now - timedelta(days=3), "1h")
    with gecko.db.transaction() as conn:
        conn.execute(
            delete(PricePoint).where(
                PricePoint.coin_id == "dogecoin", PricePoint.ts >= hole, PricePoint.ts < hole + 3 * HOUR
            )
        )
    gaps = cli("gaps", "--coins", "dogecoin", **env)
    hourly = [line for line in gaps.out.splitlines() if line.startswith("hourly")]
    assert gaps.code == 1
    assert hourly == [
        f"hourly   dogecoin/usd {hole:%Y-%m-%d %H:00}..{hole + 2 * HOUR:%Y-%m-%d %H:00} missing (3 hours)"
    ]
    plan = cli("fill-gaps", "--coins", "dogecoin", "--dry-run", **env)
    assert plan.code == 0, plan
    assert f"hourly prices dogecoin/usd {hole.date()}..{(hole + 2 * HOUR).date()}: 1 request(s)" in plan.out


def test_a_ninety_day_window_late_in_an_hour_stays_hourly(sim, database_url):
    """At 58 minutes past the hour, the first run's window of 90 days back from now plus the few minutes
    allowed for the source's clock was over 90 days, and CoinGecko (and the simulator) answered it with
    daily points: a day of hours stored instead of 90 days. The window now stops at 90 days."""
    settings, database = _ingestor(sim, database_url, HOURLY_DAYS=90)
    late = rollups.bucket_start(datetime.now(UTC), "1h") - timedelta(minutes=2)  # hh:58 of the last hour
    with database as db:
        gecko = CoinGeckoIngestor(settings=settings, db=db, clock=lambda: late)
        result = gecko.ingest_latest_points(gecko.coin("dogecoin"), "usd")
        assert result.status == "success", result.error_message
        assert result.requests_made == 1
        first = rollups.bucket_start(late - timedelta(days=90) + HOUR, "1h")
        hours = db.price_point_hours("dogecoin", "usd", first, late - HOUR)
        assert len(hours) == int((late - HOUR - first) / HOUR) + 1
