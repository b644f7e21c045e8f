"""Helpers of the reliability tests: known-bug failures, notes printed at the end, database dumps."""

from __future__ import annotations

from sqlalchemy import inspect, text

from pipeline.database import DatabaseService

# Lines the tests want printed at the end of the session (seeds, latencies), in order.
NOTES: list[str] = []


class KnownBugError(AssertionError):
    """A failure a known bug explains: tests showing a bug are xfail(strict=True, raises=KnownBugError),
    so that any other failure of the same test is still reported as a failure."""


def note(line: str) -> None:
    """Print a line now (visible with -s) and again in the session summary."""
    print(line)
    NOTES.append(line)


def dump_text(db: DatabaseService) -> str:
    """Every row of every table, as text (to search for a secret in everything the database holds)."""
    parts = []
    with db.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                parts.append(f"{table}: {tuple(row)!r}")
    return "\n".join(parts)
