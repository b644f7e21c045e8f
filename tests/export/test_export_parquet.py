"""The Parquet export against the database, on SQLite and PostgreSQL: a full export equals the database
(every row and value, exact; DuckDB's counts and sums), a second export writes nothing, a change or a
reorganisation rewrites only the partitions it touched, and an interrupted export resumes to the same
files as a clean one."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select, update

from pipeline.database import DatabaseService
from pipeline.export import exporter, parquet
from pipeline.export.exporter import export_parquet
from pipeline.export.parquet import sha256_of
from pipeline.store.export_reads import EXPORT_TABLES
from tests.export.conftest import (
    BTC_HEIGHTS,
    MAX_AMOUNT,
    TINY_PRICE,
    block,
    by_key,
    database_rows,
    exported_rows,
    file_states,
    manifest_json,
    transaction,
)


def export(db: DatabaseService, out: Path, **options: object) -> exporter.ExportResult:
    return export_parquet(db, out, progress=False, **options)  # type: ignore[arg-type]


def changed_files(before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]) -> set[str]:
    """Files added, removed, or rewritten (a new mtime) between two `file_states`."""
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def test_a_full_export_equals_the_database(seeded: DatabaseService, tmp_path: Path) -> None:
    out = tmp_path / "export"
    result = export(seeded, out)

    for table in EXPORT_TABLES:
        expected = by_key(database_rows(seeded, table), table)
        assert expected, f"the seed leaves {table} empty"
        assert by_key(exported_rows(out, table), table) == expected, table
    assert result.rows_written == sum(len(database_rows(seeded, t)) for t in EXPORT_TABLES)

    manifest = manifest_json(out)
    assert manifest["complete"] is True
    assert {f["path"] for f in manifest["files"]} == set(file_states(out))
    for entry in manifest["files"]:
        path = out / entry["path"]
        assert entry["sha256"] == sha256_of(path)
        assert entry["bytes"] == path.stat().st_size
        assert entry["rows"] == pq.read_metadata(path).num_rows
    for table, info in manifest["tables"].items():
        entries = [f for f in manifest["files"] if f["table"] == table]
        assert info["rows"] == sum(f["rows"] for f in entries) == len(database_rows(seeded, table))
        assert info["high_water_mark"] == max(f["last_updated"] for f in entries)
    blocks = {f["path"]: f for f in manifest["files"] if f["table"] == "blocks"}
    low = blocks["blocks/coin=BTC/heights=0-9999/part.parquet"]
    assert low["partition"] == {"coin": "BTC", "heights": "0-9999"}
    assert low["key_range"] == {"column": "block_id", "min": 100, "max": 103}
    assert "blocks/coin=BTC/heights=10000-19999/part.parquet" in blocks
    months = {f["partition"]["month"] for f in manifest["files"] if f["table"] == "prices"}
    assert months == {"2025-01", "2025-02"}


def test_duckdb_counts_and_sums_match_the_database(seeded: DatabaseService, tmp_path: Path) -> None:
    out = tmp_path / "export"
    export(seeded, out)
    transactions = seeded.get_transactions(limit=None)
    blocks = seeded.get_blocks(limit=None)

    con = duckdb.connect()
    glob = f"{out}/transactions/**/*.parquet"
    count, fees, values, fees_usd = con.execute(
        "SELECT count(*), sum(CAST(fee AS HUGEINT)), sum(CAST(value AS HUGEINT)),"
        f" sum(CAST(fee_usd AS DECIMAL(38, 18))) FROM read_parquet('{glob}')"
    ).fetchone()
    assert count == len(transactions)
    assert fees == sum(t.fee or 0 for t in transactions) > 2**64
    assert values == sum(t.value or 0 for t in transactions) > 10**30
    assert fees_usd == sum(t.fee_usd or Decimal(0) for t in transactions)
    per_coin = dict(
        con.execute(
            f"SELECT coin, count(*) FROM read_parquet('{glob}', hive_partitioning = true) GROUP BY coin"
        ).fetchall()
    )
    assert per_coin == {"BTC": 12, "ETH": 6}
    fee_totals = con.execute(
        f"SELECT sum(CAST(fee_total AS HUGEINT)) FROM read_parquet('{out}/blocks/**/*.parquet')"
    ).fetchone()
    assert fee_totals == (sum(b.fee_total or 0 for b in blocks),)
    for table in EXPORT_TABLES:
        (rows,) = con.execute(f"SELECT count(*) FROM read_parquet('{out}/{table}/**/*.parquet')").fetchone()
        with seeded.engine.connect() as conn:
            assert rows == conn.scalar(select(func.count()).select_from(EXPORT_TABLES[table].table)), table
    volume = con.execute(
        f"SELECT typeof(volume), sum(volume) FROM read_parquet('{out}/candles/**/*.parquet') GROUP BY 1"
    ).fetchall()
    candles = database_rows(seeded, "candles")
    assert volume == [("DECIMAL(38,8)", sum(c["volume"] for c in candles if c["volume"] is not None))]


def test_exact_values_round_trip_through_pyarrow(seeded: DatabaseService, tmp_path: Path) -> None:
    out = tmp_path / "export"
    export(seeded, out)
    balances = {r["address"]: r for r in exported_rows(out, "addresses")}
    assert balances["0x0000000000000000000000000000000000000007"]["balance"] == MAX_AMOUNT
    assert balances["0x0000000000000000000000000000000000000007"]["balance_usd"] == Decimal(
        "99999999999999999999.999999999999999999999999"
    )
    prices = pq.read_table(out / "prices/coin=ethereum/month=2025-01/part.parquet").to_pylist()
    assert Decimal(prices[0]["price_usd"]) == TINY_PRICE
    assert prices[0]["price_usd"] == "0.0000000000012345678901234567"  # canonical text, every digit
    schema = pq.read_schema(out / "transactions/coin=ETH/heights=5000000-5009999/part.parquet")
    assert str(schema.field("value").type) == "string"
    assert schema.field("value").metadata == {b"crypto_pipeline.kind": b"amount"}
    assert str(schema.field("time").type) == "timestamp[us, tz=UTC]"
    drawdown = pq.read_schema(out / "price_stats/coin=bitcoin/year=2025/part.parquet").field("drawdown")
    assert str(drawdown.type) == "decimal128(38, 12)"


def test_a_second_export_writes_nothing_when_nothing_changed(seeded: DatabaseService, tmp_path: Path) -> None:
    out = tmp_path / "export"
    first = export(seeded, out)
    files = file_states(out)
    marks = manifest_json(out)["tables"]

    second = export(seeded, out)

    assert first.files_written == len(files) > 10
    assert second.files_written == 0
    assert all(t.unchanged == t.partitions for t in second.tables)
    assert file_states(out) == files
    assert {t: m["high_water_mark"] for t, m in manifest_json(out)["tables"].items()} == {
        t: m["high_water_mark"] for t, m in marks.items()
    }


def test_a_change_rewrites_only_the_partitions_it_touched(seeded: DatabaseService, tmp_path: Path) -> None:
    out = tmp_path / "export"
    export(seeded, out)
    before = file_states(out)
    marks = manifest_json(out)["tables"]

    seeded.insert_blocks([block("BTC", 10_102)])  # a new block in the upper BTC range
    seeded.insert_transactions([transaction("ETH", 5_000_001, 0) | {"fee": 7}])  # one changed row
    result = export(seeded, out)

    assert changed_files(before, file_states(out)) == {
        "blocks/coin=BTC/heights=10000-19999/part.parquet",
        "chain_stats/coin=BTC/year=2026/part.parquet",  # the block's day, rebuilt by the write
        "transactions/coin=ETH/heights=5000000-5009999/part.parquet",
    }
    assert result.files_written == 3
    after = manifest_json(out)["tables"]
    assert after["blocks"]["high_water_mark"] > marks["blocks"]["high_water_mark"]
    assert after["prices"]["high_water_mark"] == marks["prices"]["high_water_mark"]
    assert by_key(exported_rows(out, "blocks"), "blocks") == by_key(database_rows(seeded, "blocks"), "blocks")
    fees = {r["tx_hash"]: r["fee"] for r in exported_rows(out, "transactions")}
    assert fees[transaction("ETH", 5_000_001, 0)["tx_hash"]] == 7


def test_a_reorganisation_rewrites_only_its_partition(seeded: DatabaseService, tmp_path: Path) -> None:
    """Block 101 comes back with a new hash and one transaction instead of two: as the ingestor does it,
    the block is upserted and its transactions are deleted, then the new ones inserted."""
    out = tmp_path / "export"
    export(seeded, out)
    before = file_states(out)
    old = {transaction("BTC", 101, n)["tx_hash"] for n in range(2)}

    with seeded.transaction() as conn:
        seeded.delete_block_transactions(conn, "BTC", [101])
        seeded.insert_blocks([block("BTC", 101, salt="reorg", tx_count=1)], conn=conn)
    seeded.insert_transactions([transaction("BTC", 101, 0, salt="reorg")])
    export(seeded, out)

    assert changed_files(before, file_states(out)) == {
        "blocks/coin=BTC/heights=0-9999/part.parquet",
        "transactions/coin=BTC/heights=0-9999/part.parquet",
    }
    exported = by_key(exported_rows(out, "transactions"), "transactions")
    assert exported == by_key(database_rows(seeded, "transactions"), "transactions")
    in_block = {r["tx_hash"] for r in exported.values() if r["coin_symbol"] == "BTC" and r["block_id"] == 101}
    assert in_block == {transaction("BTC", 101, 0, salt="reorg")["tx_hash"]}
    assert not in_block & old
    hashes = {r["block_id"]: r["hash"] for r in exported_rows(out, "blocks") if r["coin_symbol"] == "BTC"}
    assert hashes[101] == block("BTC", 101, salt="reorg")["hash"]


def test_deleted_rows_leave_the_partition_and_an_emptied_one_is_removed(
    seeded: DatabaseService, tmp_path: Path
) -> None:
    """Deletes set no `updated_at`: the row count gives them away."""
    out = tmp_path / "export"
    export(seeded, out)
    before = file_states(out)

    with seeded.transaction() as conn:  # transactions dropped and not fetched again (yet)
        seeded.delete_block_transactions(conn, "BTC", [102])
        seeded.delete_block_transactions(conn, "BTC", [10_100, 10_101])
    result = export(seeded, out)

    gone = "transactions/coin=BTC/heights=10000-19999/part.parquet"
    assert changed_files(before, file_states(out)) == {
        "transactions/coin=BTC/heights=0-9999/part.parquet",
        gone,
    }
    assert not (out / gone).exists()
    assert not (out / gone).parent.exists()
    assert gone not in {f["path"] for f in manifest_json(out)["files"]}
    assert next(t for t in result.tables if t.table == "transactions").removed == 1
    exported = by_key(exported_rows(out, "transactions"), "transactions")
    assert exported == by_key(database_rows(seeded, "transactions"), "transactions")


def test_an_update_below_the_high_water_mark_is_seen(seeded: DatabaseService, tmp_path: Path) -> None:
    """A row updated by a transaction that committed after the export read a newer row of its partition
    (or by a host whose clock is behind): its `updated_at` is older than the file's mark, the row count is
    unchanged, yet the partition is rewritten (the digest of the `updated_at` values moved)."""
    out = tmp_path / "export"
    export(seeded, out)
    entry = next(f for f in manifest_json(out)["files"] if f["path"].startswith("blocks/coin=BTC/heights=0-"))
    table = EXPORT_TABLES["blocks"].table
    with seeded.transaction() as conn:
        newest = conn.scalar(select(func.max(table.c.updated_at)).where(table.c.coin_symbol == "BTC"))
        conn.execute(
            update(table)
            .where(table.c.coin_symbol == "BTC", table.c.block_id == 100)
            .values(miner="late writer", updated_at=newest - timedelta(seconds=5))
        )

    result = export(seeded, out)

    assert result.files_written == 1
    rewritten = next(f for f in manifest_json(out)["files"] if f["path"] == entry["path"])
    assert rewritten["last_updated"] == entry["last_updated"]
    assert rewritten["updated_digest"] != entry["updated_digest"]
    miners = {r["block_id"]: r["miner"] for r in exported_rows(out, "blocks") if r["coin_symbol"] == "BTC"}
    assert miners[100] == "late writer"


def test_an_interrupted_export_resumes_to_a_clean_exports_files(
    seeded: DatabaseService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, clean = tmp_path / "export", tmp_path / "clean"
    write = parquet.write_partition
    calls = 0

    def failing_after_four(*args: object, **kwargs: object) -> parquet.WrittenFile:
        nonlocal calls
        calls += 1
        if calls > 4:
            raise RuntimeError("disk pulled out")
        return write(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(parquet, "write_partition", failing_after_four)
    with pytest.raises(RuntimeError, match="disk pulled out"):
        export(seeded, out)
    monkeypatch.setattr(parquet, "write_partition", write)

    interrupted = manifest_json(out)
    assert interrupted["complete"] is False
    assert len(file_states(out)) == 4
    for entry in interrupted["files"]:  # the manifest names only files in place
        assert (out / entry["path"]).is_file()

    resumed = export(seeded, out)
    export(seeded, clean)

    # The files the manifest recorded are not written again; the rest are (one of them a second time).
    assert resumed.files_written == len(file_states(clean)) - len(interrupted["files"])
    assert {p: s for p, (_, s) in file_states(out).items()} == {
        p: s for p, (_, s) in file_states(clean).items()
    }
    strip = {"written_at", "exported_at"}
    files = [{k: v for k, v in f.items() if k not in strip} for f in manifest_json(out)["files"]]
    clean_files = [{k: v for k, v in f.items() if k not in strip} for f in manifest_json(clean)["files"]]
    assert files == clean_files
    assert manifest_json(out)["complete"] is True
    assert not list(out.rglob("*.tmp"))


def test_an_interruption_inside_a_partition_leaves_the_old_file_whole(
    seeded: DatabaseService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of 2 rows: the BTC transactions are written in several batches; the third batch fails."""
    out = tmp_path / "export"
    export(seeded, out, chunk_rows=2)
    path = out / "transactions/coin=BTC/heights=0-9999/part.parquet"
    before = file_states(out)
    seeded.insert_transactions([transaction("BTC", 103, 5)])  # the partition must be rewritten

    to_batch = parquet.to_batch
    batches = 0

    def failing(*args: object, **kwargs: object) -> object:
        nonlocal batches
        batches += 1
        if batches == 3:
            raise KeyboardInterrupt
        return to_batch(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(parquet, "to_batch", failing)
    with pytest.raises(KeyboardInterrupt):
        export(seeded, out, chunk_rows=2)
    monkeypatch.setattr(parquet, "to_batch", to_batch)

    assert file_states(out) == before  # the old file, whole; no temporary file left beside it
    assert sorted(p.name for p in path.parent.iterdir()) == ["part.parquet"]
    export(seeded, out, chunk_rows=2)
    assert pq.read_metadata(path).num_rows == 9
    assert pq.read_metadata(path).num_row_groups == 1


@pytest.mark.parametrize(("chunk_rows", "sizes"), [(3, [3, 3, 2]), (4, [4, 4]), (100, [8])])
def test_keyset_chunks_read_each_row_once(seeded: DatabaseService, chunk_rows: int, sizes: list[int]) -> None:
    """Two transactions share each height; chunks cut through heights and still see every row once (and
    a last page that comes back empty ends the reading)."""
    spec = EXPORT_TABLES["transactions"]
    chunks = list(seeded.partition_chunks(spec, ("BTC", 0), height_span=10_000, chunk_rows=chunk_rows))
    assert [len(c["tx_hash"]) for c in chunks] == sizes
    keys = [(b, h) for c in chunks for b, h in zip(c["block_id"], c["tx_hash"], strict=True)]
    assert keys == sorted(keys)
    assert len(set(keys)) == 8
    assert set(chunks[0]) == {c.name for c in spec.table.columns}  # no keyset helper column leaks


def test_decimals_are_written_as_canonical_text(seeded: DatabaseService, tmp_path: Path) -> None:
    """PostgreSQL keeps a NUMERIC's scale ("2.50000"): the export drops the trailing zeros, as SQLite's
    canonical text has them dropped already."""
    seeded.insert_market_prices(
        [{"coin_id": "dogecoin", "price_date": date(2025, 3, 1), "price_usd": Decimal("2.50000")}]
    )
    seeded.insert_price_points(
        [
            {
                "coin_id": "dogecoin",
                "quote": "usd",
                "ts": datetime(2025, 3, 1, 1, tzinfo=UTC),
                "price": Decimal("300.000"),
            }
        ]
    )
    out = tmp_path / "export"
    export(seeded, out)
    (price,) = pq.read_table(out / "prices/coin=dogecoin/month=2025-03/part.parquet").to_pylist()
    assert price["price_usd"] == "2.5"
    (point,) = pq.read_table(out / "price_points/coin=dogecoin/quote=usd/month=2025-03").to_pylist()
    assert point["price"] == "300"
    assert point["ts"] == datetime(2025, 3, 1, 1, tzinfo=UTC)
    stats = pq.read_table(out / "price_stats/coin=dogecoin/year=2025").to_pylist()
    assert [s["drawdown"] for s in stats] == [Decimal(0)]


def test_coins_limit_the_export_and_a_later_full_export_adds_the_rest(
    seeded: DatabaseService, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    export(seeded, out, coins=["BTC"], tables=["blocks", "prices", "runs"])
    paths = set(file_states(out))
    assert paths == {
        "blocks/coin=BTC/heights=0-9999/part.parquet",
        "blocks/coin=BTC/heights=10000-19999/part.parquet",
        "prices/coin=bitcoin/month=2025-01/part.parquet",
        "prices/coin=bitcoin/month=2025-02/part.parquet",
        *(p for p in paths if p.startswith("runs/")),
    }
    before = file_states(out)

    export(seeded, out)

    after = file_states(out)
    assert {p: after[p] for p in before} == before  # nothing the first export wrote was rewritten
    assert "blocks/coin=ETH/heights=5000000-5009999/part.parquet" in after
    assert len(BTC_HEIGHTS) == sum(
        pq.read_metadata(out / p).num_rows for p in after if p.startswith("blocks/coin=BTC")
    )


def test_a_lost_file_is_written_again(seeded: DatabaseService, tmp_path: Path) -> None:
    out = tmp_path / "export"
    export(seeded, out)
    lost = out / "prices/coin=bitcoin/month=2025-02/part.parquet"
    checksum = sha256_of(lost)
    lost.unlink()

    result = export(seeded, out)

    assert result.files_written == 1
    assert sha256_of(lost) == checksum
