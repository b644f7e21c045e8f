"""`DIR/manifest.json`: every file of an export with its table, partition keys, row count, key range and
SHA-256, and per table the high-water mark (the newest `updated_at` exported) and when it was exported.

Each file also carries its own high-water mark (`last_updated`, the newest `updated_at` among its rows)
and a digest of all its rows' `updated_at` (`store.export_reads.updated_digest`): the next export rewrites
a partition whose newest `updated_at` or digest in the database differs from the file's (rows changed or
added) or whose row count differs (rows deleted). The manifest is written atomically (a
temporary file, flushed, renamed over the old one) and only ever names files that are in place; while an
export runs (and after one was interrupted) `complete` is false and the manifest may trail the newest
files by up to CHECKPOINT_SECONDS. Example (one file)::

    {"format": "crypto-pipeline parquet export", "version": 1, "complete": true,
     "exported_at": "2026-01-05T10:00:00.123456+00:00", "height_span": 10000, "dialect": "sqlite",
     "tables": {"blocks": {"high_water_mark": "2026-01-05T09:58:01.5+00:00", "files": 1, "rows": 250,
                           "exported_at": "2026-01-05T10:00:00.123456+00:00"}},
     "files": [{"path": "blocks/coin=BTC/heights=870000-879999/part.parquet", "table": "blocks",
                "partition": {"coin": "BTC", "heights": "870000-879999"}, "rows": 250,
                "key_range": {"column": "block_id", "min": 870000, "max": 870249},
                "sha256": "9f2c...", "bytes": 48211, "last_updated": "2026-01-05T09:58:01.5+00:00",
                "updated_digest": 125000375, "written_at": "2026-01-05T10:00:00.4+00:00"}]}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

NAME = "manifest.json"
FORMAT = "crypto-pipeline parquet export"
VERSION = 1


@dataclass
class FileEntry:
    """One file of the export."""

    path: str
    table: str
    partition: dict[str, str]
    rows: int
    key_column: str
    key_min: Any
    key_max: Any
    sha256: str
    bytes: int
    last_updated: datetime | None
    updated_digest: int
    written_at: datetime

    def to_json(self) -> dict[str, Any]:
        """The entry as the manifest holds it."""
        return {
            "path": self.path,
            "table": self.table,
            "partition": self.partition,
            "rows": self.rows,
            "key_range": {
                "column": self.key_column,
                "min": _plain(self.key_min),
                "max": _plain(self.key_max),
            },
            "sha256": self.sha256,
            "bytes": self.bytes,
            "last_updated": _plain(self.last_updated),
            "updated_digest": self.updated_digest,
            "written_at": _plain(self.written_at),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileEntry:
        """Read an entry back (key bounds stay as JSON has them: numbers or ISO text)."""
        key_range = data["key_range"]
        last = data.get("last_updated")
        return cls(
            path=str(data["path"]),
            table=str(data["table"]),
            partition={str(k): str(v) for k, v in data["partition"].items()},
            rows=int(data["rows"]),
            key_column=str(key_range["column"]),
            key_min=key_range["min"],
            key_max=key_range["max"],
            sha256=str(data["sha256"]),
            bytes=int(data["bytes"]),
            last_updated=None if last is None else datetime.fromisoformat(last),
            updated_digest=int(data["updated_digest"]),
            written_at=datetime.fromisoformat(data["written_at"]),
        )


@dataclass
class TableMark:
    """A table's state in the export: when it was last exported (None: never completed)."""

    exported_at: datetime | None = None


@dataclass
class Manifest:
    """The manifest of one export folder."""

    height_span: int
    dialect: str
    files: dict[str, FileEntry] = field(default_factory=dict)
    tables: dict[str, TableMark] = field(default_factory=dict)
    exported_at: datetime | None = None
    complete: bool = False

    def high_water_mark(self, table: str) -> datetime | None:
        """The newest `updated_at` exported of a table: the largest of its files' marks."""
        marks = [e.last_updated for e in self.files.values() if e.table == table and e.last_updated]
        return max(marks, default=None)

    def to_json(self) -> dict[str, Any]:
        """The whole manifest as JSON data; files in path order."""
        tables = {}
        for name in sorted(set(self.tables) | {e.table for e in self.files.values()}):
            entries = [e for e in self.files.values() if e.table == name]
            mark = self.tables.get(name, TableMark())
            tables[name] = {
                "high_water_mark": _plain(self.high_water_mark(name)),
                "files": len(entries),
                "rows": sum(e.rows for e in entries),
                "exported_at": _plain(mark.exported_at),
            }
        return {
            "format": FORMAT,
            "version": VERSION,
            "complete": self.complete,
            "exported_at": _plain(self.exported_at),
            "height_span": self.height_span,
            "dialect": self.dialect,
            "tables": tables,
            "files": [self.files[path].to_json() for path in sorted(self.files)],
        }


def load(folder: Path) -> Manifest | None:
    """The folder's manifest, or None when it has none; ConfigError when it is not one we can read."""
    path = folder / NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{path} cannot be read as an export manifest ({exc}); remove the folder or use another --out"
        raise ConfigError(msg) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        msg = f"{path} is not a crypto-pipeline export manifest; use another --out"
        raise ConfigError(msg)
    if data.get("version") != VERSION:
        found = data.get("version")
        msg = f"{path} is version {found!r} of the export format, this is {VERSION}; use another --out"
        raise ConfigError(msg)
    try:
        entries = [FileEntry.from_json(item) for item in data["files"]]
        manifest = Manifest(
            height_span=int(data["height_span"]),
            dialect=str(data.get("dialect", "")),
            files={e.path: e for e in entries},
            tables={name: TableMark(_time(info.get("exported_at"))) for name, info in data["tables"].items()},
            exported_at=_time(data.get("exported_at")),
            complete=bool(data.get("complete")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        msg = f"{path} is damaged ({type(exc).__name__}: {exc}); remove the folder or use another --out"
        raise ConfigError(msg) from None
    return manifest


def save(folder: Path, manifest: Manifest) -> None:
    """Write the manifest atomically: a temporary file beside it, flushed, renamed over it, the folder
    flushed."""
    path = folder / NAME
    temporary = folder / f".{NAME}.{os.getpid()}.tmp"
    text = json.dumps(manifest.to_json(), indent=1, ensure_ascii=False) + "\n"
    try:
        with temporary.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _plain(value: Any) -> Any:
    """A JSON value: times and dates as ISO 8601 text, the rest as it is."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))
