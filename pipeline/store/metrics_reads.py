"""The reads of the Prometheus exporter (`pipeline.metrics`): run-log tallies by unit and status over a
range of start times or a set of runs, open incidents by kind, incidents resolved lately, and requests
sent per source.

Every statement is a range read of an index, never a walk of the whole run log, so that a scrape stays
cheap however long the log grows: `pipeline.metrics.runlog` keeps the tallies of settled runs in the
exporter's memory and asks here only for what is new (see there).

Waiting is summed in whole microseconds, each run's rounded by the database, never as floats: float
addition depends on its order, and the exporter adds the same runs in different orders (the database's
sum of the settled hours plus the recent runs in Python, regrouped when the horizon moves or the exporter
restarts), so a float total could come out one rounding step lower than the scrape before, which
Prometheus takes for a counter reset. An integer total is the same whatever the order.

The exporter's engine (`exporter_engine`) gives up on a locked or slow database within seconds
(PostgreSQL's statement and lock timeouts, a short SQLite busy timeout), so that a scrape answers
`crypto_pipeline_database_up 0` well within Prometheus's scrape timeout instead of hanging.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Engine, case, cast, event, func, select

from pipeline.config import Settings
from pipeline.models import DataIngestionLog, Incident
from pipeline.schemas import IngestionStatus
from pipeline.store.engine import DatabaseCore, create_db_engine

IN_BATCH = 500  # ids per IN list
MICRO = 1_000_000  # waiting is summed in microseconds (integers: exact in any order)
# The exporter's limits (Prometheus's scrape timeout in deploy/ is 10 s): a statement may run 5 s and wait
# 2 s for a lock on PostgreSQL; SQLite waits at most 2 s for a lock (the shared default is 30 s).
EXPORTER_STATEMENT_TIMEOUT_MS = 5_000
EXPORTER_LOCK_TIMEOUT_MS = 2_000
EXPORTER_SQLITE_BUSY_TIMEOUT_MS = 2_000


@dataclass
class RunTally:
    """The runs of one unit (source x data type x coin) in one status: how many, the requests, retries
    and waiting they recorded, and when the newest of them finished (None while they run)."""

    source: str
    data_type: str
    coin: str | None
    status: str
    runs: int = 0
    requests: int = 0
    retries: int = 0
    wait_microseconds: int = 0  # each run's waiting rounded to a microsecond, summed exactly
    last_finished_at: datetime | None = None

    @property
    def wait_seconds(self) -> float:
        """The waiting in seconds (one division of the exact sum: the same for the same runs)."""
        return self.wait_microseconds / MICRO

    @property
    def key(self) -> tuple[str, str, str | None, str]:
        """(source, data type, coin, status): what the tally is of."""
        return (self.source, self.data_type, self.coin, self.status)

    def add(self, other: RunTally) -> None:
        """Count another tally of the same key into this one."""
        self.runs += other.runs
        self.requests += other.requests
        self.retries += other.retries
        self.wait_microseconds += other.wait_microseconds
        if other.last_finished_at is not None and (
            self.last_finished_at is None or other.last_finished_at > self.last_finished_at
        ):
            self.last_finished_at = other.last_finished_at


def _wait_microseconds() -> Any:
    """A run's waiting in whole microseconds, rounded by the database (every read rounds the same way, so
    a run counts the same whether it is summed in SQL or in Python)."""
    return cast(func.round(DataIngestionLog.wait_seconds * MICRO), BigInteger)


def _tally_select() -> Any:
    r = DataIngestionLog
    return select(
        r.source,
        r.data_type,
        r.coin,
        r.status,
        func.count(),
        func.coalesce(func.sum(r.requests_made), 0),
        func.coalesce(func.sum(r.retries), 0),
        func.coalesce(func.sum(_wait_microseconds()), 0),
        func.max(r.finished_at),
    ).group_by(r.source, r.data_type, r.coin, r.status)


def _tallies(rows: Any) -> list[RunTally]:
    return [
        RunTally(
            source=source,
            data_type=data_type,
            coin=coin,
            status=str(getattr(status, "value", status)),
            runs=int(runs),
            requests=int(requests or 0),
            retries=int(retries or 0),
            wait_microseconds=int(wait or 0),
            last_finished_at=finished,
        )
        for source, data_type, coin, status, runs, requests, retries, wait, finished in rows
    ]


class MetricsReadMixin(DatabaseCore):
    """Exporter reads of `DatabaseService`."""

    def run_tallies(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        closed_only: bool = False,
        exclude: Collection[int] = (),
    ) -> list[RunTally]:
        """Tallies per unit and status of the runs started in [start, end) (`end` open when None);
        `closed_only` leaves out the runs still running, `exclude` some ids.

        With a `start`, the rows of the range are read through the started_at index and tallied here:
        grouped in SQL, SQLite would walk the whole (source, data_type, coin, started_at) index instead,
        to skip sorting the groups, which costs more the longer the log is (150 ms at 100,000 runs,
        against 1 ms for an hour of them). Without one (every run before `end`: the exporter's first
        read), the database groups them.
        """
        r = DataIngestionLog
        columns = (r.source, r.data_type, r.coin, r.status, r.requests_made, r.retries, _wait_microseconds())
        if start is None:
            stmt = _tally_select()
        else:
            stmt = select(*columns, r.finished_at).where(r.started_at >= start)
        if end is not None:
            stmt = stmt.where(r.started_at < end)
        if closed_only:
            stmt = stmt.where(r.status != IngestionStatus.RUNNING)
        for batch in _batches(sorted(exclude)):
            stmt = stmt.where(r.id.not_in(batch))
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        if start is None:
            return _tallies(rows)
        found: dict[tuple[str, str, str | None, str], RunTally] = {}
        for source, data_type, coin, status, requests, retries, wait, finished in rows:
            one = RunTally(
                source, data_type, coin, str(getattr(status, "value", status)), 1,
                int(requests or 0), int(retries or 0), int(wait or 0), finished,
            )  # fmt: skip
            found.setdefault(one.key, RunTally(*one.key)).add(one)
        return list(found.values())

    def run_tallies_of(self, run_ids: Collection[int]) -> list[RunTally]:
        """Tallies per unit and status of some runs, by id (primary-key reads)."""
        found: dict[tuple[str, str, str | None, str], RunTally] = {}
        with self.engine.connect() as conn:
            for batch in _batches(sorted(run_ids)):
                for tally in _tallies(conn.execute(_tally_select().where(DataIngestionLog.id.in_(batch)))):
                    found.setdefault(tally.key, RunTally(*tally.key)).add(tally)
        return list(found.values())

    def running_run_ids(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        among: Collection[int] | None = None,
    ) -> list[int]:
        """Ids of the runs still running that started in [start, end), or of those among some ids (the
        (status, started_at) index, or the primary key)."""
        r = DataIngestionLog
        stmt = select(r.id).where(r.status == IngestionStatus.RUNNING)
        if start is not None:
            stmt = stmt.where(r.started_at >= start)
        if end is not None:
            stmt = stmt.where(r.started_at < end)
        with self.engine.connect() as conn:
            if among is None:
                return [int(run_id) for run_id in conn.scalars(stmt)]
            return [
                int(run_id)
                for batch in _batches(sorted(among))
                for run_id in conn.scalars(stmt.where(r.id.in_(batch)))
            ]

    def newest_run_id(self) -> int | None:
        """The highest run id (one seek of the primary key); None for an empty log."""
        with self.engine.connect() as conn:
            newest = conn.scalar(select(func.max(DataIngestionLog.id)))
        return None if newest is None else int(newest)

    def requests_sent_by_source(self, since: datetime, sources: Sequence[str]) -> dict[str, int]:
        """Requests the runs started since a time recorded, per source (the sums of
        `store.runs.requests_sent_since`, for several sources at once): conditional sums over one range
        read of the started_at index, not GROUP BY source, which SQLite would answer by walking every
        run of the source."""
        r = DataIngestionLog
        stmt = select(
            *(
                func.coalesce(func.sum(case((r.source == source, r.requests_made), else_=0)), 0)
                for source in sources
            )
        ).where(r.started_at >= since)
        with self.engine.connect() as conn:
            sums = conn.execute(stmt).one()
        return {source: int(n or 0) for source, n in zip(sources, sums, strict=True)}

    def open_incident_counts(self) -> dict[tuple[str, str], int]:
        """Open incidents per (kind, level)."""
        i = Incident
        stmt = select(i.kind, i.level, func.count()).where(i.resolved_at.is_(None)).group_by(i.kind, i.level)
        with self.engine.connect() as conn:
            return {(str(kind), str(level)): int(n) for kind, level, n in conn.execute(stmt)}

    def incidents_resolved_since(self, since: datetime) -> int:
        """How many incidents were resolved since a time (the resolved_at index)."""
        stmt = select(func.count()).select_from(Incident).where(Incident.resolved_at >= since)
        with self.engine.connect() as conn:
            return int(conn.scalar(stmt) or 0)


def exporter_engine(settings: Settings) -> Engine:
    """The exporter's engine of DATABASE_URL: it gives up on a locked or slow database within seconds, so
    that a scrape reports the database down within Prometheus's scrape timeout instead of hanging.

    - PostgreSQL: every connection has statement_timeout 5 s and lock_timeout 2 s (a table locked by a
      migration, VACUUM FULL or LOCK TABLE fails the read in 2 s), and reads in autocommit, so that a read
      is one round trip, not three (BEGIN, the read, ROLLBACK).
    - SQLite: a busy timeout of 2 s (SQLITE_BUSY_TIMEOUT_MS when that is shorter) instead of the
      shared 30 s; the default transactions, which cost no round trip.
    """
    busy = min(settings.SQLITE_BUSY_TIMEOUT_MS, EXPORTER_SQLITE_BUSY_TIMEOUT_MS)
    engine = create_db_engine(settings.DATABASE_URL, busy_timeout_ms=busy)
    if engine.dialect.name != "postgresql":
        return engine
    event.listen(engine, "connect", _postgres_timeouts)
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def _postgres_timeouts(dbapi_conn: Any, _record: Any) -> None:
    """Set the exporter's timeouts on a new PostgreSQL connection, for its whole session (in autocommit,
    so that no transaction is left open). They replace the URL's own values of these two settings; its
    other options (a search_path) stay."""
    autocommit = dbapi_conn.autocommit
    dbapi_conn.autocommit = True
    try:
        with dbapi_conn.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {int(EXPORTER_STATEMENT_TIMEOUT_MS)}")
            cursor.execute(f"SET lock_timeout = {int(EXPORTER_LOCK_TIMEOUT_MS)}")
    finally:
        dbapi_conn.autocommit = autocommit


def _batches(ids: Sequence[int]) -> list[Sequence[int]]:
    return [ids[i : i + IN_BATCH] for i in range(0, len(ids), IN_BATCH)]
