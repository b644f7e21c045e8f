"""Where each partition's file goes: `DIR/<table>/<key>=<value>/.../part.parquet` (Hive style, so DuckDB
and Spark see the partition keys as columns).

| table | partitioned by | example |
|---|---|---|
| blocks, transactions | coin symbol, HEIGHT_SPAN heights | `blocks/coin=BTC/heights=870000-879999/` |
| addresses | coin symbol | `addresses/coin=ETH/` |
| prices | CoinGecko id, month | `prices/coin=bitcoin/month=2026-01/` |
| price_points, candles | CoinGecko id, quote, month | `candles/coin=bitcoin/quote=usd/month=2026-01/` |
| price_stats, chain_stats | coin, year | `chain_stats/coin=BTC/year=2026/` |
| runs | UTC day the run started | `runs/day=2026-01-05/` |
| coins | nothing (one file) | `coins/` |

Partition values are percent-encoded in paths, so no coin name can leave its folder.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath
from urllib.parse import quote, unquote

from pipeline.errors import ConfigError
from pipeline.store.export_reads import EXPORT_TABLES, ExportTable, PartitionValue, bucket_bounds

TABLE_NAMES: tuple[str, ...] = tuple(EXPORT_TABLES)
# Blocks and transactions: one file per coin and this many heights (about 70 days of Bitcoin, 1.4 days of
# Ethereum: a few MB of blocks, and up to a few million transactions, per file).
HEIGHT_SPAN = 10_000
FILE_NAME = "part.parquet"
_KEY_NAMES = {"height": "heights"}


def partition(spec: ExportTable, values: tuple[PartitionValue, ...], height_span: int) -> dict[str, str]:
    """A partition's keys as they appear in its path and the manifest, e.g. {"coin": "BTC", "heights":
    "0-9999"}."""
    keys: dict[str, str] = {}
    for name, value in zip(spec.partition_columns, values, strict=True):
        if name == "height":
            low, high = bucket_bounds("height", value, height_span)
            keys[_KEY_NAMES[name]] = f"{low}-{high - 1}"
        else:
            keys[name] = str(value)
    return keys


def partition_path(spec: ExportTable, keys: dict[str, str]) -> str:
    """The file of a partition, relative to the export folder (POSIX separators)."""
    folders = [f"{name}={quote(value, safe='')}" for name, value in keys.items()]
    return str(PurePosixPath(spec.name, *folders, FILE_NAME))


def path_keys(relative: str) -> dict[str, str]:
    """The partition keys of a file path under the export folder (the inverse of `partition_path`)."""
    parts = PurePosixPath(relative).parts[1:-1]
    return {name: unquote(value) for name, _, value in (part.partition("=") for part in parts)}


def resolve_tables(names: Iterable[str] | None) -> list[ExportTable]:
    """The tables to export, in the layout's order (all of them for None); ConfigError naming the
    unknown ones."""
    if names is None:
        return list(EXPORT_TABLES.values())
    wanted = set(names)
    unknown = sorted(wanted - set(EXPORT_TABLES))
    if unknown:
        msg = f"unknown table {', '.join(map(repr, unknown))}; the tables are {', '.join(TABLE_NAMES)}"
        raise ConfigError(msg)
    return [spec for name, spec in EXPORT_TABLES.items() if name in wanted]
