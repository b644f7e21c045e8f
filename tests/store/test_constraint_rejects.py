"""One bad row never blocks a chain: records the database refuses are rejected, the rest is stored.

Every test runs on real SQLite and real PostgreSQL. The constraints that the schema does not carry (a
check, a foreign key) are added to the test database with each dialect's own DDL, as a DBA would.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Connection

from pipeline.database import DatabaseService
from pipeline.http.client import ApiClient
from pipeline.ingestion.blockchair import BlockchairIngestor
from pipeline.ingestion.replay import Replayer
from pipeline.schemas import BlockchainTransactionData, UpsertResult
from pipeline.simulator import Simulator, SimulatorConfig
from tests.support.databases import migrated_database, simulated_database
from tests.support.settings import make_settings

T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)


def btc_hash(n: int) -> str:
    return f"{n:064x}"


def make_block(height: int, **overrides: Any) -> dict[str, Any]:
    values = {
        "coin_symbol": "BTC",
        "block_id": height,
        "hash": btc_hash(10**9 + height),
        "time": T0 + timedelta(minutes=10 * height),
        "transaction_count": 3,
    }
    return values | overrides


def make_transaction(n: int, **overrides: Any) -> dict[str, Any]:
    values = {
        "coin_symbol": "BTC",
        "tx_hash": btc_hash(7 * 10**9 + n),
        "block_id": 840_000 + n // 10,
        "source_id": n,
        "time": T0,
        "fee": 1_000 + n,
        "size": 250,
    }
    return values | overrides


def make_price(day: int, **overrides: Any) -> dict[str, Any]:
    values = {
        "coin_id": "bitcoin",
        "price_date": date(2024, 1, 1) + timedelta(days=day),
        "price_usd": Decimal("42000.5") + day,
    }
    return values | overrides


def stored_heights(db: DatabaseService) -> set[int]:
    return {b.block_id for b in db.get_blocks(coin_symbol="BTC", limit=None)}


def add_constraint(db: DatabaseService, table: str, clause: str) -> None:
    """`ALTER TABLE ... ADD CONSTRAINT` on PostgreSQL; SQLite has none, so the empty table is rebuilt."""
    with db.transaction() as conn:
        if db.dialect == "postgresql":
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD CONSTRAINT {clause}")
            return
        _rebuild_sqlite_table(conn, table, clause)


def _rebuild_sqlite_table(conn: Connection, table: str, clause: str) -> None:
    create = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).scalar_one()
    indexes = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (table,)
    ).scalars()
    indexes = list(indexes)
    conn.exec_driver_sql(f"DROP TABLE {table}")
    conn.exec_driver_sql(f"{create.rstrip().removesuffix(')')}, CONSTRAINT {clause})")
    for index in indexes:
        conn.exec_driver_sql(index)


# ---------------------------------------------------------------------- unique keys


def test_heights_sharing_a_hash_in_one_batch_are_rejected_and_the_rest_stored(db):
    shared = btc_hash(42)
    blocks = [make_block(h) for h in range(1, 8)]
    blocks[2]["hash"] = blocks[5]["hash"] = shared  # heights 3 and 6 claim one hash
    result = db.insert_blocks(blocks)
    assert (result.inserted, result.updated, result.unchanged) == (5, 0, 0)
    assert stored_heights(db) == {1, 2, 4, 5, 7}
    # Nothing says which height is right, so neither is stored and both are read again later.
    reasons = {r.record["block_id"]: r.reason for r in result.rejects}
    assert set(reasons) == {3, 6}
    assert f"hash={shared!r}" in reasons[3]
    assert "block_id=6" in reasons[3]
    assert "block_id=3" in reasons[6]
    assert "same batch" in reasons[3]


def test_hash_already_stored_at_another_height_is_rejected_naming_that_height(db):
    db.insert_blocks([make_block(1)])
    held = make_block(1)["hash"]
    result = db.insert_blocks([make_block(2), make_block(3, hash=held), make_block(4)])
    assert (result.inserted, result.rejected) == (2, 1)
    reject = result.rejects[0]
    assert reject.record["block_id"] == 3
    assert reject.reason.startswith(f"hash={held!r} is already stored for block_id=1")
    assert "refused by the database" in reject.reason
    assert "INSERT" not in reject.reason  # the database's reason, never the statement
    assert stored_heights(db) == {1, 2, 4}
    assert db.block_hashes("BTC", 1, 1) == {1: held}  # the stored block is kept as it was
    alone = db.insert_blocks([make_block(5, hash=held)])  # a batch of one refused record
    assert (alone.total, alone.rejected) == (0, 1)
    assert "already stored for block_id=1" in alone.rejects[0].reason


def test_update_to_a_hash_held_by_another_stored_block_is_rejected(db):
    db.insert_blocks([make_block(1), make_block(2)])
    result = db.insert_blocks([make_block(2, hash=make_block(1)["hash"]), make_block(3)])
    assert (result.inserted, result.updated, result.rejected) == (1, 0, 1)
    assert "already stored for block_id=1" in result.rejects[0].reason
    assert db.block_hashes("BTC", 1, 3) == {h: make_block(h)["hash"] for h in (1, 2, 3)}


def test_a_hash_freed_by_the_same_batch_loads_whatever_the_order(db):
    # Block 10 was stored with the hash that really belongs to block 9 (a source's mistake, since
    # fixed). Re-reading both moves the hash: 9 comes first in the batch and is refused until 10 has
    # been rewritten, then it loads on its retry.
    wrong = make_block(9)["hash"]
    db.insert_blocks([make_block(10, hash=wrong)])
    result = db.insert_blocks([make_block(9), make_block(10)])
    assert result == UpsertResult(inserted=1, updated=1)
    assert db.block_hashes("BTC", 9, 10) == {9: wrong, 10: make_block(10)["hash"]}


def test_coins_claiming_a_stored_coingecko_id_are_rejected(db):
    result = db.upsert_coins(
        [
            {"symbol": "LTC", "name": "Litecoin", "coingecko_id": "litecoin"},
            {"symbol": "WBTC", "name": "Wrapped", "coingecko_id": "bitcoin"},  # BTC's id
        ]
    )
    assert (result.inserted, result.rejected) == (1, 1)
    assert result.rejects[0].reason.startswith("coingecko_id='bitcoin' is already stored for symbol='BTC'")
    assert {c.symbol for c in db.get_coins()} == {"BTC", "DOGE", "ETH", "LTC"}


# ---------------------------------------------------------------------- checks, foreign keys, ranges


def test_check_constraint_refuses_one_row_mid_batch_and_only_that_row(db):
    # A sanity ceiling a DBA added; prices are decimal text on SQLite and NUMERIC on PostgreSQL.
    ceiling = "CAST(price_usd AS REAL) < 1e6" if db.dialect == "sqlite" else "price_usd < 1e6"
    add_constraint(db, "market_prices", f"price_ceiling CHECK ({ceiling})")
    prices = [make_price(day) for day in range(60)]
    prices[37]["price_usd"] = Decimal("5000000")
    result = db.insert_market_prices(prices)
    assert (result.inserted, result.rejected) == (59, 1)
    reject = result.rejects[0]
    assert reject.record["price_date"] == "2024-02-07"
    assert "price_ceiling" in reject.reason
    stored = {p.price_date for p in db.get_market_prices(limit=None)}
    assert stored == {p["price_date"] for i, p in enumerate(prices) if i != 37}


def test_foreign_key_refuses_one_row_mid_batch_and_only_that_row(db):
    add_constraint(
        db, "blockchain_transactions", "tx_coin FOREIGN KEY (coin_symbol) REFERENCES coin_metadata (symbol)"
    )
    transactions = [make_transaction(n) for n in range(40)]
    transactions[13]["coin_symbol"] = "XYZ"  # no such coin
    result = db.insert_transactions(transactions)
    assert (result.inserted, result.rejected) == (39, 1)
    assert result.rejects[0].record["source_id"] == 13
    assert "foreign key" in result.rejects[0].reason.lower()
    assert len(db.get_transactions(limit=None)) == 39


def test_value_the_column_cannot_hold_refuses_one_row_mid_batch(db):
    # The schema bounds every column, so only a model changed after validation can carry such a value:
    # SQLite's driver refuses an integer beyond int64, PostgreSQL an integer column's range.
    transactions = [BlockchainTransactionData.model_validate(make_transaction(n)) for n in range(30)]
    transactions[21].size = 2**70
    result = db.insert_transactions(transactions)
    assert (result.inserted, result.rejected) == (29, 1)
    assert result.rejects[0].record["source_id"] == 21
    assert "refused by the database" in result.rejects[0].reason


@pytest.fixture
def small_batch_db(database_url):
    with migrated_database(make_settings(database_url, DB_BATCH_SIZE=50)) as service:
        yield service


def test_refusals_in_several_batches_keep_the_callers_transaction_whole(small_batch_db):
    db = small_batch_db
    ceiling = "CAST(price_usd AS REAL) < 1e6" if db.dialect == "sqlite" else "price_usd < 1e6"
    add_constraint(db, "market_prices", f"price_ceiling CHECK ({ceiling})")
    prices = [make_price(day) for day in range(175)]
    bad = {0, 49, 50, 120, 174}  # first and last of batches, and in the middle
    for day in bad:
        prices[day]["price_usd"] = Decimal("2e6")
    with db.transaction() as conn:
        db.insert_blocks([make_block(1)], conn=conn)
        result = db.insert_market_prices(prices, conn=conn)
        db.insert_blocks([make_block(2)], conn=conn)  # the transaction is still usable after refusals
    assert (result.inserted, result.rejected) == (170, 5)
    assert sorted(r.record["price_date"] for r in result.rejects) == sorted(
        prices[day]["price_date"].isoformat() for day in bad
    )
    assert len(db.get_market_prices(limit=None)) == 170
    assert stored_heights(db) == {1, 2}
    again = db.insert_market_prices(prices)  # idempotent: the stored rows are unchanged, the bad refused
    assert (again.inserted, again.updated, again.unchanged, again.rejected) == (0, 0, 170, 5)


def test_rejects_are_logged_once_per_call(db, caplog):
    blocks = [make_block(1), make_block(2, hash=make_block(1)["hash"])]
    with caplog.at_level(logging.WARNING, logger="pipeline.store.records"):
        db.insert_blocks(blocks)
    lines = [r.getMessage() for r in caplog.records if r.name == "pipeline.store.records"]
    assert len(lines) == 1
    assert "blockchain_blocks: 2 records rejected" in lines[0]


# ---------------------------------------------------------------------- end to end


class PlantedSource:
    """The real HTTP client to the simulator, with one block's hash replaced on the listings that carry
    it, a given number of times: what a source's bug looks like to the pipeline."""

    def __init__(self, inner: ApiClient, height: int, hash_: str, times: int = 1) -> None:
        self.inner = inner
        self.height = height
        self.hash = hash_
        self.times = times

    def get_json(self, path: str, params: Any = None, *, endpoint: str | None = None) -> Any:
        payload = self.inner.get_json(path, params, endpoint=endpoint)
        if self.times and path.endswith("/blocks") and isinstance(payload.get("data"), list):
            for row in payload["data"]:
                if row.get("id") == self.height:
                    row["hash"] = self.hash
                    self.times -= 1
        return payload

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def sim():
    with Simulator(SimulatorConfig(tip_growth=False)) as simulator:
        yield simulator


def planted_ingestor(settings, db, height: int, hash_: str) -> BlockchairIngestor:
    clean = BlockchairIngestor(settings=settings, db=db)
    return BlockchairIngestor(settings=settings, db=db, client=PlantedSource(clean.client, height, hash_))


def test_page_with_two_heights_sharing_a_hash_stores_the_rest_and_the_next_run_fills_the_chain(
    sim, database_url
):
    with simulated_database(database_url, sim, BLOCKS_INITIAL_DEPTH=250) as (settings, db):
        tip = sim.tip("bitcoin")
        bad = planted_ingestor(settings, db, tip - 2, sim.expected_block("bitcoin", tip - 3)["hash"])
        coin = bad.coin("bitcoin")
        first = bad.ingest_blocks(coin)
        assert first.status == "partial", first.error_message
        assert (first.records_inserted, first.records_rejected) == (248, 2)
        assert "2 records rejected" in first.error_message
        assert {s["reason"].split(" is also")[0] for s in first.rejected_samples} == {
            f"hash={sim.expected_block('bitcoin', tip - 3)['hash']!r}"
        }
        assert stored_heights(db) == set(range(tip - 249, tip + 1)) - {tip - 3, tip - 2}

        # The source is right again: the next regular run re-reads the newest REORG_DEPTH heights.
        second = BlockchairIngestor(settings=settings, db=db).ingest_blocks(coin)
        assert second.status == "success", second.error_message
        assert (second.records_inserted, second.records_rejected) == (2, 0)
        assert stored_heights(db) == set(range(tip - 249, tip + 1))
        for height in (tip - 3, tip - 2):
            assert (
                db.block_hashes("BTC", height, height)[height]
                == sim.expected_block("bitcoin", height)["hash"]
            )


def test_hash_stored_at_another_height_is_rejected_and_a_rerun_heals_the_chain(sim, database_url):
    with simulated_database(database_url, sim, BLOCKS_INITIAL_DEPTH=250) as (settings, db):
        tip = sim.tip("bitcoin")
        low, high = tip - 230, tip - 100  # pages 1 and 2, both deeper than the reorg window
        moved = sim.expected_block("bitcoin", high)["hash"]
        bad = planted_ingestor(settings, db, low, moved)  # the source first reports high's hash at low
        first = bad.ingest_blocks(bad.coin("bitcoin"))
        assert first.status == "partial", first.error_message
        assert (first.records_inserted, first.records_rejected) == (249, 1)
        reason = first.rejected_samples[0]["reason"]
        assert reason.startswith(f"hash={moved!r} is already stored for block_id={low}")
        assert high not in stored_heights(db)

        # Replaying the slice re-reads the stored height too: its hash is corrected, then high loads.
        rerun = Replayer(settings, db).replay(db.get_run(first.id))
        assert rerun.status == "success", rerun.error_message
        assert rerun.records_rejected == 0
        assert stored_heights(db) == set(range(tip - 249, tip + 1))
        assert db.block_hashes("BTC", low, low)[low] == sim.expected_block("bitcoin", low)["hash"]
        assert db.block_hashes("BTC", high, high)[high] == moved
