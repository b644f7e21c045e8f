"""A small populated database for the API tests: every resource holds rows, some with extreme values
(wei above 2^64, a price of 1e-12), all written through `DatabaseService` as the pipeline writes them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from pipeline.database import DatabaseService
from pipeline.services.quality import Finding, record_findings
from tests.support.factories import fake_hash, finished_run

BIG_WEI = 2**70 + 12_345  # above 2^64: no float or int64 holds it
TINY_PRICE = Decimal("0.000000000001")
BTC_HEIGHTS = range(800_000, 800_030)
ETH_HEIGHTS = range(20_000_000, 20_000_010)
PRICE_DAYS = 60
POINT_HOURS = 72
BTC_ADDRESS = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"
ETH_ADDRESS = "0x00000000219ab540356cbb839cbe05303d7705fa"


@dataclass
class Seeded:
    """What was stored, for the tests to compare with."""

    now: datetime
    today: date
    runs: dict[str, int] = field(default_factory=dict)
    btc_tx: list[str] = field(default_factory=list)
    eth_tx: list[str] = field(default_factory=list)


def _tx(symbol: str, height: int, n: int) -> str:
    return fake_hash(symbol, height, f"tx{n}")


def seed_chains(db: DatabaseService, now: datetime, seeded: Seeded) -> None:
    """30 bitcoin blocks (a hole at one height), 10 ethereum blocks, and their transactions."""
    btc = [h for h in BTC_HEIGHTS if h != 800_010]
    db.insert_blocks(
        {
            "coin_symbol": "BTC",
            "block_id": h,
            "hash": fake_hash("BTC", h),
            "time": now - timedelta(minutes=10 * (BTC_HEIGHTS[-1] - h)) - timedelta(hours=1),
            "transaction_count": 3,
            "size": 1_000_000 + h % 7,
            "fee_total": 30_000 + h,
            "fee_total_usd": Decimal("12.345678901234567890"),
            "difficulty": Decimal("123456789012.5"),
        }  # fmt: skip
        for h in btc
    )
    db.insert_blocks(
        {
            "coin_symbol": "ETH",
            "block_id": h,
            "hash": fake_hash("ETH", h),
            "time": now - timedelta(seconds=12 * (ETH_HEIGHTS[-1] - h)) - timedelta(hours=1),
            "transaction_count": 2,
            "fee_total": BIG_WEI + h,
            "gas_used": 15_000_000,
            "gas_limit": 30_000_000,
        }  # fmt: skip
        for h in ETH_HEIGHTS
    )
    btc_tx = [
        {
            "coin_symbol": "BTC",
            "tx_hash": _tx("BTC", h, n),
            "block_id": h,
            "source_id": h * 10 + n,
            "time": now - timedelta(hours=2),
            "fee": 10_000 + n,
            "output_total": 50_000_000 * (n + 1),
            "fee_usd": Decimal("4.5"),
            "input_count": 1,
            "output_count": 2,
            "size": 250,
            "is_coinbase": n == 0,
        }  # fmt: skip
        for h in btc
        if h % 3  # some blocks have no stored transactions
        for n in range(3)
    ]
    eth_tx = [
        {
            "coin_symbol": "ETH",
            "tx_hash": _tx("ETH", h, n),
            "block_id": h,
            "time": now - timedelta(hours=2),
            "fee": 21_000 * 10**9,
            "value": BIG_WEI * (n + 1),
            "sender": "0x" + "ab" * 20,
            "recipient": "0x" + "cd" * 20,
            "gas_used": 21_000,
            "failed": n == 1,
        }  # fmt: skip
        for h in ETH_HEIGHTS
        for n in range(2)
    ]
    db.insert_transactions(btc_tx)
    db.insert_transactions(eth_tx)
    seeded.btc_tx = [t["tx_hash"] for t in btc_tx]
    seeded.eth_tx = [t["tx_hash"] for t in eth_tx]
    db.insert_addresses(
        [
            {
                "coin_symbol": "BTC",
                "address": BTC_ADDRESS,
                "balance": 5_000_000_000,
                "received": 7_000_000_000,
                "spent": 2_000_000_000,
                "transaction_count": 12,
                "last_seen": now - timedelta(days=1),
            },
            {
                "coin_symbol": "ETH",
                "address": ETH_ADDRESS,
                "balance": BIG_WEI,
                "received": BIG_WEI,
                "spent": 0,
                "balance_usd": Decimal("123.45"),
                "transaction_count": 3,
            },
        ]  # fmt: skip
    )
    with db.transaction() as conn:
        db.set_bookmarks(conn, "BTC", block_bookmark=BTC_HEIGHTS[-1], chain_tip_height=BTC_HEIGHTS[-1] + 2)
        db.set_bookmarks(conn, "ETH", block_bookmark=ETH_HEIGHTS[-1], chain_tip_height=ETH_HEIGHTS[-1])


def seed_prices(db: DatabaseService, now: datetime, today: date) -> None:
    """Daily prices (dogecoin at 1e-12), hourly points in usd and eur with 5-minute points in the last
    two hours (candles follow), all in the past."""
    base = {"bitcoin": Decimal("60000.5"), "ethereum": Decimal("3000.25"), "dogecoin": TINY_PRICE}
    db.insert_market_prices(
        {
            "coin_id": coin,
            "price_date": today - timedelta(days=back),
            "price_usd": price * (1 + Decimal(back % 7) / 100),
            "volume_usd": Decimal(1_000_000 + back),
            "market_cap_usd": None if back % 5 == 0 else Decimal(10**12 + back),
        }
        for coin, price in base.items()
        for back in range(PRICE_DAYS, 0, -1)
        if not (coin == "bitcoin" and back in (20, 21))  # a two-day gap
    )
    top = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    points = []
    for quote, factor in (("usd", Decimal(1)), ("eur", Decimal("0.92"))):
        for back in range(POINT_HOURS, 0, -1):
            points.append(
                {
                    "coin_id": "bitcoin",
                    "quote": quote,
                    "ts": top - timedelta(hours=back, minutes=-3),
                    "price": (Decimal("60000") + back) * factor,
                    "volume_24h": Decimal("1E+9"),
                    "market_cap": Decimal("1.2E+12"),
                    "sampling": "1h",
                }  # fmt: skip
            )
        for step in range(24):  # 5-minute points in the last two hours
            points.append(
                {
                    "coin_id": "bitcoin",
                    "quote": quote,
                    "ts": top - timedelta(minutes=5 * step),
                    "price": (Decimal("60100.123456789") + step) * factor,
                    "volume_24h": None,
                    "market_cap": None,
                    "sampling": "5m",
                }  # fmt: skip
            )
    points.append({"coin_id": "dogecoin", "quote": "usd", "ts": top, "price": TINY_PRICE, "sampling": "5m"})
    db.insert_price_points(points)


def seed_runs(db: DatabaseService, seeded: Seeded) -> None:
    """Runs of each status and source, a rerun of a failed one, and data-quality findings."""
    runs = seeded.runs
    runs["blocks"] = finished_run(db, "success", heights=(BTC_HEIGHTS[0], BTC_HEIGHTS[-1]))
    runs["failed"] = finished_run(
        db, "failed", source="coingecko", data_type="prices", coin="bitcoin",
        days=(seeded.today - timedelta(days=21), seeded.today - timedelta(days=20)),
    )  # fmt: skip
    runs["rerun"] = finished_run(
        db, "success", source="coingecko", data_type="prices", coin="bitcoin", trigger="rerun",
        parent=runs["failed"],
    )  # fmt: skip
    runs["partial"] = finished_run(db, "partial", data_type="transactions", coin="ethereum")
    runs["dogecoin"] = finished_run(db, "success", source="coingecko", data_type="prices", coin="dogecoin")
    record_findings(
        db,
        runs["partial"],
        [
            Finding("fee_mismatch", "error", "ETH", "20000000..20000009", "2 rows", "0", [{"height": 1}]),
            Finding("price_spike", "warn", "bitcoin", "2026-01-01..2026-01-02", "1 rows", "0.5"),
        ],
    )
    db.beat("api-test:1", started_at=seeded.now, current_job=None)


def populate(db: DatabaseService) -> Seeded:
    """Fill a migrated database."""
    now = datetime.now(UTC).replace(microsecond=0)
    seeded = Seeded(now=now, today=now.date())
    seed_chains(db, now, seeded)
    seed_prices(db, now, seeded.today)
    seed_runs(db, seeded)
    db.refresh_chain_rollups()
    return seeded
