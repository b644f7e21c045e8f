"""A small, deterministic populated database for the dashboard tests (and the browser test).

Everything goes through `DatabaseService.insert_*` except the run log rows, which are written as the
scheduler would leave them, through `db.session_factory.begin()`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import partial

from pipeline.database import DatabaseService
from pipeline.models import DataIngestionLog
from tests.support import factories

PRICE_DAYS = 120
BTC_GAP = (30, 28)  # days ago: bitcoin has no price from today-30 to today-28
BLOCK_GAP_DAYS = (20, 19)  # days ago with no bitcoin blocks
BTC_TIP = 850_000
ETH_TIP = 20_000_000
BTC_ADDRESS = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"
ETH_ADDRESS = "0x00000000219ab540356cbb839cbe05303d7705fa"
ETH_BALANCE_WEI = 1_234_567_890_123_456_789_012
FAILED_ERROR = (
    "HTTP 429 Too Many Requests from https://api.coingecko.com/api/v3/coins/bitcoin/market_chart/range"
)


def _hex(*parts: object) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()


@dataclass
class Seeded:
    """Ids and facts the tests assert on."""

    today: date
    runs: dict[str, int] = field(default_factory=dict)
    btc_blocks: list[int] = field(default_factory=list)
    eth_blocks: list[int] = field(default_factory=list)


def seed_prices(db: DatabaseService, today: date) -> None:
    """120 days of prices for bitcoin, ethereum and dogecoin, with a 3-day gap for bitcoin."""
    gap = {today - timedelta(days=d) for d in range(BTC_GAP[1], BTC_GAP[0] + 1)}
    base = {"bitcoin": Decimal("60000"), "ethereum": Decimal("3000"), "dogecoin": Decimal("0.12")}
    rows = []
    for coin, price in base.items():
        for back in range(PRICE_DAYS, 0, -1):
            day = today - timedelta(days=back)
            if coin == "bitcoin" and day in gap:
                continue
            factor = Decimal(1) + Decimal(back % 17 - 8) / Decimal(100)
            rows.append(
                {
                    "coin_id": coin,
                    "price_date": day,
                    "price_usd": (price * factor).quantize(Decimal("0.000001")),
                    "volume_usd": price * 1000 * factor,
                    "market_cap_usd": price * 19_000_000,
                }
            )
    db.insert_market_prices(rows)
    with db.transaction() as conn:
        for symbol in ("BTC", "ETH", "DOGE"):
            db.set_bookmarks(conn, symbol, price_bookmark=today - timedelta(days=1))


def seed_blocks(db: DatabaseService, now: datetime, seeded: Seeded) -> None:
    """Bitcoin: a block every 2 h over 40 days with a 2-day hole; Ethereum: 60 blocks; some transactions."""
    gap_start = now - timedelta(days=BLOCK_GAP_DAYS[0])
    gap_end = now - timedelta(days=BLOCK_GAP_DAYS[1] - 1)
    btc, eth, txs = [], [], []
    for i in range(480):
        height = BTC_TIP - i
        when = now - timedelta(minutes=10) - timedelta(hours=2 * i)
        if gap_start <= when < gap_end:
            continue
        btc.append(
            {
                "coin_symbol": "BTC",
                "block_id": height,
                "hash": _hex("btc", height),
                "time": when,
                "transaction_count": 2000 + i % 50,
                "size": 1_200_000 + 1000 * (i % 30),
                "fee_total": 12_345_678 + i,
                "fee_total_usd": Decimal("7400.5"),
                "miner": "Foundry",
            }
        )
        seeded.btc_blocks.append(height)
    for i in range(60):
        height = ETH_TIP - i
        eth.append(
            {
                "coin_symbol": "ETH",
                "block_id": height,
                "hash": "0x" + _hex("eth", height),
                "time": now - timedelta(minutes=5 + 12 * i),
                "transaction_count": 150,
                "size": 90_000,
                "fee_total": 10**17 + i,
                "fee_total_usd": Decimal("300.25"),
                "gas_used": 15_000_000,
            }
        )
        seeded.eth_blocks.append(height)
    for height in seeded.btc_blocks[:10]:
        for n in range(3):
            txs.append(
                {
                    "coin_symbol": "BTC",
                    "tx_hash": _hex("btctx", height, n),
                    "block_id": height,
                    "source_id": height * 10 + n,
                    "time": now - timedelta(hours=1),
                    "fee": 2500 + n,
                    "output_total": 150_000_000,
                    "fee_usd": Decimal("1.5"),
                    "is_coinbase": n == 0,
                }
            )
    for height in seeded.eth_blocks[:5]:
        for n in range(2):
            txs.append(
                {
                    "coin_symbol": "ETH",
                    "tx_hash": "0x" + _hex("ethtx", height, n),
                    "block_id": height,
                    "source_id": height * 10 + n,
                    "time": now - timedelta(minutes=30),
                    "fee": 21_000 * 10**9,
                    "value": 10**18 + n,
                    "sender": "0x" + "1" * 40,
                    "recipient": "0x" + "2" * 40,
                }
            )
    db.insert_blocks(btc + eth)
    db.insert_transactions(txs)
    with db.transaction() as conn:
        db.set_bookmarks(conn, "BTC", block_bookmark=BTC_TIP, chain_tip_height=BTC_TIP + 3)
        db.set_bookmarks(conn, "ETH", block_bookmark=ETH_TIP, chain_tip_height=ETH_TIP + 80)


def seed_addresses(db: DatabaseService, now: datetime) -> None:
    """One watched address per chain (50 BTC, and an ETH balance with all 18 decimals)."""
    db.insert_addresses(
        [
            {
                "coin_symbol": "BTC",
                "address": BTC_ADDRESS,
                "balance": 5_000_000_000,
                "received": 5_000_000_000,
                "spent": 0,
                "balance_usd": Decimal("3000000"),
                "transaction_count": 40,
                "last_seen": now,
            },
            {
                "coin_symbol": "ETH",
                "address": ETH_ADDRESS,
                "balance": ETH_BALANCE_WEI,
                "balance_usd": Decimal("3703703.67"),
                "transaction_count": 7,
                "last_seen": now,
            },
        ]
    )


def seed_runs(db: DatabaseService, now: datetime, today: date) -> dict[str, int]:
    """Runs in every state: success, partial (with rejected samples), failed (twice, one rerun), running."""
    start, end = (today - timedelta(days=5)).isoformat(), today.isoformat()
    specs = {
        "success": {
            "source": "blockchair",
            "data_type": "blocks",
            "coin": "bitcoin",
            "status": "success",
            "started_at": now - timedelta(hours=1),
            "records_fetched": 100,
            "records_inserted": 100,
            "requests_made": 2,
            "params": {"chain": "bitcoin", "start_height": 849_900},
        },
        "partial": {
            "source": "coingecko",
            "data_type": "prices",
            "coin": "dogecoin",
            "status": "partial",
            "started_at": now - timedelta(hours=2),
            "records_fetched": 30,
            "records_inserted": 28,
            "records_rejected": 2,
            "requests_made": 1,
            "error_message": "2 records rejected (first: price 0)",
            "rejected_samples": [{"reason": "price_usd: must be > 0", "record": {"price": 0}}],
            "params": {"coin_id": "dogecoin", "start": start, "end": end},
        },
        "failed": {
            "source": "coingecko",
            "data_type": "prices",
            "coin": "bitcoin",
            "status": "failed",
            "started_at": now - timedelta(hours=3),
            "requests_made": 5,
            "retries": 4,
            "error_class": "RateLimited",
            "error_message": FAILED_ERROR,
            "params": {"coin_id": "bitcoin", "start": start, "end": end},
        },
        "old_failed": {
            "source": "blockchair",
            "data_type": "transactions",
            "coin": "ethereum",
            "status": "failed",
            "started_at": now - timedelta(hours=30),
            "error_class": "SourceUnavailable",
            "error_message": "HTTP 503 from blockchair",
            "params": {"chain": "ethereum"},
        },
        "running": {
            "source": "blockchair",
            "data_type": "blocks",
            "coin": "ethereum",
            "status": "running",
            "started_at": now - timedelta(minutes=1),
            "params": {"chain": "ethereum"},
        },
    }
    ids = {}
    with db.session_factory.begin() as session:
        for name, values in specs.items():
            finished = None if values["status"] == "running" else values["started_at"] + timedelta(seconds=3)
            row = DataIngestionLog(trigger="schedule", finished_at=finished, duration_seconds=3.0, **values)
            session.add(row)
            session.flush()
            ids[name] = row.id
        child = DataIngestionLog(
            source="blockchair",
            data_type="transactions",
            coin="ethereum",
            status="success",
            trigger="rerun",
            started_at=now - timedelta(hours=29),
            params={"chain": "ethereum"},
            parent_run_id=ids["old_failed"],
        )
        session.add(child)
        session.flush()
        ids["child"] = child.id
    return ids


def populate(db: DatabaseService, *, with_worker: bool = True) -> Seeded:
    """Fill a migrated database with prices, blocks, transactions, addresses, runs and a live worker."""
    now = datetime.now(UTC)
    seeded = Seeded(today=now.date())
    seed_prices(db, seeded.today)
    seed_blocks(db, now, seeded)
    seed_addresses(db, now)
    seeded.runs = seed_runs(db, now, seeded.today)
    if with_worker:
        db.beat("test-host:1:abc123", started_at=now - timedelta(hours=1), current_job="blocks")
    return seeded


def seed_failed_price_run(db: DatabaseService, today: date) -> int:
    """A failed CoinGecko prices run whose params replay a real slice (bitcoin, the last 5 days)."""
    now = datetime.now(UTC)
    params = {
        "coin_id": "bitcoin",
        "start": (today - timedelta(days=5)).isoformat(),
        "end": today.isoformat(),
    }
    with db.session_factory.begin() as session:
        row = DataIngestionLog(
            source="coingecko", data_type="prices", coin="bitcoin", status="failed", trigger="schedule",
            start_date=today - timedelta(days=5), end_date=today, started_at=now - timedelta(hours=2),
            finished_at=now - timedelta(hours=2), requests_made=5, retries=4, error_class="RateLimited",
            error_message=FAILED_ERROR, params=params,
        )  # fmt: skip
        session.add(row)
        session.flush()
        return row.id


PRICE_FINDING_DAYS = (10, 11)  # days ago named in the bitcoin price_move finding
BLOCK_FINDING_OFFSET = 5  # BTC_TIP - 5 is named in a block finding


def seed_findings(db: DatabaseService, today: date, run_id: int | None = None) -> dict[str, int]:
    """Data-quality findings as the checks store them: a price warning, a price error, a block error."""
    from pipeline.services.quality import Finding, get_findings, record_findings

    days = [today - timedelta(days=d) for d in PRICE_FINDING_DAYS]
    height = BTC_TIP - BLOCK_FINDING_OFFSET
    doge_day = today - timedelta(days=3)
    findings = [
        Finding("price_move", "warn", "bitcoin", f"{days[-1]}..{days[0]}", "2 rows", "> 50% from the median",
                [{"day": str(d), "price": "99000.0", "rolling_median": "60000.0"} for d in days]),
        Finding("non_positive_value", "error", "dogecoin", f"{doge_day}..{today}", "1 rows", "> 0",
                [{"day": str(doge_day), "price": "0", "volume": None}]),
        Finding("non_positive_size", "error", "BTC", f"{height - 10}..{height}", "1 rows", "> 0",
                [{"height": height, "size": 0}]),
    ]  # fmt: skip
    record_findings(db, run_id, findings)
    return {f["check_name"]: f["id"] for f in get_findings(db)}


@dataclass
class Incidents:
    """The runs and incidents of `seed_incidents`."""

    open_id: int  # blockchair/blocks/bitcoin: two failed runs, nothing made them good
    resolved_id: int  # coingecko/prices/ethereum: one failed run, made good by the next scheduled success
    failed_runs: list[int]  # the open incident's failures
    made_good_run: int
    fixing_run: int


# Runs of the seeded incidents fail as a Blockchair outage says it.
finished_run = partial(
    factories.finished_run, error_class="SourceUnavailable", error_message="HTTP 503 from blockchair"
)


def seed_incidents(db: DatabaseService, *, coin: str = "bitcoin") -> Incidents:
    """Incidents through the real path (runs, then the unit rule): one open (blockchair blocks of `coin`),
    one resolved by a run; the open one has a sent and a failed alert message."""
    from pipeline.services.incidents import evaluate

    settings = db.settings
    failed = [finished_run(db, "failed", coin=coin), finished_run(db, "failed", coin=coin)]
    made_good = finished_run(
        db, "failed", source="coingecko", data_type="prices", coin="ethereum", error_class="RateLimited",
        error_message="HTTP 429 Too Many Requests",
    )  # fmt: skip
    evaluate(db, settings, kinds=["unit"])
    fixing = finished_run(db, "success", source="coingecko", data_type="prices", coin="ethereum")
    evaluate(db, settings, kinds=["unit"])
    by_key = {i.key: i.id for i in db.get_incidents()}
    open_id = by_key[f"blockchair/blocks/{coin}"]
    retry = timedelta(minutes=5)
    sent = db.claim_delivery(open_id, "firing", "slack", "test", retry_after=retry, max_attempts=3)
    lost = db.claim_delivery(open_id, "firing", "webhook", "test", retry_after=retry, max_attempts=3)
    assert sent is not None
    assert lost is not None
    db.finish_delivery(sent, sent=True, attempts=1, error=None)
    db.finish_delivery(lost, sent=False, attempts=3, error="HTTP 500 from the webhook")
    return Incidents(
        open_id=open_id,
        resolved_id=by_key["coingecko/prices/ethereum"],
        failed_runs=failed,
        made_good_run=made_good,
        fixing_run=fixing,
    )


# ---------------------------------------------------------------------------------------------- price points

PRICE_LEVELS = {"bitcoin": 97_000.0, "ethereum": 3_400.0, "dogecoin": 0.18}
HOURLY_GAP_HOURS = (100, 95)  # hours ago: bitcoin has no hourly point in this span (a 6-hour gap)


def _walk(coin: str, hours: int, level: float) -> list[float]:
    """A deterministic hourly random walk (about 2.5% daily volatility) that ends near `level`: a market
    shock shared by every coin plus the coin's own, so that daily returns correlate as real ones do."""
    import random

    market, own = random.Random("market"), random.Random(coin)
    loading = {"bitcoin": 0.8, "ethereum": 0.75, "dogecoin": 0.6}.get(coin, 0.5)
    prices, value = [], 1.0
    for i in range(hours):
        shock = loading * market.gauss(0.0, 0.005) + (1 - loading**2) ** 0.5 * own.gauss(0.0, 0.005)
        value *= math.exp(shock + 0.0002 * math.sin(i / 90 + len(coin)))
        prices.append(value)
    return [level * p / prices[-1] for p in prices]


def seed_price_history(
    db: DatabaseService,
    now: datetime,
    *,
    coins: dict[str, float] | None = None,
    daily_days: int = 400,
    hourly_days: int = 90,
    quotes: dict[str, float] | None = None,
    gap: tuple[int, int] | None = HOURLY_GAP_HOURS,
) -> dict[str, list[dict]]:
    """Consistent prices at every resolution from one hourly walk per coin: daily USD snapshots
    (`market_prices`) for `daily_days`, hourly points for the last `hourly_days` in each quote of `quotes`
    (quote -> rate against USD), and 5-minute points over the last hour (the latest price). Candles are
    built by `insert_price_points`. Returns the stored points per quote."""
    coins = coins or PRICE_LEVELS
    quotes = quotes or {"usd": 1.0}
    top = now.replace(minute=0, second=0, microsecond=0)
    hours = daily_days * 24
    daily_rows, points = [], {q: [] for q in quotes}
    for coin, level in coins.items():
        walk = _walk(coin, hours + 1, level)
        moments = [top - timedelta(hours=hours - i) for i in range(hours + 1)]
        by_moment = dict(zip(moments, walk, strict=True))
        for moment, price in by_moment.items():
            if moment.hour == 0 and moment.date() < now.date():
                daily_rows.append(
                    {
                        "coin_id": coin,
                        "price_date": moment.date(),
                        "price_usd": Decimal(f"{price:.10g}"),
                        "volume_usd": Decimal(f"{price * 2.1e5 * (1.3 + math.sin(moment.toordinal())):.2f}"),
                        "market_cap_usd": Decimal(f"{price * 1.9e7:.2f}"),
                    }
                )
        lost = set()
        if gap is not None and coin == "bitcoin":
            lost = {top - timedelta(hours=h) for h in range(gap[1], gap[0] + 1)}
        for quote, rate in quotes.items():
            for moment in moments[-hourly_days * 24 :]:
                if moment in lost:
                    continue
                price = by_moment[moment] * rate
                points[quote].append(
                    {
                        "coin_id": coin,
                        "quote": quote,
                        "ts": moment + timedelta(minutes=55),
                        "price": Decimal(f"{price:.10g}"),
                        "volume_24h": Decimal(f"{price * 2.1e5 * (1.3 + math.sin(moment.hour / 4)):.2f}"),
                        "market_cap": Decimal(f"{price * 1.9e7:.2f}"),
                        "sampling": "1h",
                    }
                )
            last = by_moment[moments[-1]] * rate
            for five in range(1, 12):
                moment = top + timedelta(minutes=5 * five)
                if moment > now:
                    break
                points[quote].append(
                    {
                        "coin_id": coin,
                        "quote": quote,
                        "ts": moment,
                        "price": Decimal(f"{last * (1 + 0.0004 * math.sin(five)):.10g}"),
                        "volume_24h": Decimal(f"{last * 2.1e5:.2f}"),
                        "sampling": "5m",
                    }
                )
    # The hourly sample stamped hh:55 of the hour before now would be in the future: drop it.
    for quote in quotes:
        points[quote] = [p for p in points[quote] if p["ts"] <= now]
    db.insert_market_prices(daily_rows)
    for quote_points in points.values():
        db.insert_price_points(quote_points)
    return points
