"""One export run: compare the database's partitions with the manifest, rewrite the partitions that
changed, drop the ones that are gone, record it all in the manifest.

- **Incremental.** A partition is rewritten (re-read whole from the database, in one snapshot, and written
  over its file) when it is new, when its newest `updated_at` or the digest of all its `updated_at`
  differs from the one recorded for its file (rows added or changed since: every upsert sets
  `updated_at`, an upsert that changes nothing leaves it), or when its row count differs (rows deleted,
  e.g. the transactions of a reorganised block that were not fetched again yet). So a second export with
  nothing changed writes nothing, and a reorganisation rewrites only the partitions of the heights it
  touched. `full=True` rewrites every partition.
- **Atomic and resumable.** Each file is written to a temporary file, flushed and renamed into place; the
  manifest is saved (atomically) after files are in place, at most every CHECKPOINT_SECONDS and at the end
  of every table, so it never names a file that is not there. An interrupted export leaves whole files
  only; the next run skips the partitions the manifest already records as current and redoes the rest.
  Files no longer in the database and temporary files left by an interruption are removed.
- **Bounded memory.** One partition at a time, read in keyset chunks of `chunk_rows` rows and written in
  row groups of about ROW_GROUP_ROWS rows.
- One export at a time per folder (an exclusive lock on `DIR/.export.lock`).
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from pipeline.errors import ConfigError
from pipeline.export import manifest as manifest_file
from pipeline.export import parquet
from pipeline.export.layout import (
    FILE_NAME,
    HEIGHT_SPAN,
    partition,
    partition_path,
    path_keys,
    resolve_tables,
)
from pipeline.export.manifest import FileEntry, Manifest, TableMark
from pipeline.ranges import utcnow
from pipeline.store.export_reads import ExportTable, PartitionStats, updated_digest

if TYPE_CHECKING:
    from pipeline.database import DatabaseService

CHUNK_ROWS = 20_000
ROW_GROUP_ROWS = 100_000
CHECKPOINT_SECONDS = 1.0
LOCK_NAME = ".export.lock"


@dataclass
class TableResult:
    """What an export did to one table."""

    table: str
    partitions: int = 0
    written: int = 0
    unchanged: int = 0
    removed: int = 0
    rows_written: int = 0


@dataclass
class ExportResult:
    """What an export did."""

    out: Path
    tables: list[TableResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def files_written(self) -> int:
        """Files (re)written in all tables."""
        return sum(t.written for t in self.tables)

    @property
    def rows_written(self) -> int:
        """Rows in the files (re)written."""
        return sum(t.rows_written for t in self.tables)

    @property
    def manifest_path(self) -> Path:
        """The manifest of the export."""
        return self.out / manifest_file.NAME


@dataclass
class _Plan:
    spec: ExportTable
    dirty: list[tuple[str, dict[str, str], PartitionStats]]
    gone: list[str]
    orphans: list[str]
    unchanged: int


def export_parquet(
    db: DatabaseService,
    out: Path,
    *,
    tables: Sequence[str] | None = None,
    coins: Sequence[str] | None = None,
    full: bool = False,
    progress: bool | None = None,
    height_span: int = HEIGHT_SPAN,
    chunk_rows: int = CHUNK_ROWS,
) -> ExportResult:
    """Export the tables (all by default; names from `layout.TABLE_NAMES`) of the coins (all by default;
    symbols or CoinGecko ids) to Parquet under `out`, incrementally (see the module docstring).

    `progress`: a progress bar of rows on stderr (None: only when stderr is a terminal). Raises
    ConfigError for an unknown table or coin, an `out` that is a file or a folder that holds something
    other than an export, or an export already running into it.
    """
    started = time.perf_counter()
    specs = resolve_tables(tables)
    coin_filter = _resolve_coins(db, coins)
    out = _prepare_folder(out)
    result = ExportResult(out)
    with _locked(out):
        manifest = manifest_file.load(out) or Manifest(height_span=height_span, dialect=db.dialect)
        if manifest.height_span != height_span:
            msg = (
                f"{out} holds an export of {manifest.height_span:,} heights per file, not {height_span:,};"
                " use another --out"
            )
            raise ConfigError(msg)
        _remove_temporary_files(out)
        manifest.complete = False
        manifest.dialect = db.dialect
        manifest_file.save(out, manifest)  # from now on the folder is recognisably an export
        export_started = utcnow()
        plans = [
            _plan(db, out, manifest, spec, coin_filter, full=full, height_span=height_span) for spec in specs
        ]
        total = sum(stats.rows for plan in plans for _, _, stats in plan.dirty)
        show = sys.stderr.isatty() if progress is None else progress
        with tqdm(
            total=total, unit="rows", unit_scale=True, file=sys.stderr, disable=not show, desc="export"
        ) as bar:
            writer = _Writer(db, out, manifest, bar, height_span=height_span, chunk_rows=chunk_rows)
            for plan in plans:
                result.tables.append(writer.apply(plan))
                manifest.tables[plan.spec.name] = TableMark(exported_at=export_started)
                writer.checkpoint(force=True)
        manifest.complete = True
        manifest.exported_at = export_started
        manifest_file.save(out, manifest)
    result.seconds = time.perf_counter() - started
    return result


class _Writer:
    """Applies plans: writes files, removes the gone ones, keeps the manifest in step."""

    def __init__(
        self,
        db: DatabaseService,
        out: Path,
        manifest: Manifest,
        bar: tqdm[Any],
        *,
        height_span: int,
        chunk_rows: int,
    ) -> None:
        self.db = db
        self.out = out
        self.manifest = manifest
        self.bar = bar
        self.height_span = height_span
        self.chunk_rows = chunk_rows
        self.saved_at = time.monotonic()

    def apply(self, plan: _Plan) -> TableResult:
        spec = plan.spec
        outcome = TableResult(
            spec.name, partitions=len(plan.dirty) + plan.unchanged, unchanged=plan.unchanged
        )
        for relative in plan.orphans:  # files no manifest names: left by an interruption
            self._remove_file(relative)
        if plan.gone:  # out of the manifest first, then off the disk
            for relative in plan.gone:
                del self.manifest.files[relative]
            self.checkpoint(force=True)
            for relative in plan.gone:
                self._remove_file(relative)
            outcome.removed = len(plan.gone)
        schema = parquet.arrow_schema(spec)
        self.bar.set_postfix_str(spec.name)
        for relative, keys, stats in plan.dirty:
            chunks = self.db.partition_chunks(
                spec, stats.values, height_span=self.height_span, chunk_rows=self.chunk_rows
            )
            digest = [0]
            with closing(chunks):
                written = parquet.write_partition(
                    self.out / relative,
                    schema,
                    self._batches(schema, chunks, relative, digest),
                    key_column=spec.range_column,
                    row_group_rows=ROW_GROUP_ROWS,
                )
            self.manifest.files[relative] = FileEntry(
                path=relative,
                table=spec.name,
                partition=keys,
                rows=written.rows,
                key_column=spec.range_column,
                key_min=written.key_min,
                key_max=written.key_max,
                sha256=written.sha256,
                bytes=written.bytes,
                last_updated=written.last_updated,
                updated_digest=digest[0],
                written_at=utcnow(),
            )
            outcome.written += 1
            outcome.rows_written += written.rows
            self.checkpoint()
        return outcome

    def _batches(
        self, schema: Any, chunks: Iterator[dict[str, list[Any]]], where: str, digest: list[int]
    ) -> Iterator[Any]:
        """Arrow batches of the chunks; adds the digest of their `updated_at` to `digest[0]`."""
        for chunk in chunks:
            digest[0] += updated_digest(chunk["updated_at"])
            batch = parquet.to_batch(schema, chunk, where=where)
            self.bar.update(batch.num_rows)
            yield batch

    def checkpoint(self, *, force: bool = False) -> None:
        """Save the manifest if CHECKPOINT_SECONDS passed since the last save (or `force`)."""
        if force or time.monotonic() - self.saved_at >= CHECKPOINT_SECONDS:
            manifest_file.save(self.out, self.manifest)
            self.saved_at = time.monotonic()

    def _remove_file(self, relative: str) -> None:
        path = self.out / relative
        path.unlink(missing_ok=True)
        folder = path.parent
        while folder != self.out and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent


def _plan(
    db: DatabaseService,
    out: Path,
    manifest: Manifest,
    spec: ExportTable,
    coin_filter: dict[str, set[str]] | None,
    *,
    full: bool,
    height_span: int,
) -> _Plan:
    """Which partitions of a table to write and which files to remove."""
    coins = coin_filter[spec.coin_kind] if coin_filter is not None and spec.coin_kind else None
    current: dict[str, tuple[dict[str, str], PartitionStats]] = {}
    for stats in db.partition_stats(spec, coins=coins, height_span=height_span):
        keys = partition(spec, stats.values, height_span)
        current[partition_path(spec, keys)] = (keys, stats)

    def in_scope(keys: dict[str, str]) -> bool:
        return coins is None or keys.get("coin") in coins

    recorded = {p: e for p, e in manifest.files.items() if e.table == spec.name and in_scope(e.partition)}
    dirty = []
    for relative, (keys, stats) in current.items():
        entry = recorded.get(relative)
        if full or entry is None or _changed(entry, stats) or not _in_place(out / relative, entry):
            dirty.append((relative, keys, stats))
    gone = sorted(set(recorded) - set(current))
    on_disk = (str(p.relative_to(out).as_posix()) for p in (out / spec.name).rglob(FILE_NAME) if p.is_file())
    orphans = sorted(
        p for p in on_disk if p not in manifest.files and p not in current and in_scope(path_keys(p))
    )
    return _Plan(spec, dirty, gone, orphans, unchanged=len(current) - len(dirty))


def _changed(entry: FileEntry, stats: PartitionStats) -> bool:
    return (entry.rows, entry.last_updated, entry.updated_digest) != (
        stats.rows,
        stats.last_updated,
        stats.updated_digest,
    )


def _in_place(path: Path, entry: FileEntry) -> bool:
    try:
        return path.stat().st_size == entry.bytes
    except FileNotFoundError:
        return False


def _resolve_coins(db: DatabaseService, names: Collection[str] | None) -> dict[str, set[str]] | None:
    """{"symbol": symbols, "coingecko": CoinGecko ids} of the named coins (a symbol, CoinGecko id or
    Blockchair chain each, any case), or None for every coin; ConfigError naming an unknown one."""
    if names is None:
        return None
    known = db.get_coins()
    wanted: dict[str, set[str]] = {"symbol": set(), "coingecko": set()}
    for name in names:
        match = [
            c
            for c in known
            if name.lower()
            in {c.symbol.lower(), (c.coingecko_id or "").lower(), (c.blockchair_chain or "").lower()}
        ]
        if not match:
            listed = ", ".join(c.symbol for c in known)
            msg = f"unknown coin {name!r}; the coins are {listed} (or their CoinGecko ids)"
            raise ConfigError(msg)
        for coin in match:
            wanted["symbol"].add(coin.symbol)
            if coin.coingecko_id:
                wanted["coingecko"].add(coin.coingecko_id)
    return wanted


def _prepare_folder(out: Path) -> Path:
    """The export folder, created if missing; ConfigError for a file, or for a folder that holds files
    but no manifest (not an export: nothing in it is overwritten or removed)."""
    if out.exists() and not out.is_dir():
        msg = f"--out {out} is a file, not a folder"
        raise ConfigError(msg)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"cannot create the export folder {out}: {exc.strerror or exc}"
        raise ConfigError(msg) from None
    # The lock and the hidden temporary files an interrupted export leaves (a first manifest cut short
    # before its rename included) do not make a folder "someone else's".
    ours = {LOCK_NAME}
    if not (out / manifest_file.NAME).exists() and any(
        p.name not in ours and not (p.name.startswith(".") and p.name.endswith(".tmp")) for p in out.iterdir()
    ):
        msg = (
            f"--out {out} is a folder that holds other files and no {manifest_file.NAME};"
            " use an empty or new folder"
        )
        raise ConfigError(msg)
    return out


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold the folder's export lock; ConfigError when another export holds it."""
    descriptor = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            msg = f"another export is writing to {out}; wait for it to finish"
            raise ConfigError(msg) from None
        yield
    finally:
        os.close(descriptor)


def _remove_temporary_files(out: Path) -> None:
    """Temporary files an interrupted export left (a reader never sees them: they are hidden and do not
    end in .parquet)."""
    for path in out.rglob(".*.tmp"):
        if path.is_file():
            path.unlink(missing_ok=True)
