"""Tests for pipeline.database: exact round trips, idempotent upserts, reads, stats, SQLite concurrency.

Every storage test takes the `db` or `database_url` fixture, so it runs on real SQLite and on real
PostgreSQL; only the SQLite engine tests (pragmas, WAL, busy timeout, folders) are SQLite-only.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import func, select

import pipeline.database
from pipeline.config import Settings, get_settings
from pipeline.database import DatabaseService
from pipeline.errors import DatabaseUnavailable, RecordValidationError
from pipeline.models import SEED_COINS, Base, DataIngestionLog
from pipeline.schemas import (
    BlockchainAddressData,
    BlockchainBlockData,
    BlockchainTransactionData,
    CoinMetadataData,
    DataIngestionLogData,
    IngestionStatus,
    MarketPriceData,
    UpsertResult,
)
from pipeline.store.schema import alembic_config
from tests.support.databases import migrated_database
from tests.support.settings import make_settings

BIG_WEI = 2**64 * 1000 + 12345
HUGE_WEI = 10**30 + 7
DOGE_TOTAL = 2**63 + 987_654_321  # just above int64
T0 = datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
ETH_SENDER = "0x" + "1f" * 20
ETH_RECIPIENT = "0x" + "2e" * 20
COIN_NUMBERS = {"BTC": 1, "ETH": 2, "DOGE": 3}


# ---------------------------------------------------------------------- factories and helpers


def block_hash(n: int, *, eth: bool = False) -> str:
    return ("0x" if eth else "") + f"{n:064x}"


def make_block(**overrides):
    block_id = overrides.get("block_id", 840_000)
    coin = overrides.get("coin_symbol", "BTC")
    values = {
        "coin_symbol": coin,
        "block_id": block_id,
        "hash": block_hash(block_id + COIN_NUMBERS.get(coin, 9) * 10**12, eth=coin == "ETH"),
        "time": T0 + timedelta(minutes=block_id % 1000),
        "transaction_count": 3050,
        "size": 2_325_617,
        "difficulty": Decimal("86388558925171.02"),
        "output_total": 1_234_567_890_123,
        "fee_total": 37_626_690,
        "reward": 312_500_000,
        "output_total_usd": Decimal("801234.56"),
        "fee_total_usd": Decimal("24418.01"),
        "reward_usd": Decimal("202812.5"),
        "miner": "Foundry USA Pool",
    }
    values.update(overrides)
    return values


def make_transaction(**overrides):
    values = {
        "coin_symbol": "BTC",
        "tx_hash": block_hash(overrides.get("source_id", 1) * 7919 + overrides.get("block_id", 840_000)),
        "block_id": 840_000,
        "source_id": 1,
        "time": T0,
        "fee": 15_000,
        "input_total": 5_000_015_000,
        "output_total": 5_000_000_000,
        "fee_usd": Decimal("9.75"),
        "input_count": 1,
        "output_count": 2,
        "size": 225,
        "is_coinbase": False,
    }
    values.update(overrides)
    return values


def make_eth_transaction(**overrides):
    values = make_transaction(
        coin_symbol="ETH",
        tx_hash="0x" + "ab" * 32,
        block_id=19_000_000,
        fee=HUGE_WEI,
        value=BIG_WEI,
        input_total=BIG_WEI + HUGE_WEI,
        output_total=BIG_WEI,
        sender=ETH_SENDER,
        recipient=ETH_RECIPIENT,
        gas_used=21_000,
        failed=False,
        fee_usd=Decimal("3.1337E-14"),
    )
    values.update(overrides)
    return values


def make_address(**overrides):
    values = {
        "coin_symbol": "ETH",
        "address": "0x" + "3c" * 20,
        "balance": HUGE_WEI,
        "received": BIG_WEI * 3,
        "spent": BIG_WEI,
        "balance_usd": Decimal("3.1337E-14"),
        "transaction_count": 42,
        "first_seen": T0 - timedelta(days=400),
        "last_seen": T0,
    }
    values.update(overrides)
    return values


def make_price(**overrides):
    values = {
        "coin_id": "bitcoin",
        "price_date": date(2024, 3, 1),
        "price_usd": Decimal("62431.6520957"),
        "volume_usd": Decimal("16408802301.8374"),
        "market_cap_usd": Decimal("1226305263471.12"),
    }
    values.update(overrides)
    return values


def make_log(**overrides):
    values = {
        "source": "blockchair",
        "data_type": "blocks",
        "coin": "bitcoin",
        "status": "success",
        "started_at": datetime.now(UTC) - timedelta(hours=1),
        "params": {"limit": 100},
    }
    values.update(overrides)
    return DataIngestionLog(**values)


def add_logs(db: DatabaseService, *logs: DataIngestionLog) -> None:
    with db.session_factory() as session:
        session.add_all(logs)
        session.commit()


def snapshot(db: DatabaseService) -> dict[str, list[dict]]:
    """Every row of every table, as read back, except `updated_at`."""
    tables = {}
    with db.engine.connect() as conn:
        for name, table in Base.metadata.tables.items():
            rows = conn.execute(select(table).order_by(*table.primary_key.columns))
            tables[name] = [{k: v for k, v in row._mapping.items() if k != "updated_at"} for row in rows]
    return tables


def count_rows(db: DatabaseService, table_name: str) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Base.metadata.tables[table_name])).scalar_one()


def updated_at(db: DatabaseService, table_name: str) -> dict[tuple, datetime]:
    table = Base.metadata.tables[table_name]
    with db.engine.connect() as conn:
        rows = conn.execute(select(table)).all()
    return {tuple(row._mapping[c.name] for c in table.primary_key.columns): row.updated_at for row in rows}


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def assert_utc(value: datetime) -> None:
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)


@pytest.fixture
def small_batch_db(database_url):
    """A service on the test database that writes in batches of 50."""
    with migrated_database(make_settings(database_url, DB_BATCH_SIZE=50)) as service:
        yield service


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/engine.db"


# ---------------------------------------------------------------------- 1. exact round trips


def test_block_amounts_above_2_64_round_trip_exactly(db):
    written = [
        make_block(block_id=1, output_total=BIG_WEI, fee_total=HUGE_WEI, reward=BIG_WEI + 1),
        make_block(block_id=2, output_total=HUGE_WEI, fee_total=BIG_WEI, reward=HUGE_WEI * 10**40),
        make_block(block_id=3, output_total=0, fee_total=None, reward=None, difficulty=None),
    ]
    db.insert_blocks(written)
    read = sorted(db.get_blocks(), key=lambda b: b.block_id)
    assert [b.output_total for b in read] == [BIG_WEI, HUGE_WEI, 0]
    assert [b.fee_total for b in read] == [HUGE_WEI, BIG_WEI, None]
    assert [b.reward for b in read] == [BIG_WEI + 1, HUGE_WEI * 10**40, None]
    assert read == [BlockchainBlockData.model_validate(w) for w in written]


def test_transaction_amounts_above_2_64_round_trip_exactly(db):
    written = make_eth_transaction()
    db.insert_transactions([written])
    [tx] = db.get_transactions()
    assert tx.fee == HUGE_WEI
    assert tx.value == BIG_WEI
    assert tx.input_total == BIG_WEI + HUGE_WEI
    assert tx.fee_usd == Decimal("3.1337E-14")
    assert tx.sender == ETH_SENDER
    assert tx.recipient == ETH_RECIPIENT
    assert tx.failed is False
    assert tx == BlockchainTransactionData.model_validate(written)


def test_address_balance_above_2_64_round_trips_exactly(db):
    written = make_address()
    db.insert_addresses([written])
    [address] = db.get_addresses()
    assert address.balance == HUGE_WEI
    assert address.received == BIG_WEI * 3
    assert address.balance_usd == Decimal("3.1337E-14")
    assert address == BlockchainAddressData.model_validate(written)


def test_dogecoin_totals_around_2_63_round_trip_exactly(db):
    amounts = [2**63 - 1, 2**63, DOGE_TOTAL, 2**64 - 1, 2**64]
    db.insert_blocks(
        [
            make_block(coin_symbol="DOGE", block_id=5_000_000 + i, output_total=amount, reward=amount)
            for i, amount in enumerate(amounts)
        ]
    )
    db.insert_transactions(
        [
            make_transaction(
                coin_symbol="DOGE", block_id=5_000_000 + i, input_total=amount, output_total=amount
            )
            for i, amount in enumerate(amounts)
        ]
    )
    blocks = sorted(db.get_blocks(coin_symbol="DOGE"), key=lambda b: b.block_id)
    txs = sorted(db.get_transactions(coin_symbol="DOGE"), key=lambda t: t.block_id)
    assert [(b.output_total, b.reward) for b in blocks] == [(a, a) for a in amounts]
    assert [(t.input_total, t.output_total) for t in txs] == [(a, a) for a in amounts]


PRICE_EXTREMES = [
    (Decimal("0.000000001234"), Decimal("2E12"), Decimal("16408802301.8374")),
    (Decimal("1E-12"), Decimal("1E13"), Decimal("0.00000001")),
    (Decimal("62431.6520957"), Decimal("1226305263471.120000"), None),
]


def test_market_price_values_round_trip_exactly(db):
    written = [
        make_price(price_date=date(2024, 1, 1 + i), price_usd=price, market_cap_usd=cap, volume_usd=volume)
        for i, (price, cap, volume) in enumerate(PRICE_EXTREMES)
    ]
    db.insert_market_prices(written)
    read = sorted(db.get_market_prices(), key=lambda p: p.price_date)
    assert [(p.price_usd, p.market_cap_usd, p.volume_usd) for p in read] == PRICE_EXTREMES
    assert read == [MarketPriceData.model_validate(w) for w in written]


def test_usd_values_far_below_one_cent_round_trip_exactly(db):
    tiny = Decimal("3.1337E-14")
    db.insert_blocks([make_block(output_total_usd=tiny, fee_total_usd=Decimal("1E-30"), reward_usd=tiny * 2)])
    db.insert_transactions([make_transaction(fee_usd=tiny, input_total_usd=tiny, output_total_usd=tiny)])
    [block] = db.get_blocks()
    [tx] = db.get_transactions()
    assert (block.output_total_usd, block.fee_total_usd, block.reward_usd) == (
        tiny,
        Decimal("1E-30"),
        Decimal("6.2674E-14"),
    )
    assert (tx.fee_usd, tx.input_total_usd, tx.output_total_usd) == (tiny, tiny, tiny)


def test_timestamps_come_back_utc_and_equal_with_microseconds(db):
    zones = [
        UTC,
        ZoneInfo("America/New_York"),
        timezone(timedelta(hours=5, minutes=30)),
        ZoneInfo("Pacific/Chatham"),
    ]
    instant = datetime(2024, 7, 4, 23, 59, 58, 987654, tzinfo=UTC)
    written = {n: instant.astimezone(tz) + timedelta(days=n, microseconds=n) for n, tz in enumerate(zones)}
    db.insert_blocks([make_block(block_id=n, time=when) for n, when in written.items()])
    db.insert_transactions(
        [make_transaction(source_id=n, block_id=n, time=when) for n, when in written.items()]
    )
    db.insert_addresses(
        [
            make_address(address=f"addr{n}", first_seen=when - timedelta(days=1), last_seen=when)
            for n, when in written.items()
        ]
    )
    read = [(b.block_id, b.time) for b in db.get_blocks()]
    read += [(t.block_id, t.time) for t in db.get_transactions()]
    read += [(int(a.address[4:]), a.last_seen) for a in db.get_addresses()]
    read += [(int(a.address[4:]), a.first_seen + timedelta(days=1)) for a in db.get_addresses()]
    assert len(read) == 4 * len(zones)
    for n, value in read:
        assert_utc(value)
        assert value == written[n]
        assert value.microsecond == written[n].astimezone(UTC).microsecond
    assert {b.block_id: b.time.hour for b in db.get_blocks()} == {0: 23, 1: 23, 2: 23, 3: 23}


def test_naive_timestamps_are_stored_as_utc(db):
    db.insert_blocks([make_block(time=datetime(2024, 1, 2, 3, 4, 5, 6))])
    [block] = db.get_blocks()
    assert block.time == datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert_utc(block.time)


def test_audit_timestamps_are_set_and_utc(db):
    before = datetime.now(UTC) - timedelta(seconds=1)
    db.insert_market_prices([make_price()])
    [row] = snapshot(db)["market_prices"]
    assert_utc(row["created_at"])
    assert before <= row["created_at"] <= datetime.now(UTC) + timedelta(seconds=1)


# ---------------------------------------------------------------------- 2. idempotent upserts


def populate(db: DatabaseService) -> dict[str, UpsertResult]:
    return {
        "blocks": db.insert_blocks(
            [make_block(block_id=i) for i in range(100, 105)]
            + [make_block(coin_symbol="ETH", block_id=19_000_000, output_total=HUGE_WEI, gas_used=12_000_000)]
            + [make_block(coin_symbol="DOGE", block_id=5_000_000, output_total=DOGE_TOTAL)]
        ),
        "transactions": db.insert_transactions(
            [make_transaction(block_id=100, source_id=i) for i in range(1, 4)] + [make_eth_transaction()]
        ),
        "addresses": db.insert_addresses(
            [make_address(), make_address(coin_symbol="BTC", address="bc1qabc")]
        ),
        "prices": db.insert_market_prices(
            [make_price(price_date=date(2024, 3, d)) for d in range(1, 6)]
            + [
                make_price(
                    coin_id="dogecoin", price_usd=Decimal("0.000000001234"), market_cap_usd=Decimal("2E12")
                )
            ]
        ),
        "coins": db.upsert_coins(
            [*SEED_COINS, {"symbol": "LTC", "name": "Litecoin", "coingecko_id": "litecoin"}]
        ),
    }


def test_upserting_the_same_batches_twice_changes_nothing(db):
    first = populate(db)
    assert first["blocks"] == UpsertResult(inserted=7)
    assert first["prices"] == UpsertResult(inserted=6)
    assert first["coins"] == UpsertResult(inserted=1, unchanged=3)  # the seeded coins are identical
    before = snapshot(db)
    second = populate(db)
    assert second == {
        "blocks": UpsertResult(unchanged=7),
        "transactions": UpsertResult(unchanged=4),
        "addresses": UpsertResult(unchanged=2),
        "prices": UpsertResult(unchanged=6),
        "coins": UpsertResult(unchanged=4),
    }
    assert snapshot(db) == before


def test_unchanged_rows_are_not_rewritten_and_changed_rows_keep_created_at(db):
    db.insert_market_prices([make_price(price_date=date(2024, 3, d)) for d in (1, 2)])
    stamps = updated_at(db, "market_prices")
    created = {(r["coin_id"], r["price_date"]): r["created_at"] for r in snapshot(db)["market_prices"]}
    time.sleep(0.01)
    result = db.insert_market_prices(
        [
            make_price(price_date=date(2024, 3, 1)),
            make_price(price_date=date(2024, 3, 2), price_usd=Decimal(1)),
        ]
    )
    assert result == UpsertResult(updated=1, unchanged=1)
    after = updated_at(db, "market_prices")
    assert after[("bitcoin", date(2024, 3, 1))] == stamps[("bitcoin", date(2024, 3, 1))]
    assert after[("bitcoin", date(2024, 3, 2))] > stamps[("bitcoin", date(2024, 3, 2))]
    rows = {(r["coin_id"], r["price_date"]): r for r in snapshot(db)["market_prices"]}
    assert {key: row["created_at"] for key, row in rows.items()} == created


def test_upsert_counts_inserted_updated_and_unchanged_rows(db):
    db.insert_blocks([make_block(block_id=i) for i in range(1, 5)])
    result = db.insert_blocks(
        [
            make_block(block_id=1),  # identical
            make_block(block_id=2, size=1),  # changed
            make_block(block_id=3, output_total=BIG_WEI),  # changed amount
            make_block(block_id=4, miner=None),  # changed to NULL
            make_block(block_id=5),  # new
            make_block(block_id=6),  # new
        ]
    )
    assert result == UpsertResult(inserted=2, updated=3, unchanged=1)
    assert result.total == 6
    read = {b.block_id: b for b in db.get_blocks()}
    assert sorted(read) == [1, 2, 3, 4, 5, 6]
    assert (read[2].size, read[3].output_total, read[4].miner) == (1, BIG_WEI, None)


def test_equal_decimals_in_another_notation_are_unchanged(db):
    db.insert_market_prices([make_price(price_usd=Decimal("1.50"), market_cap_usd=Decimal("2E12"))])
    result = db.insert_market_prices(
        [make_price(price_usd=Decimal("1.5"), market_cap_usd=Decimal("2000000000000.000"))]
    )
    assert result == UpsertResult(unchanged=1)


def test_a_change_from_a_value_to_null_and_back_is_an_update(db):
    db.insert_market_prices([make_price()])
    assert db.insert_market_prices([make_price(volume_usd=None)]) == UpsertResult(updated=1)
    assert db.get_market_prices()[0].volume_usd is None
    assert db.insert_market_prices([make_price()]) == UpsertResult(updated=1)
    assert db.get_market_prices()[0].volume_usd == Decimal("16408802301.8374")


def test_duplicate_keys_in_one_batch_are_merged_last_wins(db):
    result = db.insert_blocks(
        [make_block(block_id=1, size=10), make_block(block_id=2), make_block(block_id=1, size=30)]
    )
    assert result == UpsertResult(inserted=2)
    assert {b.block_id: b.size for b in db.get_blocks()} == {1: 30, 2: 2_325_617}
    prices = db.insert_market_prices(
        [make_price(price_usd=Decimal(1)), make_price(price_usd=Decimal(2)), make_price(price_usd=Decimal(3))]
    )
    assert prices == UpsertResult(inserted=1)
    assert [p.price_usd for p in db.get_market_prices()] == [Decimal(3)]


def test_duplicate_keys_of_an_existing_row_count_one_update(db):
    db.insert_transactions([make_eth_transaction()])
    result = db.insert_transactions(
        [make_eth_transaction(gas_used=1), make_eth_transaction(gas_used=2), make_eth_transaction(gas_used=3)]
    )
    assert result == UpsertResult(updated=1)
    assert db.get_transactions()[0].gas_used == 3


def test_duplicate_keys_differing_only_by_hash_case_are_one_row(db):
    lower = make_eth_transaction(tx_hash="0x" + "ab" * 32, gas_used=1)
    upper = make_eth_transaction(tx_hash="0x" + "AB" * 32, gas_used=2)
    assert db.insert_transactions([lower, upper]) == UpsertResult(inserted=1)
    assert [t.gas_used for t in db.get_transactions()] == [2]


def test_batches_larger_than_db_batch_size_are_split_and_counted(small_batch_db):
    db = small_batch_db
    assert db.batch_size == 50
    prices = [make_price(price_date=date(2023, 1, 1) + timedelta(days=i)) for i in range(175)]
    assert db.insert_market_prices(prices) == UpsertResult(inserted=175)
    assert count_rows(db, "market_prices") == 175
    assert db.insert_market_prices(prices) == UpsertResult(unchanged=175)
    changed = [make_price(price_date=p["price_date"], price_usd=Decimal("1.25")) for p in prices[40:110]]
    new = [make_price(price_date=date(2024, 1, 1) + timedelta(days=i)) for i in range(60)]
    assert db.insert_market_prices(prices[:40] + changed + prices[110:] + new) == UpsertResult(
        inserted=60, updated=70, unchanged=105
    )
    assert count_rows(db, "market_prices") == 235
    stored = {p.price_date: p.price_usd for p in db.get_market_prices(limit=None)}
    assert {stored[p["price_date"]] for p in changed} == {Decimal("1.25")}


def test_large_block_batches_are_split_and_counted(small_batch_db):
    blocks = [make_block(block_id=i, output_total=BIG_WEI + i) for i in range(1, 131)]
    assert small_batch_db.insert_blocks(blocks) == UpsertResult(inserted=130)
    assert small_batch_db.insert_blocks(iter(blocks)) == UpsertResult(unchanged=130)
    read = small_batch_db.get_blocks(limit=None)
    assert sorted(b.output_total for b in read) == [BIG_WEI + i for i in range(1, 131)]


def test_duplicate_keys_across_db_batch_size_chunks_keep_the_last_value(small_batch_db):
    # Duplicates are merged within a DB_BATCH_SIZE chunk; across chunks the later row is an update of
    # the earlier one in the same transaction (keeping every key of a 1M-row load would not be flat).
    prices = [make_price(price_date=date(2023, 1, 1) + timedelta(days=i)) for i in range(60)]
    prices.append(make_price(price_date=date(2023, 1, 1), price_usd=Decimal(2)))  # duplicate of the first
    result = small_batch_db.insert_market_prices(prices)
    assert count_rows(small_batch_db, "market_prices") == 60
    assert small_batch_db.get_market_prices(end_date=date(2023, 1, 1))[0].price_usd == Decimal(2)
    assert result == UpsertResult(inserted=60, updated=1)


def test_models_and_dicts_are_both_accepted(db):
    as_model = BlockchainBlockData.model_validate(make_block(block_id=1))
    result = db.insert_blocks([as_model, make_block(block_id=2)])
    assert result == UpsertResult(inserted=2)
    again = db.insert_blocks(
        [make_block(block_id=1), BlockchainBlockData.model_validate(make_block(block_id=2))]
    )
    assert again == UpsertResult(unchanged=2)
    price = MarketPriceData.model_validate(make_price())
    assert db.insert_market_prices([price]) == UpsertResult(inserted=1)
    assert db.insert_market_prices([make_price()]) == UpsertResult(unchanged=1)
    coin = CoinMetadataData(symbol="LTC", name="Litecoin", coingecko_id="litecoin")
    assert db.upsert_coins([coin]) == UpsertResult(inserted=1)


def test_empty_batches_write_nothing(db):
    before = snapshot(db)
    assert db.insert_blocks([]) == UpsertResult()
    assert db.insert_market_prices(iter([])) == UpsertResult()
    assert snapshot(db) == before


# ---------------------------------------------------------------------- 3. validation errors

VALIDATION_CASES = [
    (
        "insert_market_prices",
        [make_price(price_date=date(2024, 1, 1)), make_price(price_date=date(2024, 1, 2))],
        make_price(price_date=date(2024, 1, 3), price_usd=Decimal("-5.5")),
        "price_usd",
        "-5.5",
    ),
    (
        "insert_market_prices",
        [make_price(price_date=date(2024, 1, 1)), make_price(price_date=date(2024, 1, 2))],
        make_price(price_date=date(2024, 1, 3), price_usd=Decimal("0")),
        "price_usd",
        "Decimal('0')",
    ),
    (
        "insert_blocks",
        [make_block(block_id=1), make_block(block_id=2)],
        make_block(block_id=3, hash="not-a-hash-123"),
        "hash",
        "not-a-hash-123",
    ),
    (
        "insert_blocks",
        [make_block(block_id=1), make_block(block_id=2)],
        make_block(block_id=3, hash="ab" * 31),
        "hash",
        "ab" * 31,
    ),
    (
        "insert_blocks",
        [make_block(block_id=1), make_block(block_id=2)],
        make_block(block_id=3, time=datetime(2999, 1, 1, tzinfo=UTC)),
        "time",
        "2999",
    ),
    (
        "insert_blocks",
        [make_block(block_id=1), make_block(block_id=2)],
        make_block(block_id=3, fee_total=-37),
        "fee_total",
        "-37",
    ),
    (
        "insert_transactions",
        [make_transaction(source_id=1), make_eth_transaction()],
        make_transaction(source_id=2, value=-1),
        "value",
        "-1",
    ),
    (
        "insert_transactions",
        [make_transaction(source_id=1)],
        make_eth_transaction(sender="0x1234"),
        "sender",
        "0x1234",
    ),
    (
        "insert_addresses",
        [make_address()],
        make_address(coin_symbol="BTC", address="bc1qbad", balance=-99),
        "balance",
        "-99",
    ),
    # The chain's hash form holds from the record's coin alone (a caller's dicts carry no context).
    (
        "insert_blocks",
        [make_block(block_id=1), make_block(coin_symbol="ETH", block_id=2)],
        make_block(coin_symbol="ETH", block_id=3, hash="ab" * 32),
        "hash",
        "0x-prefixed",
    ),
    (
        "insert_transactions",
        [make_transaction(source_id=1), make_eth_transaction()],
        make_transaction(source_id=2, tx_hash="0x" + "cd" * 32),
        "tx_hash",
        "no 0x prefix",
    ),
]


@pytest.mark.parametrize(("method", "valid", "bad_record", "field", "shown"), VALIDATION_CASES)
def test_invalid_record_raises_naming_field_and_value_and_writes_nothing(
    db, method, valid, bad_record, field, shown
):
    db.insert_market_prices([make_price(price_date=date(2020, 1, 1))])  # something already stored
    before = snapshot(db)
    with pytest.raises(RecordValidationError) as caught:
        getattr(db, method)([*valid, bad_record])
    message = str(caught.value)
    assert field in message
    assert shown in message
    assert caught.value.record == bad_record
    assert snapshot(db) == before
    assert getattr(db, method)(valid) == UpsertResult(inserted=len(valid))  # the valid rows alone go in


def write_block_then_invalid_price(db: DatabaseService) -> None:
    with db.transaction() as conn:
        db.insert_blocks([make_block()], conn=conn)
        db.insert_market_prices([make_price(price_usd=Decimal(-1))], conn=conn)


def test_invalid_record_inside_a_caller_transaction_rolls_everything_back(db):
    before = snapshot(db)
    with pytest.raises(RecordValidationError, match="price_usd"):
        write_block_then_invalid_price(db)
    assert snapshot(db) == before


def test_invalid_record_after_the_first_batch_writes_nothing(small_batch_db):
    prices = [make_price(price_date=date(2023, 1, 1) + timedelta(days=i)) for i in range(60)]
    prices.append(make_price(price_date=date(2024, 1, 1), price_usd=Decimal(-1)))
    with pytest.raises(RecordValidationError, match="price_usd"):
        small_batch_db.insert_market_prices(prices)
    assert count_rows(small_batch_db, "market_prices") == 0


def test_record_validation_error_carries_the_field(db):
    with pytest.raises(RecordValidationError) as caught:
        db.insert_market_prices([make_price(price_usd=Decimal(-1))])
    assert caught.value.field == "price_usd"


# ---------------------------------------------------------------------- 8. transactions


class Boom(Exception):
    pass


def write_then_fail(db: DatabaseService) -> None:
    with db.transaction() as conn:
        assert db.insert_blocks([make_block(block_id=i) for i in range(1, 4)], conn=conn).inserted == 3
        db.insert_market_prices([make_price()], conn=conn)
        db.insert_transactions([make_transaction()], conn=conn)
        raise Boom


def test_exception_inside_transaction_leaves_nothing_written(db):
    before = snapshot(db)
    with pytest.raises(Boom):
        write_then_fail(db)
    assert snapshot(db) == before
    assert db.get_blocks() == []
    # The service is still usable afterwards, and the same rows now go in.
    assert db.insert_blocks([make_block(block_id=i) for i in range(1, 4)]) == UpsertResult(inserted=3)


def change_then_fail(db: DatabaseService) -> None:
    with db.transaction() as conn:
        db.insert_blocks([make_block(block_id=1, size=1), make_block(block_id=2)], conn=conn)
        raise Boom


def test_exception_inside_transaction_keeps_existing_rows_unchanged(db):
    db.insert_blocks([make_block(block_id=1)])
    before = snapshot(db)
    with pytest.raises(Boom):
        change_then_fail(db)
    assert snapshot(db) == before


def test_transaction_commits_everything_together(db):
    with db.transaction() as conn:
        db.insert_blocks([make_block(block_id=1)], conn=conn)
        db.insert_market_prices([make_price()], conn=conn)
    assert [b.block_id for b in db.get_blocks()] == [1]
    assert len(db.get_market_prices()) == 1


# ---------------------------------------------------------------------- 4. reads


def store_block_timeline(db: DatabaseService) -> None:
    db.insert_blocks(
        [make_block(block_id=100 + i, time=datetime(2024, 3, 1 + i, 12, tzinfo=UTC)) for i in range(5)]
        + [
            make_block(coin_symbol="ETH", block_id=200, time=datetime(2024, 3, 3, 6, tzinfo=UTC)),
            make_block(coin_symbol="ETH", block_id=201, time=datetime(2024, 3, 3, 18, tzinfo=UTC)),
        ]
    )


def keys(blocks: list[BlockchainBlockData]) -> list[tuple[str, int]]:
    return [(b.coin_symbol, b.block_id) for b in blocks]


def test_get_blocks_newest_first_with_coin_filter_and_limit(db):
    store_block_timeline(db)
    everything = db.get_blocks()
    assert keys(everything) == [
        ("BTC", 104),
        ("BTC", 103),
        ("ETH", 201),
        ("BTC", 102),
        ("ETH", 200),
        ("BTC", 101),
        ("BTC", 100),
    ]
    assert all(type(b) is BlockchainBlockData for b in everything)
    assert keys(db.get_blocks(coin_symbol="BTC")) == [("BTC", i) for i in (104, 103, 102, 101, 100)]
    assert keys(db.get_blocks(coin_symbol="ETH", limit=1)) == [("ETH", 201)]
    assert keys(db.get_blocks(limit=2)) == [("BTC", 104), ("BTC", 103)]
    assert db.get_blocks(coin_symbol="DOGE") == []


def test_get_blocks_date_range_includes_whole_end_day(db):
    store_block_timeline(db)
    in_range = db.get_blocks(start_date=date(2024, 3, 2), end_date=date(2024, 3, 3))
    assert keys(in_range) == [("ETH", 201), ("BTC", 102), ("ETH", 200), ("BTC", 101)]
    assert keys(db.get_blocks(coin_symbol="ETH", start_date=date(2024, 3, 3), end_date=date(2024, 3, 3))) == [
        ("ETH", 201),
        ("ETH", 200),
    ]
    assert keys(db.get_blocks(start_date=date(2024, 3, 5))) == [("BTC", 104)]
    assert keys(db.get_blocks(end_date=date(2024, 3, 1))) == [("BTC", 100)]


def test_get_blocks_accepts_datetimes_in_any_timezone(db):
    store_block_timeline(db)
    new_york = ZoneInfo("America/New_York")
    start = datetime(2024, 3, 3, 12, tzinfo=UTC).astimezone(new_york)  # exactly block 102's time
    assert keys(db.get_blocks(start_date=start, coin_symbol="BTC")) == [
        ("BTC", 104),
        ("BTC", 103),
        ("BTC", 102),
    ]
    naive_start = datetime(2024, 3, 3, 12, 0, 0, 1)  # one microsecond after block 102, read as UTC
    assert keys(db.get_blocks(start_date=naive_start, coin_symbol="BTC")) == [("BTC", 104), ("BTC", 103)]
    end = datetime(2024, 3, 3, 7, tzinfo=UTC)
    assert keys(db.get_blocks(start_date=date(2024, 3, 3), end_date=end)) == [("ETH", 200)]


def test_get_blocks_datetime_end_is_inclusive(db):
    store_block_timeline(db)
    at = datetime(2024, 3, 3, 12, tzinfo=UTC)  # block 102
    assert keys(db.get_blocks(coin_symbol="BTC", start_date=at, end_date=at)) == [("BTC", 102)]


def test_get_transactions_filters_by_coin_and_block_newest_block_first(db):
    db.insert_transactions(
        [
            make_transaction(block_id=100, source_id=1),
            make_transaction(block_id=101, source_id=5),
            make_transaction(block_id=101, source_id=3),
            make_eth_transaction(block_id=19_000_000, source_id=9),
        ]
    )
    everything = db.get_transactions()
    assert [(t.coin_symbol, t.block_id, t.source_id) for t in everything] == [
        ("ETH", 19_000_000, 9),
        ("BTC", 101, 3),
        ("BTC", 101, 5),
        ("BTC", 100, 1),
    ]
    assert all(type(t) is BlockchainTransactionData for t in everything)
    assert [t.source_id for t in db.get_transactions(coin_symbol="BTC")] == [3, 5, 1]
    assert [t.source_id for t in db.get_transactions(coin_symbol="BTC", block_id=101)] == [3, 5]
    assert [t.source_id for t in db.get_transactions(block_id=100)] == [1]
    assert [t.source_id for t in db.get_transactions(coin_symbol="BTC", limit=1)] == [3]
    assert db.get_transactions(coin_symbol="ETH", block_id=101) == []


def test_get_market_prices_inclusive_range_newest_first(db):
    db.insert_market_prices(
        [make_price(price_date=date(2024, 3, d), price_usd=Decimal(d)) for d in range(1, 11)]
        + [
            make_price(coin_id="ethereum", price_date=date(2024, 3, d), price_usd=Decimal(d))
            for d in (4, 5, 6)
        ]
    )
    bitcoin = db.get_market_prices(coin_id="bitcoin")
    assert [p.price_date.day for p in bitcoin] == list(range(10, 0, -1))
    assert all(type(p) is MarketPriceData for p in bitcoin)
    window = db.get_market_prices(coin_id="bitcoin", start_date=date(2024, 3, 3), end_date=date(2024, 3, 6))
    assert [p.price_date.day for p in window] == [6, 5, 4, 3]
    assert [p.price_usd for p in window] == [Decimal(6), Decimal(5), Decimal(4), Decimal(3)]
    assert [p.price_date.day for p in db.get_market_prices(coin_id="bitcoin", limit=3)] == [10, 9, 8]
    both = db.get_market_prices(start_date=date(2024, 3, 5), end_date=date(2024, 3, 6))
    assert [(p.coin_id, p.price_date.day) for p in both] == [
        ("bitcoin", 6),
        ("ethereum", 6),
        ("bitcoin", 5),
        ("ethereum", 5),
    ]
    assert db.get_market_prices(coin_id="dogecoin") == []
    assert len(db.get_market_prices(limit=None)) == 13


def test_get_ingestion_logs_filters_and_newest_first(db):
    now = datetime.now(UTC)
    add_logs(
        db,
        make_log(source="blockchair", status="success", started_at=now - timedelta(hours=3)),
        make_log(
            source="blockchair", status="failed", started_at=now - timedelta(hours=2), error_class="AuthError"
        ),
        make_log(
            source="coingecko", data_type="prices", status="success", started_at=now - timedelta(hours=1)
        ),
        make_log(source="coingecko", data_type="prices", status="running", started_at=now),
    )
    logs = db.get_ingestion_logs()
    assert [(log.source, log.status) for log in logs] == [
        ("coingecko", IngestionStatus.RUNNING),
        ("coingecko", IngestionStatus.SUCCESS),
        ("blockchair", IngestionStatus.FAILED),
        ("blockchair", IngestionStatus.SUCCESS),
    ]
    assert all(type(log) is DataIngestionLogData for log in logs)
    assert [log.status for log in db.get_ingestion_logs(source="blockchair")] == ["failed", "success"]
    assert [log.source for log in db.get_ingestion_logs(status="success")] == ["coingecko", "blockchair"]
    [failed] = db.get_ingestion_logs(source="blockchair", status="failed")
    assert failed.error_class == "AuthError"
    assert failed.params == {"limit": 100}
    assert_utc(failed.started_at)
    assert failed.started_at == now - timedelta(hours=2)
    assert len(db.get_ingestion_logs(limit=2)) == 2
    assert db.get_ingestion_logs(source="nowhere") == []


def test_get_coins_returns_seeded_coins_and_active_only_filter(db):
    coins = db.get_coins()
    assert [c.symbol for c in coins] == ["BTC", "DOGE", "ETH"]
    assert all(type(c) is CoinMetadataData for c in coins)
    by_symbol = {c.symbol: c for c in coins}
    assert by_symbol["ETH"].chain_family == "ethereum"
    assert by_symbol["BTC"].listed_since == date(2013, 4, 28)
    seeds = {c["symbol"]: c for c in SEED_COINS}
    db.upsert_coins(
        [
            {**seeds["DOGE"], "is_active": False},
            {**seeds["ETH"], "ingestion_enabled": False},
            {"symbol": "LTC", "name": "Litecoin", "coingecko_id": "litecoin", "blockchair_chain": "litecoin"},
        ]
    )
    assert [c.symbol for c in db.get_coins()] == ["BTC", "DOGE", "ETH", "LTC"]
    assert [c.symbol for c in db.get_coins(active_only=True)] == ["BTC", "LTC"]


def test_get_addresses_filters_by_coin(db):
    db.insert_addresses([make_address(), make_address(coin_symbol="BTC", address="bc1qzzz", balance=1)])
    assert [(a.coin_symbol, a.address) for a in db.get_addresses()] == [
        ("BTC", "bc1qzzz"),
        ("ETH", "0x" + "3c" * 20),
    ]
    [btc] = db.get_addresses(coin_symbol="BTC")
    assert type(btc) is BlockchainAddressData
    assert btc.balance == 1


# ---------------------------------------------------------------------- 5. stats and health


def test_stats_of_an_empty_database(db):
    stats = db.get_database_stats()
    assert stats.total_blocks == stats.total_transactions == stats.total_addresses == 0
    assert stats.total_prices == stats.total_runs == 0
    assert stats.rows_per_table["coin_metadata"] == 3
    assert {name: n for name, n in stats.rows_per_table.items() if name != "coin_metadata"} == {
        name: 0 for name in stats.rows_per_table if name != "coin_metadata"
    }
    assert {"blockchain_blocks", "market_prices", "data_ingestion_logs"} <= set(stats.rows_per_table)
    assert stats.latest_block_by_coin == {}
    assert stats.block_coverage == []
    assert stats.price_coverage == []
    assert stats.failures_last_24h == 0
    assert stats.database_size_bytes > 0


def test_stats_of_a_populated_database(db):
    db.insert_blocks(
        [make_block(block_id=i) for i in (100, 101, 103, 104)]
        + [make_block(coin_symbol="ETH", block_id=i) for i in (19_000_000, 19_000_001)]
    )
    db.insert_transactions([make_transaction(source_id=i) for i in range(1, 4)])
    db.insert_addresses([make_address()])
    db.insert_market_prices(
        [make_price(price_date=date(2024, 1, d)) for d in (1, 2, 4, 7)]
        + [make_price(coin_id="ethereum", price_date=date(2024, 1, 3))]
    )
    now = datetime.now(UTC)
    add_logs(
        db,
        make_log(status="failed", started_at=now - timedelta(hours=1)),
        make_log(status="failed", started_at=now - timedelta(hours=23)),
        make_log(status="failed", started_at=now - timedelta(hours=25)),
        make_log(status="success", started_at=now - timedelta(hours=1)),
        make_log(status="partial", started_at=now - timedelta(hours=2)),
        make_log(status="running", started_at=now),
    )
    stats = db.get_database_stats()
    assert (stats.total_blocks, stats.total_transactions, stats.total_addresses) == (6, 3, 1)
    assert (stats.total_prices, stats.total_runs) == (5, 6)
    assert stats.rows_per_table["blockchain_blocks"] == 6
    assert stats.rows_per_table["market_prices"] == 5
    assert stats.rows_per_table["coin_metadata"] == 3
    assert stats.latest_block_by_coin == {"BTC": 104, "ETH": 19_000_001}
    coverage = {c.coin_symbol: (c.min_height, c.max_height, c.blocks) for c in stats.block_coverage}
    assert coverage == {"BTC": (100, 104, 4), "ETH": (19_000_000, 19_000_001, 2)}
    prices = {c.coin_id: c for c in stats.price_coverage}
    assert set(prices) == {"bitcoin", "ethereum"}
    assert (prices["bitcoin"].first_date, prices["bitcoin"].last_date) == (date(2024, 1, 1), date(2024, 1, 7))
    assert (prices["bitcoin"].days, prices["bitcoin"].missing_days) == (4, 3)
    assert (prices["ethereum"].days, prices["ethereum"].missing_days) == (1, 0)
    assert stats.failures_last_24h == 2
    assert stats.database_size_bytes > 0


def test_health_check_reports_ok_and_schema_revision(db, database_url):
    health = db.health_check()
    assert health.ok is True
    assert health.error is None
    assert health.dialect == ("sqlite" if database_url.startswith("sqlite") else "postgresql")
    assert health.schema_revision is not None
    assert health.schema_revision >= "0001"
    assert health.schema_revision == head_revision()
    assert health.latency_ms >= 0


def test_health_check_of_an_unreachable_database_is_not_ok(database_url, tmp_path):
    if database_url.startswith("sqlite"):
        unreachable = f"sqlite:///{tmp_path}"  # a folder, not a database file
    else:
        unreachable = "postgresql+psycopg://root@127.0.0.1:1/none"
    service = DatabaseService(unreachable, settings=make_settings(database_url))
    try:
        health = service.health_check()
    finally:
        service.dispose()
    assert health.ok is False
    assert health.error
    assert health.schema_revision is None
    assert health.dialect == ("sqlite" if database_url.startswith("sqlite") else "postgresql")


# ---------------------------------------------------------------------- 6. db_service from settings


@pytest.fixture
def lazy_service_env(monkeypatch, tmp_path):
    """DATABASE_URL in the environment, a fresh settings cache and no db_service built yet."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    database = tmp_path / "lazy" / "crypto.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{database}")
    get_settings.cache_clear()
    proxy = pipeline.database.db_service
    monkeypatch.setattr(proxy, "_instance", None)  # restored after the test
    yield database
    if proxy._instance is not None:
        proxy._instance.dispose()
    get_settings.cache_clear()


def test_db_service_usage_example_builds_lazily_from_settings(lazy_service_env):
    from pipeline.database import db_service

    assert db_service._instance is None  # importing built nothing
    assert not lazy_service_env.exists()
    db_service.create_tables()
    assert isinstance(db_service._instance, DatabaseService)
    assert lazy_service_env.exists()
    result = db_service.insert_market_prices(
        [{"coin_id": "bitcoin", "price_date": date(2024, 1, 1), "price_usd": Decimal("42280.23")}]
    )
    assert result == UpsertResult(inserted=1)
    prices = db_service.get_market_prices(coin_id="bitcoin", limit=30)
    assert prices == [
        MarketPriceData(coin_id="bitcoin", price_date=date(2024, 1, 1), price_usd=Decimal("42280.23"))
    ]
    stats = db_service.get_database_stats()
    assert stats.total_prices == 1
    assert stats.rows_per_table["coin_metadata"] == 3
    assert db_service.dialect == "sqlite"
    assert db_service.database_url == f"sqlite:///{lazy_service_env}"


# ---------------------------------------------------------------------- 7. SQLite engine


def sqlite_pragmas(conn) -> dict[str, object]:
    return {
        name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
        for name in ("journal_mode", "busy_timeout", "synchronous", "foreign_keys")
    }


@pytest.mark.parametrize("busy_timeout_ms", [30_000, 4321])
def test_sqlite_pragmas_are_set_on_every_connection(sqlite_url, busy_timeout_ms):
    service = DatabaseService(settings=make_settings(sqlite_url, SQLITE_BUSY_TIMEOUT_MS=busy_timeout_ms))
    expected = {"journal_mode": "wal", "busy_timeout": busy_timeout_ms, "synchronous": 1, "foreign_keys": 1}
    try:
        assert service.settings.model_dump()["SQLITE_BUSY_TIMEOUT_MS"] == busy_timeout_ms
        with service.engine.connect() as a, service.engine.connect() as b, service.engine.connect() as c:
            assert [sqlite_pragmas(conn) for conn in (a, b, c)] == [expected] * 3
        service.dispose()
        with service.transaction() as conn:
            assert sqlite_pragmas(conn) == expected
        with service.session() as session:
            assert sqlite_pragmas(session.connection()) == expected
    finally:
        service.dispose()


def test_sqlite_foreign_keys_are_enforced(sqlite_url):
    service = DatabaseService(settings=make_settings(sqlite_url))
    service.create_tables()
    try:
        with pytest.raises(Exception, match="FOREIGN KEY"):
            add_logs(service, make_log(parent_run_id=12345))
    finally:
        service.dispose()


def hold_write_lock(service: DatabaseService, holding: threading.Event, release: threading.Event) -> None:
    with service.transaction() as conn:
        service.insert_blocks([make_block(block_id=1)], conn=conn)
        holding.set()
        release.wait(20)


def test_sqlite_reader_is_not_blocked_and_second_writer_waits_for_the_first(sqlite_url):
    settings = make_settings(sqlite_url, SQLITE_BUSY_TIMEOUT_MS=20_000)
    writer, reader, second = (DatabaseService(settings=settings) for _ in range(3))
    writer.create_tables()
    holding, release = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def second_writer() -> None:
        started = time.monotonic()
        try:
            outcome["result"] = second.insert_blocks([make_block(block_id=2)])
        except Exception as exc:  # noqa: BLE001 - reported by the assertions below
            outcome["error"] = exc
        outcome["waited"] = time.monotonic() - started

    first = threading.Thread(target=hold_write_lock, args=(writer, holding, release))
    first.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        assert reader.get_blocks() == []  # the uncommitted block is invisible, and reading does not wait
        assert reader.get_database_stats().total_blocks == 0
        assert time.monotonic() - started < 5
        other = threading.Thread(target=second_writer)
        other.start()
        time.sleep(0.5)
        assert other.is_alive()  # waiting on the write lock, not failed
        assert outcome == {}
    finally:
        release.set()
        first.join(20)
    other.join(20)
    try:
        assert "error" not in outcome, outcome.get("error")
        assert outcome["result"] == UpsertResult(inserted=1)
        assert outcome["waited"] >= 0.4
        assert [b.block_id for b in reader.get_blocks()] == [2, 1]
    finally:
        for service in (writer, reader, second):
            service.dispose()


def test_sqlite_second_writer_fails_fast_with_zero_busy_timeout(sqlite_url):
    settings = make_settings(sqlite_url, SQLITE_BUSY_TIMEOUT_MS=0)
    writer, second = DatabaseService(settings=settings), DatabaseService(settings=settings)
    writer.create_tables()
    holding, release = threading.Event(), threading.Event()
    first = threading.Thread(target=hold_write_lock, args=(writer, holding, release))
    first.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        # Locked is "not now": the one class long-lived loops back off on (see pipeline.outage).
        with pytest.raises(DatabaseUnavailable, match="locked"):
            second.insert_blocks([make_block(block_id=2)])
        assert time.monotonic() - started < 5
    finally:
        release.set()
        first.join(20)
        writer.dispose()
        second.dispose()


@pytest.mark.parametrize("relative", [False, True])
def test_sqlite_database_folder_is_created_on_demand(tmp_path, monkeypatch, relative):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "data" / "deeper" / "still" / "crypto.db"
    url = "sqlite:///./data/deeper/still/crypto.db" if relative else f"sqlite:///{target}"
    assert not target.parent.exists()
    service = DatabaseService(settings=make_settings(url))
    try:
        service.create_tables()
        assert target.is_file()
        assert service.insert_blocks([make_block()]) == UpsertResult(inserted=1)
        assert service.health_check().ok
        assert service.database_size_bytes() == sum(
            p.stat().st_size for p in (target, Path(f"{target}-wal")) if p.exists()
        )
    finally:
        service.dispose()
