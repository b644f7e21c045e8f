"""Data-quality checks: each fires on a crafted bad slice, stays quiet on a clean one, is recorded per run.

The pure checks (`check_prices`, `check_blocks`) get hand-made records (`model_construct` where the schema
would refuse the bad value); the database checks run on SQLite and PostgreSQL; the ingestion tests drive
the real ingestors against the in-process simulator.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import IntegrityError

from pipeline.database import DatabaseService
from pipeline.ingestion.blockchair import BlockchairIngestor
from pipeline.ingestion.coingecko import CoinGeckoIngestor
from pipeline.ingestion.units import RunSlice, record_run
from pipeline.models import BlockchainBlock
from pipeline.schemas import BlockchainBlockData, IngestionStatus, MarketPriceData
from pipeline.services.quality import (
    ERROR,
    MAX_SAMPLES,
    WARN,
    Finding,
    apply_findings,
    check_blocks,
    check_chain_integrity,
    check_prices,
    check_transactions,
    get_findings,
    record_findings,
)
from pipeline.simulator import Simulator, SimulatorConfig
from tests.support.databases import simulated_database
from tests.support.factories import fake_hash
from tests.support.settings import make_settings

# Logic above the store: on SQLite in the fast path, on both dialects in the full suite (tests/store
# runs the SQL itself on both in the fast path too).
pytestmark = pytest.mark.slow_on_postgresql

START = date(2024, 3, 1)
SUPPLY = Decimal(19_000_000)
NOW = datetime.now(UTC).replace(microsecond=0)
# The bulk upsert runs on the driver's cursor, so its refusals are the drivers' errors.
REFUSED = (IntegrityError, sqlite3.IntegrityError, psycopg.IntegrityError)


def pure_settings(**overrides: object):
    return make_settings("sqlite:///:memory:", **overrides)


def names(findings: list[Finding]) -> list[str]:
    return [f.check_name for f in findings]


def only(findings: list[Finding], name: str) -> Finding:
    matching = [f for f in findings if f.check_name == name]
    assert len(matching) == 1, names(findings)
    return matching[0]


# ---------------------------------------------------------------------- price helpers


def daily(prices: list[object], *, caps: list[object] | None = None, coin_id: str = "bitcoin"):
    """Validated daily points from START on; market caps follow the price unless given."""
    caps = caps if caps is not None else [Decimal(str(p)) * SUPPLY for p in prices]
    return [
        MarketPriceData(
            coin_id=coin_id,
            price_date=START + timedelta(days=i),
            price_usd=Decimal(str(p)),
            market_cap_usd=Decimal(str(c)),
            volume_usd=Decimal("1000000"),
        )
        for i, (p, c) in enumerate(zip(prices, caps, strict=True))
    ]


def crafted_price(day: date, price: object, *, cap: object = None, volume: object = "1000000"):
    """A point the schema would refuse (zero or negative values)."""
    return MarketPriceData.model_construct(
        coin_id="bitcoin",
        price_date=day,
        price_usd=Decimal(str(price)),
        market_cap_usd=None if cap is None else Decimal(str(cap)),
        volume_usd=None if volume is None else Decimal(str(volume)),
    )


def day(i: int) -> date:
    return START + timedelta(days=i)


def whole(points: list[MarketPriceData]) -> tuple[date, date]:
    return points[0].price_date, points[-1].price_date


# ---------------------------------------------------------------------- check_prices


def test_clean_price_series_raises_nothing():
    points = daily([100, 102, 99, 101, 103, 104, 102, 105, 107, 106, 104, 108])
    assert check_prices(points, *whole(points), pure_settings()) == []


def test_price_move_beyond_the_threshold_against_the_rolling_median_is_a_warning():
    points = daily([100] * 8 + [160] + [100] * 3)
    findings = check_prices(points, *whole(points), pure_settings())
    assert names(findings) == ["price_move"]
    finding = findings[0]
    assert (finding.check_name, finding.severity, finding.subject) == ("price_move", WARN, "bitcoin")
    assert finding.slice == f"{day(0)}..{day(11)}"
    assert finding.observed == "1 rows"
    assert finding.threshold == "> 50% from the median"
    assert finding.samples == [{"day": str(day(8)), "price": "160", "rolling_median": "100"}]


def test_price_drop_beyond_the_threshold_is_reported_too():
    points = daily([100] * 8 + [40] + [100] * 3)
    finding = only(check_prices(points, *whole(points), pure_settings()), "price_move")
    assert [s["day"] for s in finding.samples] == [str(day(8))]


def test_price_move_threshold_comes_from_settings():
    points = daily([100] * 8 + [140] + [100] * 3)  # 40 % off the median
    assert check_prices(points, *whole(points), pure_settings()) == []
    strict = check_prices(points, *whole(points), pure_settings(PRICE_MOVE_WARN_RATIO=0.3))
    assert only(strict, "price_move").threshold == "> 30% from the median"


def test_price_move_needs_three_earlier_points_as_a_median():
    points = daily([100, 100, 300])  # day 2 has only two earlier points
    assert "price_move" not in names(check_prices(points, *whole(points), pure_settings()))


def test_days_before_the_slice_are_context_only():
    points = daily([100] * 4 + [300] + [100] * 8)
    assert check_prices(points, day(6), day(12), pure_settings()) == []
    assert names(check_prices(points, day(0), day(12), pure_settings())) == ["price_move"]


def test_market_cap_jump_without_the_price_is_a_warning():
    prices = [100] * 10
    caps = [100 * SUPPLY] * 6 + [200 * SUPPLY] * 4  # the cap doubles on day 6, the price does not move
    points = daily(prices, caps=caps)
    findings = check_prices(points, *whole(points), pure_settings())
    finding = only(findings, "market_cap_vs_price")
    assert finding.severity == WARN
    assert finding.threshold == "> 25%"
    assert finding.observed == "1 rows"
    assert [s["day"] for s in finding.samples] == [str(day(6))]
    assert Decimal(finding.samples[0]["cap_change"]) == 2
    assert Decimal(finding.samples[0]["price_change"]) == 1


def test_price_jump_without_the_market_cap_is_a_warning():
    prices = [100] * 6 + [145] * 4  # below the 50 % move threshold
    points = daily(prices, caps=[100 * SUPPLY] * 10)
    findings = check_prices(points, *whole(points), pure_settings())
    assert names(findings) == ["market_cap_vs_price"]
    assert [s["day"] for s in findings[0].samples] == [str(day(6))]


def test_market_cap_following_the_price_stays_quiet():
    points = daily([100] * 6 + [145] * 4)  # caps follow the price
    assert check_prices(points, *whole(points), pure_settings()) == []


def test_market_cap_divergence_threshold_comes_from_settings():
    points = daily([100] * 10, caps=[100 * SUPPLY] * 6 + [120 * SUPPLY] * 4)  # 20 % cap move
    assert check_prices(points, *whole(points), pure_settings()) == []
    loose = check_prices(points, *whole(points), pure_settings(MARKET_CAP_DIVERGENCE_RATIO=0.1))
    assert only(loose, "market_cap_vs_price").threshold == "> 10%"


def test_negative_price_is_an_error():
    points = daily([100] * 5) + [crafted_price(day(5), "-1")] + daily([100] * 7)[6:]
    finding = only(check_prices(points, *whole(points), pure_settings()), "non_positive_value")
    assert finding.severity == ERROR
    assert finding.threshold == "> 0"
    sample = finding.samples[0]
    assert [sample["day"], sample["price"], sample["volume"]] == [str(day(5)), "-1", "1000000"]


@pytest.mark.parametrize("volume", ["0", "-5"])
def test_zero_or_negative_volume_is_an_error(volume):
    points = daily([100] * 5) + [crafted_price(day(5), 100, cap=100 * SUPPLY, volume=volume)]
    finding = only(check_prices(points, *whole(points), pure_settings()), "non_positive_value")
    assert finding.severity == ERROR
    sample = finding.samples[0]
    assert [sample["day"], sample["price"], sample["volume"]] == [str(day(5)), "100", volume]


def test_zero_price_next_to_market_caps_is_reported_not_a_crash():
    points = daily([100] * 5) + [crafted_price(day(5), 0, cap=100 * SUPPLY)]
    finding = only(check_prices(points, *whole(points), pure_settings()), "non_positive_value")
    assert finding.samples[0]["day"] == str(day(5))


def test_negative_market_cap_is_an_error():
    points = daily([100] * 5) + [crafted_price(day(5), 100, cap=-100 * SUPPLY)]
    finding = only(check_prices(points, *whole(points), pure_settings()), "non_positive_value")
    assert finding.severity == ERROR


def test_many_bad_rows_keep_the_count_and_only_a_few_samples():
    points = daily([100] * 3) + [crafted_price(day(3 + i), 100, volume="0") for i in range(8)]
    finding = only(check_prices(points, *whole(points), pure_settings()), "non_positive_value")
    assert finding.observed == "8 rows"
    assert len(finding.samples) == MAX_SAMPLES == 5


def test_no_prices_no_findings():
    assert check_prices([], START, START, pure_settings()) == []


# ---------------------------------------------------------------------- block helpers


def block(height: int, when: datetime, *, symbol: str = "BTC", **extra: object) -> BlockchainBlockData:
    values = {"transaction_count": 1, **extra}
    return BlockchainBlockData(
        coin_symbol=symbol, block_id=height, hash=fake_hash(symbol, height), time=when, **values
    )


def regular_chain(count: int, *, first: int = 100, spacing: timedelta = timedelta(minutes=10)):
    """`count` blocks, `spacing` apart, the newest an hour before NOW."""
    newest = NOW - timedelta(hours=1)
    return [block(first + i, newest - (count - 1 - i) * spacing) for i in range(count)]


def test_regular_chain_raises_nothing():
    blocks = regular_chain(20)
    assert check_blocks(blocks, 100, 119, pure_settings(), NOW) == []


def test_block_time_far_before_the_median_of_the_previous_11_is_a_warning():
    blocks = regular_chain(15)
    median = blocks[7].time  # the median of blocks 2..12, the eleven before block 13
    blocks[13] = block(113, median - timedelta(minutes=121))
    findings = check_blocks(blocks, 100, 114, pure_settings(), NOW)
    assert names(findings) == ["block_time_before_median"]
    finding = findings[0]
    assert (finding.severity, finding.subject, finding.slice) == (WARN, "BTC", "100..114")
    assert finding.observed == "1 rows"
    assert "11" in finding.threshold
    assert finding.samples == [
        {"height": 113, "time": str(median - timedelta(minutes=121)), "median_of_previous": str(median)}
    ]


def test_block_time_within_the_tolerance_of_the_median_stays_quiet():
    blocks = regular_chain(15)
    blocks[13] = block(113, blocks[7].time - timedelta(minutes=119))
    assert check_blocks(blocks, 100, 114, pure_settings(), NOW) == []


def test_block_time_tolerance_comes_from_settings():
    blocks = regular_chain(15)
    blocks[13] = block(113, blocks[7].time - timedelta(minutes=60))
    assert check_blocks(blocks, 100, 114, pure_settings(), NOW) == []
    tight = check_blocks(blocks, 100, 114, pure_settings(BLOCK_TIME_TOLERANCE_MINUTES=30), NOW)
    assert names(tight) == ["block_time_before_median"]


def test_block_time_check_needs_eleven_earlier_blocks():
    blocks = regular_chain(11)
    blocks[10] = block(110, blocks[0].time - timedelta(days=1))  # only ten blocks before it
    assert check_blocks(blocks, 100, 110, pure_settings(), NOW) == []


def test_block_in_the_future_is_an_error():
    blocks = regular_chain(5)
    future = NOW + timedelta(hours=3)
    blocks.append(
        BlockchainBlockData.model_construct(**{**blocks[-1].model_dump(), "block_id": 105, "time": future})
    )
    findings = check_blocks(blocks, 100, 105, pure_settings(), NOW)
    finding = only(findings, "block_time_in_future")
    assert finding.severity == ERROR
    assert finding.samples == [{"height": 105, "time": str(future)}]


def test_block_an_hour_ahead_is_within_the_consensus_tolerance():
    blocks = [*regular_chain(5), block(105, NOW + timedelta(hours=1))]
    assert check_blocks(blocks, 100, 105, pure_settings(), NOW) == []


def test_ethereum_gas_used_above_gas_limit_is_an_error():
    newest = NOW - timedelta(minutes=5)
    blocks = [
        BlockchainBlockData.model_construct(
            coin_symbol="ETH",
            block_id=21_000_000 + i,
            hash=fake_hash("ETH", i),
            time=newest - timedelta(seconds=12 * (3 - i)),
            transaction_count=150,
            size=1000,
            gas_limit=30_000_000,
            gas_used=30_000_000 + (1 if i == 2 else -1000),
        )
        for i in range(4)
    ]
    findings = check_blocks(blocks, 21_000_000, 21_000_003, pure_settings(), NOW)
    assert names(findings) == ["gas_used_above_limit"]
    assert findings[0].severity == ERROR
    assert findings[0].samples == [{"height": 21_000_002, "gas_used": 30_000_001, "gas_limit": 30_000_000}]


def test_gas_used_equal_to_the_limit_is_fine():
    blocks = [block(1, NOW - timedelta(minutes=1), symbol="ETH", gas_used=30_000_000, gas_limit=30_000_000)]
    assert check_blocks(blocks, 1, 1, pure_settings(), NOW) == []


def test_non_positive_block_size_is_an_error():
    blocks = [*regular_chain(3), block(103, NOW - timedelta(minutes=30), size=0)]
    assert names(check_blocks(blocks, 100, 103, pure_settings(), NOW)) == ["non_positive_size"]


def test_blocks_before_the_slice_are_context_only():
    blocks = regular_chain(20)
    blocks[2] = BlockchainBlockData.model_construct(**{**blocks[2].model_dump(), "size": 0})
    assert check_blocks(blocks, 110, 119, pure_settings(), NOW) == []


# ---------------------------------------------------------------------- checks on stored rows


def store_block(
    db: DatabaseService, height: int, *, tx_count: int, fee_total: int | None, symbol: str = "BTC"
):
    db.insert_blocks(
        [
            {
                "coin_symbol": symbol,
                "block_id": height,
                "hash": fake_hash(symbol, height),
                "time": NOW - timedelta(hours=2),
                "transaction_count": tx_count,
                "fee_total": fee_total,
            }
        ]
    )


def store_transactions(db: DatabaseService, height: int, fees: list[int | None], symbol: str = "BTC"):
    db.insert_transactions(
        [
            {
                "coin_symbol": symbol,
                "tx_hash": fake_hash(symbol, height, f"tx{i}"),
                "block_id": height,
                "source_id": height * 1000 + i,
                "time": NOW - timedelta(hours=2),
                "fee": fee,
            }
            for i, fee in enumerate(fees)
        ]
    )


def test_more_stored_transactions_than_the_block_count_is_an_error(db):
    store_block(db, 500, tx_count=2, fee_total=60)
    store_transactions(db, 500, [20, 20, 20])
    findings = check_transactions(db, "BTC", 400, 600)
    finding = only(findings, "transactions_above_count")
    assert (finding.severity, finding.subject, finding.slice) == (ERROR, "BTC", "400..600")
    assert finding.observed == "1 rows"
    assert finding.threshold == "<= count"
    assert finding.samples == [{"height": 500, "transaction_count": 2, "stored": 3}]


def test_fee_total_differing_from_the_sum_of_its_transactions_fees_is_an_error(db):
    store_block(db, 501, tx_count=3, fee_total=100)
    store_transactions(db, 501, [30, 30, 30])
    findings = check_transactions(db, "BTC", 400, 600)
    assert names(findings) == ["fee_total_mismatch"]
    finding = findings[0]
    assert (finding.severity, finding.threshold) == (ERROR, "== sum of fees")
    assert finding.samples == [{"height": 501, "fee_total": 100, "sum_of_fees": 90}]


def test_transaction_checks_stay_quiet_on_consistent_and_on_incomplete_blocks(db):
    store_block(db, 502, tx_count=3, fee_total=90)
    store_transactions(db, 502, [30, 30, 30])
    store_block(db, 503, tx_count=5, fee_total=999)  # only two of five stored: fees not comparable yet
    store_transactions(db, 503, [1, 2])
    store_block(db, 504, tx_count=0, fee_total=0)
    assert check_transactions(db, "BTC", 400, 600) == []


def test_fee_sums_of_wei_amounts_are_exact(db):
    fees = [10**20 + 7, 10**20 + 11, 3 * 10**19 + 1]
    store_block(db, 21_000_000, tx_count=3, fee_total=sum(fees), symbol="ETH")
    store_transactions(db, 21_000_000, fees, symbol="ETH")
    store_block(db, 21_000_001, tx_count=3, fee_total=sum(fees) + 1, symbol="ETH")  # one wei off
    store_transactions(db, 21_000_001, fees, symbol="ETH")
    finding = only(check_transactions(db, "ETH", 21_000_000, 21_000_001), "fee_total_mismatch")
    expected = [{"height": 21_000_001, "fee_total": sum(fees) + 1, "sum_of_fees": sum(fees)}]
    assert finding.samples == expected
    record_findings(db, None, [finding])
    assert get_findings(db)[0]["samples"] == expected  # stored without losing a wei


def test_transaction_checks_look_at_the_slice_and_the_coin_only(db):
    store_block(db, 700, tx_count=1, fee_total=5)
    store_transactions(db, 700, [1, 1, 1])
    store_block(db, 500, tx_count=1, fee_total=5, symbol="DOGE")
    store_transactions(db, 500, [1, 1], symbol="DOGE")
    assert check_transactions(db, "BTC", 400, 600) == []


def test_the_unique_constraint_refuses_a_hash_at_two_heights_and_the_check_stays_quiet(db):
    store_block(db, 800, tx_count=1, fee_total=1)
    duplicate = {
        "coin_symbol": "BTC",
        "block_id": 801,
        "hash": fake_hash("BTC", 800),
        "time": NOW - timedelta(hours=1),
        "transaction_count": 1,
    }
    # The bulk write turns the refusal into a reject (the rest of a batch is stored); a raw insert raises.
    refused = db.insert_blocks([duplicate])
    assert (refused.total, refused.rejected) == (0, 1)
    assert "already stored for block_id=800" in refused.rejects[0].reason
    with pytest.raises(REFUSED), db.transaction() as conn:
        conn.execute(BlockchainBlock.__table__.insert().values(**duplicate, created_at=NOW, updated_at=NOW))
    assert db.block_hashes("BTC", 800, 801) == {800: fake_hash("BTC", 800)}
    assert check_chain_integrity(db, "BTC", 0, 1000) == []


def drop_hash_uniqueness(db: DatabaseService) -> None:
    """Schema surgery on the test's own database: the constraint goes, the rows stay."""
    with db.transaction() as conn:
        if db.dialect == "postgresql":
            conn.execute(
                text("ALTER TABLE blockchain_blocks DROP CONSTRAINT uq_blockchain_blocks_coin_symbol_hash")
            )
        else:  # SQLite cannot drop a table constraint: rebuild the table without it
            conn.execute(text("CREATE TABLE blocks_copy AS SELECT * FROM blockchain_blocks"))
            conn.execute(text("DROP TABLE blockchain_blocks"))
            conn.execute(text("ALTER TABLE blocks_copy RENAME TO blockchain_blocks"))


def test_hash_at_two_heights_is_reported_where_the_constraint_is_missing(db):
    store_block(db, 800, tx_count=1, fee_total=1)
    store_block(db, 900, tx_count=1, fee_total=1)
    drop_hash_uniqueness(db)
    with db.transaction() as conn:
        conn.execute(
            update(BlockchainBlock)
            .where(BlockchainBlock.coin_symbol == "BTC", BlockchainBlock.block_id == 900)
            .values(hash=fake_hash("BTC", 800))
        )
    findings = check_chain_integrity(db, "BTC", 850, 950)
    finding = only(findings, "hash_at_two_heights")
    assert (finding.severity, finding.threshold, finding.slice) == (ERROR, "1 height per hash", "850..950")
    assert finding.samples == [{"hash": fake_hash("BTC", 800), "heights": 2}]
    assert check_chain_integrity(db, "DOGE", 0, 10**6) == []


# ---------------------------------------------------------------------- storage and run status


def start_run(db: DatabaseService) -> int:
    run = RunSlice(
        "blockchair", "transactions", "bitcoin", {"chain": "bitcoin"}, start_height=400, end_height=600
    )
    return db.start_run(run, trigger="manual", parent_run_id=None)


def test_findings_are_stored_with_every_field_and_their_run(db):
    run_id = start_run(db)
    finding = Finding(
        "fee_total_mismatch",
        ERROR,
        "BTC",
        "400..600",
        "1 rows",
        "== sum of fees",
        [{"height": 501, "fee_total": 100, "sum_of_fees": 90}],
    )
    record_findings(db, run_id, [finding, Finding("price_move", WARN, "bitcoin", "a..b", "2 rows")])
    stored = get_findings(db, subject="BTC")
    assert len(stored) == 1
    row = stored[0]
    assert {
        k: row[k] for k in ("run_id", "check_name", "severity", "subject", "slice", "observed", "threshold")
    } == {
        "run_id": run_id,
        "check_name": "fee_total_mismatch",
        "severity": "error",
        "subject": "BTC",
        "slice": "400..600",
        "observed": "1 rows",
        "threshold": "== sum of fees",
    }
    assert row["samples"] == [{"height": 501, "fee_total": 100, "sum_of_fees": 90}]
    assert row["created_at"] is not None
    assert [r["check_name"] for r in get_findings(db)] == ["price_move", "fee_total_mismatch"]  # newest first


def test_recording_no_findings_writes_nothing(db):
    record_findings(db, start_run(db), [])
    assert get_findings(db) == []


def run_checked_unit(db: DatabaseService, settings, findings_of):
    """A unit inside a real run log row that only applies the findings of `findings_of()`."""
    client = BlockchairIngestor(settings=settings, db=db).client
    run = RunSlice(
        "blockchair", "transactions", "bitcoin", {"chain": "bitcoin"}, start_height=400, end_height=600
    )
    with record_run(db, client, run) as tally:
        apply_findings(db, tally, findings_of())
    return tally.result


def test_an_error_finding_makes_the_unit_partial_and_is_stored_with_its_run(db, settings):
    store_block(db, 501, tx_count=3, fee_total=100)
    store_transactions(db, 501, [30, 30, 30])
    result = run_checked_unit(db, settings, lambda: check_transactions(db, "BTC", 400, 600))
    assert result.status == IngestionStatus.PARTIAL
    assert result.error_message == "quality: fee_total_mismatch (1 rows)"
    stored = get_findings(db)
    assert [(f["run_id"], f["check_name"], f["severity"]) for f in stored] == [
        (result.id, "fee_total_mismatch", "error")
    ]


def test_a_warning_is_stored_but_leaves_the_unit_successful(db, settings):
    warning = Finding(
        "price_move", WARN, "bitcoin", "x..y", "1 rows", "> 50% from the median", [{"day": "x"}]
    )
    result = run_checked_unit(db, settings, lambda: [warning])
    assert result.status == IngestionStatus.SUCCESS
    assert result.error_message is None
    assert [(f["run_id"], f["check_name"]) for f in get_findings(db)] == [(result.id, "price_move")]


# ---------------------------------------------------------------------- the ingestors run the checks


@pytest.fixture
def sim():
    with Simulator(SimulatorConfig(tip_growth=False)) as simulator:
        yield simulator


@pytest.fixture
def env(sim, database_url):
    with simulated_database(database_url, sim, BLOCKS_INITIAL_DEPTH=60) as settings_and_db:
        yield settings_and_db


def test_clean_simulator_ingestion_records_no_findings(env):
    settings, db = env
    blockchair = BlockchairIngestor(settings=settings, db=db)
    coingecko = CoinGeckoIngestor(settings=settings, db=db)
    today = datetime.now(UTC).date()
    results = []
    for name in ("bitcoin", "ethereum"):
        results.append(blockchair.ingest_blocks(blockchair.coin(name)))
        results.append(blockchair.ingest_transactions(blockchair.coin(name)))
        results.append(coingecko.ingest_price_range(coingecko.coin(name), today - timedelta(days=89), today))
    assert [(r.data_type, r.status) for r in results] == [
        (t, IngestionStatus.SUCCESS) for _ in range(2) for t in ("blocks", "transactions", "prices")
    ], [r.error_message for r in results]
    assert get_findings(db) == []


def test_transactions_whose_fees_do_not_add_up_make_the_ingestion_run_partial(sim, env):
    settings, db = env
    blockchair = BlockchairIngestor(settings=settings, db=db)
    coin = blockchair.coin("bitcoin")
    assert blockchair.ingest_blocks(coin).status == IngestionStatus.SUCCESS
    tip = sim.tip("bitcoin")
    true_total = int(sim.expected_block("bitcoin", tip - 2)["fee_total"])
    with db.transaction() as conn:  # the block row disagrees with the transactions the source will send
        conn.execute(
            update(BlockchainBlock)
            .where(BlockchainBlock.coin_symbol == "BTC", BlockchainBlock.block_id == tip - 2)
            .values(fee_total=true_total + 1)
        )
    result = blockchair.ingest_transactions(coin)
    assert result.status == IngestionStatus.PARTIAL
    assert "quality: fee_total_mismatch (1 rows)" in result.error_message
    stored = get_findings(db, subject="BTC")
    assert [(f["run_id"], f["check_name"], f["severity"]) for f in stored] == [
        (result.id, "fee_total_mismatch", "error")
    ]
    assert stored[0]["samples"] == [
        {"height": tip - 2, "fee_total": true_total + 1, "sum_of_fees": true_total}
    ]
    assert stored[0]["slice"] == f"{tip - 5}..{tip}"


def test_a_stored_price_spike_is_recorded_as_a_warning_of_the_run_that_checked_it(sim, env):
    settings, db = env
    coingecko = CoinGeckoIngestor(settings=settings, db=db)
    today = datetime.now(UTC).date()
    spike_day = today  # after the last missing day: the fetch window does not overwrite it
    (_day, true_price, true_cap, volume) = sim.expected_daily_prices("ethereum", spike_day, spike_day)[0]
    db.insert_market_prices(
        [
            {
                "coin_id": "ethereum",
                "price_date": spike_day,
                "price_usd": Decimal(str(round(true_price * 10, 2))),
                "market_cap_usd": Decimal(str(round(true_cap * 10, 2))) if true_cap else None,
                "volume_usd": Decimal(str(round(volume, 2))),
            }
        ]
    )
    result = coingecko.ingest_price_range(coingecko.coin("ethereum"), today - timedelta(days=20), today)
    assert result.status == IngestionStatus.SUCCESS, result.error_message
    stored = get_findings(db, subject="ethereum")
    assert {f["run_id"] for f in stored} == {result.id}
    spike = [f for f in stored if f["check_name"] == "price_move"]
    assert len(spike) == 1
    assert spike[0]["severity"] == "warn"
    assert [s["day"] for s in spike[0]["samples"]] == [str(spike_day)]
    assert spike[0]["slice"] == f"{today - timedelta(days=20)}..{today}"
