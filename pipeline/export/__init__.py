"""Export of the database to Parquet files that DuckDB, pandas or Spark can query (`crypto-pipeline export`).

`layout` names the files (one per partition: coin, quote, a range of heights or a month, year or day),
`parquet` turns the store's rows into Arrow tables with exact types and writes each file atomically,
`manifest` records every file with its checksum and the high-water marks, and `exporter` runs an export:
incremental (only partitions whose rows changed since the last export are rewritten), resumable and
bounded in memory. Nothing heavy is imported here, so the command line can load this package cheaply.
"""
