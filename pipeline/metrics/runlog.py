"""The run log's totals per unit and status, kept current at a cost that does not grow with the log.

The counters (`crypto_pipeline_runs_total` and the requests, retries and waiting behind them) are totals
over every run ever recorded. Summing the whole log on every scrape costs about 0.3 s at 100,000 runs on
SQLite, and grows with the log. But a closed run never changes what it is counted by (its unit, its
status, its requests, retries and waiting: a run is closed once, only while it runs, and never deleted),
so the exporter keeps the totals of the runs that started before a horizon in memory and reads from the
database only what changed:

- the runs that started since the horizon, on every scrape (an hour or two of the log: an index range);
- the runs before the horizon that were still running when it passed them ("pending"; usually none),
  by id, until they close;
- when the horizon moves on (hourly, one hour behind the database's clock), the hour it passes.

The first read sums everything before the horizon once. Runs are recorded with the database's clock
(`db_now`), so no run is written behind a horizon an hour old. A log that shrank (another database
behind the same URL, rows removed by hand) is noticed by its newest id and summed again.

One scrape reads the run log at a time. One that waits longer than `LOCK_WAIT_SECONDS` for another
(itself stuck on a locked or slow database, until the exporter's timeouts end it: see
`store.metrics_reads.exporter_engine`) gives up with `RunLogBusy`: that scrape reports
`crypto_pipeline_database_up 0`, as the one it waited for will, rather than queue past Prometheus's scrape
timeout. It does not serve the totals of an earlier scrape instead: the rest of the scrape would read the
same stuck database anyway.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pipeline.database import DatabaseService
from pipeline.errors import DatabaseUnavailable
from pipeline.schemas import IngestionStatus
from pipeline.store.metrics_reads import RunTally

SETTLE = timedelta(hours=1)  # how far behind the database's clock the horizon stays
LOCK_WAIT_SECONDS = 2.5  # how long a scrape waits for another one's read of the run log
Unit = tuple[str, str, str | None]  # source, data type, coin
TallyKey = tuple[str, str, str | None, str]  # source, data type, coin, status


class RunLogBusy(DatabaseUnavailable):
    """Another scrape has been reading the run log for too long: the database is locked or slow."""


@dataclass
class RunLogView:
    """The run log at one scrape: the closed runs per unit and status, and the running ones per unit."""

    closed: dict[TallyKey, RunTally] = field(default_factory=dict)
    running: dict[Unit, int] = field(default_factory=lambda: defaultdict(int))

    def count(self, tallies: Iterable[RunTally]) -> None:
        """Count tallies in: closed ones into `closed`, running ones into `running`."""
        for tally in tallies:
            if tally.status == IngestionStatus.RUNNING:
                self.running[(tally.source, tally.data_type, tally.coin)] += tally.runs
            else:
                self.closed.setdefault(tally.key, RunTally(*tally.key)).add(tally)


def _merged(into: dict[TallyKey, RunTally], tallies: Iterable[RunTally]) -> None:
    for tally in tallies:
        into.setdefault(tally.key, RunTally(*tally.key)).add(tally)


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


class RunLogTotals:
    """Totals of the run log for one database, kept between scrapes (safe to share between threads)."""

    def __init__(self, lock_wait_seconds: float = LOCK_WAIT_SECONDS) -> None:
        self._lock = threading.Lock()
        self._lock_wait = lock_wait_seconds
        self._horizon: datetime | None = None
        self._settled: dict[TallyKey, RunTally] = {}  # closed runs that started before the horizon
        self._pending: set[int] = set()  # runs before the horizon that were running when it passed
        self._newest_id: int | None = None

    @property
    def horizon(self) -> datetime | None:
        """Runs that started before this are summed in memory (None before the first read)."""
        return self._horizon

    def read(self, db: DatabaseService, now: datetime) -> RunLogView:
        """The totals as of now (`now` on the database's clock). Raises DatabaseUnavailable when another
        read has held them for `lock_wait_seconds` (RunLogBusy: a locked or slow database)."""
        if not self._lock.acquire(timeout=self._lock_wait):
            msg = (
                "database unavailable: another scrape was still reading the run log"
                f" after {self._lock_wait:g} s"
            )
            raise RunLogBusy(msg)
        try:
            return self._read(db, now)
        finally:
            self._lock.release()

    def _read(self, db: DatabaseService, now: datetime) -> RunLogView:
        newest = db.newest_run_id()
        if self._newest_id is not None and (newest is None or newest < self._newest_id):
            self._forget()  # the log shrank: not the log these totals were summed from
        target = _floor_hour(now - SETTLE)
        if self._horizon is None or target > self._horizon:
            self._settle(db, self._horizon, target)
        self._newest_id = newest
        self._settle_pending(db)
        view = RunLogView()
        view.count(self._settled.values())
        if self._pending:
            view.count(db.run_tallies_of(self._pending))
        view.count(db.run_tallies(start=self._horizon))
        return view

    def _forget(self) -> None:
        self._horizon, self._settled, self._pending = None, {}, set()

    def _settle(self, db: DatabaseService, start: datetime | None, end: datetime) -> None:
        """Sum the closed runs that started in [start, end) into the settled totals; the running ones
        become pending. Their ids are read first: one that closes in between is then left out of the sum
        and counted when it is found closed, never twice and never not at all."""
        running = db.running_run_ids(start=start, end=end)
        _merged(self._settled, db.run_tallies(start=start, end=end, closed_only=True, exclude=running))
        self._pending.update(running)
        self._horizon = end

    def _settle_pending(self, db: DatabaseService) -> None:
        """Pending runs that have closed since join the settled totals for good."""
        if not self._pending:
            return
        closed = self._pending - set(db.running_run_ids(among=self._pending))
        if closed:
            _merged(self._settled, db.run_tallies_of(closed))
            self._pending -= closed
