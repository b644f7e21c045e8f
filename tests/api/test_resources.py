"""Every /v1 resource against the database it reads, on SQLite and PostgreSQL: the same rows, in the
documented order, amounts as exact decimal text, times in UTC, and `data_as_of` the newest change."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pipeline.columns import decimal_to_text
from pipeline.database import DatabaseService
from pipeline.services import analytics, coverage, gapfill, incidents
from pipeline.services.freshness import freshness_report
from pipeline.store import queries
from pipeline.store.quality import select_findings
from tests.api.conftest import walk
from tests.api.seed import BIG_WEI, BTC_HEIGHTS, ETH_ADDRESS, ETH_HEIGHTS, TINY_PRICE, Seeded
from tests.support.factories import finished_run


@pytest.fixture
def db(shared_db: tuple[DatabaseService, Seeded]) -> DatabaseService:
    """The shared seeded database (these tests only read)."""
    return shared_db[0]


@pytest.fixture
def seeded(shared_db: tuple[DatabaseService, Seeded]) -> Seeded:
    """What the shared database holds."""
    return shared_db[1]


def text(value: Decimal | int | None) -> str | None:
    """An amount as the API must send it."""
    if value is None:
        return None
    return str(value) if isinstance(value, int) else decimal_to_text(value)


def when(value: str | None) -> datetime | None:
    """A time the API sent, parsed (and checked to be UTC)."""
    if value is None:
        return None
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


def test_coins(client: TestClient, db: DatabaseService, seeded: Seeded):
    body = client.get("/v1/coins").json()
    stored = db.get_coins()
    assert [c["symbol"] for c in body["data"]] == sorted(c.symbol for c in stored)
    btc = next(c for c in body["data"] if c["symbol"] == "BTC")
    assert btc["decimals"] == 8
    assert btc["block_bookmark"] == BTC_HEIGHTS[-1]
    eth = next(c for c in body["data"] if c["symbol"] == "ETH")
    assert eth["decimals"] == 18
    assert eth["chain_tip_height"] == ETH_HEIGHTS[-1]
    assert when(body["data_as_of"]) == db.coins_updated_at()
    for name in ("BTC", "btc", "bitcoin", "Bitcoin"):
        assert client.get(f"/v1/coins/{name}").json()["data"] == btc
    pages = walk(client, "/v1/coins", limit=1)
    assert [c["symbol"] for c in pages] == [c["symbol"] for c in body["data"]]


def test_daily_prices_are_the_seeds_market_prices(client: TestClient, db: DatabaseService, seeded: Seeded):
    for coin in ("bitcoin", "dogecoin"):
        stored = db.get_market_prices(coin_id=coin, limit=None)
        listed = walk(client, f"/v1/coins/{coin}/prices/daily", limit=7)
        assert listed == [
            {
                "coin_id": p.coin_id,
                "price_date": p.price_date.isoformat(),
                "price_usd": text(p.price_usd),
                "volume_usd": text(p.volume_usd),
                "market_cap_usd": text(p.market_cap_usd),
            }
            for p in stored
        ]
    doge = client.get("/v1/coins/DOGE/prices/daily", params={"limit": 1}).json()
    assert Decimal(doge["data"][0]["price_usd"]) >= TINY_PRICE
    assert "E" not in doge["data"][0]["price_usd"]
    first, last = seeded.today - timedelta(days=30), seeded.today - timedelta(days=10)
    window = walk(client, "/v1/coins/bitcoin/prices/daily", start=first.isoformat(), end=last.isoformat())
    expected = db.get_market_prices(coin_id="bitcoin", start_date=first, end_date=last, limit=None)
    assert [p["price_date"] for p in window] == [p.price_date.isoformat() for p in expected]
    page = client.get("/v1/coins/bitcoin/prices/daily", params={"limit": 5}).json()
    dates = [stored.price_date for stored in expected[:0]] or [p["price_date"] for p in page["data"]]
    assert when(page["data_as_of"]) == db.market_prices_updated_at(
        "bitcoin", datetime.fromisoformat(dates[-1]).date(), datetime.fromisoformat(dates[0]).date()
    )


@pytest.mark.parametrize("granularity", ["5m", "hourly", "daily"])
@pytest.mark.parametrize("quote", ["usd", "eur"])
def test_price_points(client: TestClient, db: DatabaseService, seeded: Seeded, granularity: str, quote: str):
    start = seeded.now - timedelta(days=40 if granularity == "daily" else 4)
    end = seeded.now
    stored = db.get_price_points(
        coin_id="bitcoin", start=start, end=end, quote=quote, granularity=granularity
    )
    stored = [p for p in stored if start <= p.ts <= end]  # the daily USD read goes by whole days
    listed = walk(
        client,
        "/v1/coins/btc/prices/points",
        quote=quote,
        granularity=granularity,
        start=start.isoformat(),
        end=end.isoformat(),
        limit=10,
    )
    assert [(when(p["ts"]), p["price"], p["volume_24h"], p["sampling"]) for p in listed] == [
        (p.ts, text(p.price), text(p.volume_24h), p.sampling) for p in stored
    ]
    if granularity != "daily" or quote == "usd":
        assert listed, "the seed holds points of this series"


def test_price_points_default_to_the_latest_buckets(client: TestClient, db: DatabaseService, seeded: Seeded):
    body = client.get("/v1/coins/bitcoin/prices/points", params={"limit": 24}).json()
    hours = {when(p["ts"]).replace(minute=0, second=0) for p in body["data"]}  # type: ignore[union-attr]
    assert len(body["data"]) == len(hours) <= 24
    newest = db.get_latest_price("bitcoin")
    assert newest is not None
    assert when(body["data"][-1]["ts"]) == newest.ts
    assert body["next_cursor"] is None


def test_latest_price(client: TestClient, db: DatabaseService, seeded: Seeded):
    for coin, quote in (("bitcoin", "usd"), ("BTC", "eur"), ("doge", "usd")):
        body = client.get(f"/v1/coins/{coin}/prices/latest", params={"quote": quote}).json()
        coin_id = db.get_coins() and {"BTC": "bitcoin", "doge": "dogecoin"}.get(coin, coin)
        point = db.get_latest_price(coin_id, quote)
        assert point is not None
        assert body["data"]["price"] == text(point.price)
        assert when(body["data"]["ts"]) == point.ts
        assert when(body["data_as_of"]) is not None
    assert client.get("/v1/coins/doge/prices/latest").json()["data"]["price"] == "0.000000000001"
    empty = client.get("/v1/coins/ethereum/prices/latest").json()
    assert empty == {"data": None, "data_as_of": None}


@pytest.mark.parametrize("interval", ["1h", "4h", "1d", "1w"])
def test_candles(client: TestClient, db: DatabaseService, seeded: Seeded, interval: str):
    start, end = seeded.now - timedelta(days=30), seeded.now
    stored = db.get_candles(coin_id="bitcoin", interval=interval, start=start, end=end, quote="eur")
    listed = walk(
        client, "/v1/coins/bitcoin/candles", quote="eur", interval=interval, start=start.isoformat(),
        end=end.isoformat(), limit=7,
    )  # fmt: skip
    assert stored
    assert [
        (when(c["start"]), c["open"], c["high"], c["low"], c["close"], c["volume"], c["samples"])
        for c in listed
    ] == [
        (c.start, text(c.open), text(c.high), text(c.low), text(c.close), text(c.volume), c.samples)
        for c in stored
    ]


def test_blocks(client: TestClient, db: DatabaseService, seeded: Seeded):
    stored = db.blocks_between("ETH", 0, 2**62)
    listed = walk(client, "/v1/coins/ethereum/blocks", limit=3)
    assert [b["height"] for b in listed] == [b.block_id for b in reversed(stored)]
    top = listed[0]
    assert top["fee_total"] == str(BIG_WEI + ETH_HEIGHTS[-1])  # exact beyond 2^64, as a string
    assert top["hash"] == stored[-1].hash
    assert when(top["time"]) == stored[-1].time
    btc = walk(client, "/v1/coins/BTC/blocks", limit=7)
    assert [b["height"] for b in btc] == sorted((h for h in BTC_HEIGHTS if h != 800_010), reverse=True)
    assert btc[0]["fee_total_usd"] == "12.34567890123456789"
    assert btc[0]["difficulty"] == "123456789012.5"
    one = client.get(f"/v1/coins/btc/blocks/{BTC_HEIGHTS[5]}").json()
    assert one["data"] == next(b for b in btc if b["height"] == BTC_HEIGHTS[5])
    assert when(one["data_as_of"]) is not None
    start = stored[3].time
    windowed = walk(client, "/v1/coins/ETH/blocks", start=start.isoformat())
    assert [b["height"] for b in windowed] == [b.block_id for b in reversed(stored) if b.time >= start]


def test_transactions(client: TestClient, db: DatabaseService, seeded: Seeded):
    listed = walk(client, "/v1/coins/ETH/transactions", limit=3)
    stored = [db.get_transaction("ETH", h) for h in seeded.eth_tx]  # by hash, with updated_at
    expected = sorted((s.record for s in stored if s), key=lambda t: (-t.block_id, t.tx_hash))
    assert [t["tx_hash"] for t in listed] == [t.tx_hash for t in expected]
    assert {t["value"] for t in listed} == {str(BIG_WEI), str(2 * BIG_WEI)}
    assert all(isinstance(t["fee"], str) for t in listed)
    btc = walk(client, "/v1/coins/bitcoin/transactions", limit=4)
    assert sorted(t["tx_hash"] for t in btc) == sorted(seeded.btc_tx)
    assert len(btc) == len({t["tx_hash"] for t in btc})
    height = ETH_HEIGHTS[4]
    in_block = walk(client, f"/v1/coins/eth/blocks/{height}/transactions", limit=1)
    assert [t["tx_hash"] for t in in_block] == sorted(t.tx_hash for t in expected if t.block_id == height)
    tx = expected[0]
    for name in (tx.tx_hash, tx.tx_hash.removeprefix("0x"), tx.tx_hash.upper().replace("0X", "0x")):
        body = client.get(f"/v1/coins/ETH/transactions/{name}").json()
        assert body["data"]["tx_hash"] == tx.tx_hash
        assert body["data"]["value"] == text(tx.value)


def test_addresses(client: TestClient, db: DatabaseService, seeded: Seeded):
    for symbol in ("BTC", "ETH"):
        stored = queries.addresses(db, symbol)
        listed = walk(client, f"/v1/coins/{symbol}/addresses", limit=1)
        assert [(a["address"], a["balance"], a["balance_native"]) for a in listed] == [
            (a.address, text(a.balance), str(a.balance_native)) for a in stored
        ]
    eth = client.get("/v1/coins/ETH/addresses").json()["data"][0]
    assert eth["address"] == ETH_ADDRESS
    assert eth["balance_native"] == str(BIG_WEI)
    assert Decimal(eth["balance"]) == Decimal(BIG_WEI).scaleb(-18)


def test_runs(client: TestClient, db: DatabaseService, seeded: Seeded):
    stored = db.get_ingestion_logs(limit=None)
    listed = walk(client, "/v1/runs", limit=2)
    assert [r["id"] for r in listed] == [r.id for r in stored]
    assert [r["status"] for r in listed] == [r.status.value for r in stored]
    failed = walk(client, "/v1/runs", status="failed")
    assert [r["id"] for r in failed] == [seeded.runs["failed"]]
    several = walk(client, "/v1/runs", status=["failed", "partial"])
    assert {r["id"] for r in several} == {seeded.runs["failed"], seeded.runs["partial"]}
    coingecko = walk(client, "/v1/runs", source="coingecko", coin="BTC")
    assert {r["id"] for r in coingecko} == {seeded.runs["failed"], seeded.runs["rerun"]}
    assert walk(client, "/v1/runs", since=(seeded.now + timedelta(days=1)).isoformat()) == []
    detail = client.get(f"/v1/runs/{seeded.runs['failed']}").json()
    assert detail["data"]["status"] == "failed"
    assert detail["data"]["error_class"] == "RetriableSourceError"
    assert [c["id"] for c in detail["data"]["children"]] == [seeded.runs["rerun"]]
    assert [c.id for c in db.get_child_runs(seeded.runs["failed"])] == [seeded.runs["rerun"]]
    assert when(detail["data_as_of"]) == db.runs_updated_at([seeded.runs["failed"], seeded.runs["rerun"]])


def test_findings(client: TestClient, db: DatabaseService, seeded: Seeded):
    stored = select_findings(db, limit=100)
    listed = walk(client, "/v1/quality/findings", limit=1)
    assert [(f["id"], f["check_name"], f["severity"]) for f in listed] == [
        (f["id"], f["check_name"], f["severity"]) for f in stored
    ]
    assert [f["check_name"] for f in walk(client, "/v1/quality/findings", coin="ethereum")] == [
        "fee_mismatch"
    ]
    assert [f["check_name"] for f in walk(client, "/v1/quality/findings", severity="warn")] == ["price_spike"]
    assert len(walk(client, "/v1/quality/findings", run=seeded.runs["partial"])) == 2


def test_incidents(client: TestClient, db: DatabaseService, seeded: Seeded):
    finished_run(db, "failed", data_type="transactions")  # a unit failing, not made good yet
    incidents.evaluate(db, db.settings, kinds=["unit"])
    stored = db.get_incidents()
    assert stored
    listed = client.get("/v1/incidents").json()
    assert [(i["id"], i["kind"], i["key"], i["level"]) for i in listed["data"]] == [
        (i.id, i.kind, i.key, i.level) for i in stored
    ]
    assert when(listed["data_as_of"]) == max(i.opened_at for i in stored)
    opened = client.get("/v1/incidents", params={"open": "true"}).json()["data"]
    assert [i["id"] for i in opened] == [i.id for i in db.get_incidents(open_only=True)]
    assert client.get("/v1/incidents", params={"limit": 0}).status_code == 400


def _json(model: Any) -> Any:
    return model.model_dump(mode="json")


def test_coverage_and_gaps(client: TestClient, db: DatabaseService, seeded: Seeded):
    settings = db.settings
    start, end = gapfill.coverage_window(settings)
    report = client.get("/v1/coverage").json()["data"]
    coins = {c.symbol: c for c in db.get_coins(active_only=True)}
    assert [c["coin"] for c in report["coins"]] == list(coins)
    btc = next(c for c in report["coins"] if c["coin"] == "BTC")
    assert btc["prices"] == _json(coverage.price_coverage(db, settings, coins["BTC"], start, end))
    assert btc["blocks"] == _json(coverage.block_coverage(db, settings, coins["BTC"]))
    assert btc["blocks"]["holes"] == [{"start": 800_010, "end": 800_010}]
    one = client.get("/v1/coins/bitcoin/coverage", params={"start": "2026-01-01", "end": "2026-01-31"})
    assert one.json()["data"]["prices"]["start"] == "2026-01-01"
    gaps = {c["coin"]: c for c in client.get("/v1/gaps").json()["data"]["coins"]}
    assert gaps["BTC"]["block_holes"] == [{"start": 800_010, "end": 800_010}]
    assert [_json(r) for r in coverage.price_coverage(db, settings, coins["BTC"], start, end).gaps] == gaps[
        "BTC"
    ]["price_days"]
    hours = coverage.hourly_window_gaps(db, settings, coins["BTC"], "usd")
    assert sum(r["hours"] for r in gaps["BTC"]["missing_hours"]["usd"]) == len(hours)
    plan = client.get("/v1/gaps/plan").json()["data"]
    assert plan == _json(gapfill.plan_fill(db, settings, list(coins.values())))


def test_freshness_health_and_stats(client: TestClient, db: DatabaseService, seeded: Seeded):
    freshness = client.get("/v1/freshness").json()
    assert freshness["data"] == [
        _json(f) for f in freshness_report(db.get_coins(active_only=True), db.settings)
    ]
    health = client.get("/v1/health").json()["data"]
    assert health["database"]["ok"] is True
    assert health["database"]["dialect"] == db.dialect
    assert health["scheduler_alive"] is True
    assert [w["worker_id"] for w in health["workers"]] == ["api-test:1"]
    stats = client.get("/v1/stats").json()
    expected = _json(db.get_database_stats())
    for name in ("total_blocks", "total_transactions", "total_prices", "total_runs", "block_coverage"):
        assert stats["data"][name] == expected[name]
    assert stats["data"]["total_transactions"] == len(seeded.btc_tx) + len(seeded.eth_tx)
    assert when(stats["data_as_of"]) == db.pipeline_updated_at()


def test_analytics(client: TestClient, db: DatabaseService, seeded: Seeded):
    first, last = seeded.today - timedelta(days=59), seeded.today
    stored = db.get_daily_price_stats(["bitcoin"], first, last)
    listed = walk(
        client, "/v1/coins/BTC/analytics/daily", start=first.isoformat(), end=last.isoformat(), limit=9
    )
    assert [(s["day"], s["close"], s["daily_return"], s["drawdown"]) for s in listed] == [
        (s.day.isoformat(), text(s.close), text(s.daily_return), text(s.drawdown)) for s in stored
    ]
    assert len(stored) == 57  # 59 days back (the seed has none today), less the two-day gap
    chain = db.get_chain_daily_stats("ETH", first, last)
    days = walk(client, "/v1/coins/eth/analytics/chain-days", start=first.isoformat(), end=last.isoformat())
    assert [(d["day"], d["blocks"], d["fees_native"]) for d in days] == [
        (c.day.isoformat(), c.blocks, text(c.fees_native)) for c in chain
    ]
    assert chain
    assert int(days[-1]["fees_native"]) > 2**64
    body = client.get(
        "/v1/analytics/correlation", params={"coin": ["bitcoin", "ETH"], "start": first.isoformat()}
    ).json()["data"]
    frame = analytics.return_correlation(
        db, ["bitcoin", "ethereum"], first, gapfill.coverage_window(db.settings)[1]
    )
    assert body["coins"] == ["bitcoin", "ethereum"]
    for i, a in enumerate(body["coins"]):
        for j, b in enumerate(body["coins"]):
            value = float(frame.loc[a, b])
            assert (body["matrix"][i][j] is None) == math.isnan(value)
            if not math.isnan(value):
                assert body["matrix"][i][j] == pytest.approx(value)


def test_times_are_utc_and_amounts_strings(client: TestClient, seeded: Seeded):
    tx = client.get("/v1/coins/ETH/transactions", params={"limit": 1}).json()["data"][0]
    assert tx["time"].endswith("Z")
    assert isinstance(tx["value"], str)
    assert isinstance(tx["block_id"], int)
    run = client.get("/v1/runs", params={"limit": 1}).json()["data"][0]
    assert run["started_at"].endswith("Z")
    assert datetime.fromisoformat(run["started_at"]).tzinfo == UTC
