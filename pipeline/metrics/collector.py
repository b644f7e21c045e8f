"""What the exporter says: a prometheus-client collector that reads the database on every scrape.

Nothing is counted in this process: every value comes from the database (the run log, heartbeats,
incidents, bookmarks, coverage), so a scheduler that died, or never started, is as visible as a busy one,
and any number of exporters agree. Each scrape reads everything first and then yields it; when the
database cannot be read the scrape holds only `crypto_pipeline_database_up 0` (and the scrape's own
duration), and the exporter keeps serving.

`METRICS` lists every family with its type, labels and help: the README's table, the Grafana dashboard
and the alert rules are checked against it by the tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.config import Settings
from pipeline.database import DatabaseService
from pipeline.errors import DatabaseError
from pipeline.metrics.background import BackgroundFigures
from pipeline.metrics.runlog import RunLogBusy, RunLogTotals, RunLogView
from pipeline.ranges import utcnow
from pipeline.schemas import CoinMetadataData, IngestionStatus, WorkerState
from pipeline.services import gapfill
from pipeline.services.freshness import Level, freshness_report
from pipeline.services.incidents import ERROR, KINDS, SOURCES, WARNING
from pipeline.store import queries
from pipeline.store.metrics_reads import MICRO

logger = logging.getLogger(__name__)

PREFIX = "crypto_pipeline_"
DAY = timedelta(hours=24)
INCIDENT_LEVELS = {"quota": WARNING}  # every other kind opens at ERROR (services/incidents.py)
UNIT = ("source", "data_type", "coin")
FINAL_STATUSES = (IngestionStatus.SUCCESS, IngestionStatus.PARTIAL, IngestionStatus.FAILED)


@dataclass(frozen=True)
class MetricInfo:
    """One metric family: its full name (as scraped), type, labels and what it says."""

    name: str
    kind: str  # "counter" or "gauge"
    labels: tuple[str, ...]
    help: str


def _info(name: str, kind: str, labels: Sequence[str], help_text: str) -> MetricInfo:
    suffix = "_total" if kind == "counter" else ""
    return MetricInfo(f"{PREFIX}{name}{suffix}", kind, tuple(labels), help_text)


METRICS = {
    info.name: info
    for info in (
        # The run log (all runs ever recorded; counters only count closed runs, so they only grow).
        _info("runs", "counter", (*UNIT, "status"), "Runs closed, by unit and final status."),
        _info("requests", "counter", UNIT, "HTTP requests the closed runs sent, retries included."),
        _info("retries", "counter", UNIT, "Retries the closed runs made."),
        _info(
            "wait_seconds", "counter", UNIT,
            "Seconds the closed runs waited: rate limiter and retry backoff.",
        ),
        _info("runs_running", "gauge", UNIT, "Runs of the unit running now."),
        _info(
            "last_success_timestamp_seconds", "gauge", UNIT,
            "When the newest successful run of the unit finished (unix time).",
        ),
        # The Overview page's figures.
        _info("runs_last_24h", "gauge", ("status",), "Runs started in the last 24 hours, by status."),
        _info(
            "failed_runs_last_24h", "gauge", ("resolution",),
            "Failed runs started in the last 24 hours: unresolved, or made good by a later run.",
        ),
        _info("open_incidents", "gauge", ("kind", "level"), "Open incidents, by kind."),
        _info("incidents_resolved_last_24h", "gauge", (), "Incidents resolved in the last 24 hours."),
        _info("workers", "gauge", ("state",), "Scheduler workers seen in the last week, by state."),
        _info(
            "worker_heartbeat_age_seconds", "gauge", ("worker", "host"),
            "Seconds since the worker's last heartbeat (the database's clock).",
        ),
        _info(
            "blocks_behind_tip", "gauge", ("coin",),
            "Stored blocks behind the chain tip the source reported.",
        ),
        _info(
            "price_age_seconds", "gauge", ("coin",),
            "Age of the newest stored daily price (from 00:00 UTC of its day).",
        ),
        _info(
            "freshness_level", "gauge", ("source", "data_type", "coin", "level"),
            "1 for the freshness level of the measure (ok, warn, fail, unknown), 0 for the others.",
        ),
        # Gaps, requests, storage.
        _info(
            "gaps", "gauge", ("coin", "kind", "quote"),
            "Open gaps (ranges): price_days, price_hours (per quote), block_heights, transactions.",
        ),
        _info(
            "gap_missing", "gauge", ("coin", "kind", "quote"),
            "What the gaps miss: days, hours, heights or transactions, by kind.",
        ),
        _info(
            "background_refreshed_timestamp_seconds", "gauge", (),
            "When the gaps, rows per table and database size were computed (unix time; every minute or so).",
        ),
        _info(
            "requests_spent", "gauge", ("source",),
            "Requests sent to the source in the last 24 hours (what the daily budget is checked against).",
        ),
        _info(
            "daily_request_budget", "gauge", ("source",),
            "Requests the source may be sent per day (settings).",
        ),
        _info("table_rows", "gauge", ("table",), "Rows per table: exact up to 10,000, estimated beyond."),
        _info("database_size_bytes", "gauge", (), "Size of the database on disk."),
        _info("database_up", "gauge", (), "1 when the scrape could read the database, else 0."),
        _info("scrape_duration_seconds", "gauge", (), "Seconds this scrape took to read the database."),
    )
}  # fmt: skip


class _Families:
    """The families of one scrape, built by name from `METRICS`."""

    def __init__(self) -> None:
        self.built: list[Metric] = []

    def add(self, name: str, samples: Iterable[tuple[Sequence[str], float]]) -> None:
        info = METRICS.get(f"{PREFIX}{name}") or METRICS[f"{PREFIX}{name}_total"]
        family: CounterMetricFamily | GaugeMetricFamily
        if info.kind == "counter":
            family = CounterMetricFamily(info.name, info.help, labels=info.labels)
        else:
            family = GaugeMetricFamily(info.name, info.help, labels=info.labels)
        for labels, value in samples:
            family.add_metric(list(labels), value)
        self.built.append(family)


def _label(value: str | None) -> str:
    return value or ""


class PipelineCollector(Collector):
    """Reads the pipeline's state from the database on every `collect()` (one per scrape).

    Safe to share between the server's threads; the run-log totals (`RunLogTotals`) are kept between
    scrapes. `collect()` never raises: a database it cannot read makes `crypto_pipeline_database_up` 0,
    logged once per outage.
    """

    def __init__(self, db: DatabaseService, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.runlog = RunLogTotals()
        self.background = BackgroundFigures(db, settings)
        self._problem: str | None = None  # what the last failed scrape logged, until one succeeds

    def collect(self) -> Iterator[Metric]:
        """Every family, read now; or only `database_up 0` when the database cannot be read."""
        started = time.perf_counter()
        families = _Families()
        try:
            self.read_into(families)
        except Exception as exc:  # noqa: BLE001 - any failure to read is an unreadable database
            self._note_problem(exc)
            families = _Families()
            up = 0.0
        else:
            if self._problem is not None:
                logger.warning("the database is readable again (%s)", self.db.location)
                self._problem = None
            up = 1.0
        families.add("database_up", [((), up)])
        families.add("scrape_duration_seconds", [((), time.perf_counter() - started)])
        yield from families.built

    def prime(self) -> None:
        """Sum the run log and find the gaps once before serving, so that the first scrape is as quick as
        the next ones (a database that cannot be read now is read at the first scrape that can)."""
        try:
            self.runlog.read(self.db, self.db_now())
            self.background.refresh_now()
        except Exception as exc:  # noqa: BLE001 - as in collect()
            self._note_problem(exc)

    def db_now(self) -> datetime:
        """The database's clock; refuses (without creating it) a SQLite file that does not exist."""
        path = self.db.database_file
        if path is not None and not path.exists():
            msg = f"no database file at {path}"
            raise FileNotFoundError(msg)
        return self.db.db_now()

    def _note_problem(self, exc: Exception) -> None:
        # Our errors are one line without a password (pipeline.errors); a driver's own text may quote
        # the URL, so of anything else only the type is logged. A scrape that gave up waiting for another
        # one's read adds nothing to an outage already logged (that read's own error says what it is).
        if isinstance(exc, RunLogBusy) and self._problem is not None:
            return
        shown = str(exc) if isinstance(exc, DatabaseError | FileNotFoundError) else type(exc).__name__
        if shown != self._problem:
            logger.warning(
                "cannot read the database (%s): %s; serving database_up 0", self.db.location, shown
            )
            self._problem = shown

    # ------------------------------------------------------------------------------------------ reads

    def read_into(self, families: _Families) -> None:
        """Read every family from the database (raises when it cannot be read)."""
        db, settings = self.db, self.settings
        now = self.db_now()
        wall = utcnow()  # the dashboard's clock for its 24-hour windows and the price age
        families_of_runs(families, self.runlog.read(db, now))
        by_status = queries.runs_by_status(db, wall - DAY)
        families.add("runs_last_24h", [((status,), n) for status, n in by_status.items()])
        resolution = queries.failures_by_resolution(db, wall - DAY)
        families.add("failed_runs_last_24h", [((name,), n) for name, n in resolution.items()])
        self._incidents(families, wall)
        self._workers(families, now)
        coins = db.get_coins(active_only=True)
        freshness_families(families, coins, settings, wall)
        slow = self.background.get()
        families.add("gaps", sorted(slow.ranges.items()))
        families.add("gap_missing", sorted(slow.missing.items()))
        families.add("table_rows", [((table,), n) for table, n in slow.table_rows.items()])
        size = slow.database_size_bytes
        families.add("database_size_bytes", [] if size is None else [((), size)])
        families.add("background_refreshed_timestamp_seconds", [((), slow.computed_at.timestamp())])
        spent = db.requests_sent_by_source(wall - gapfill.BUDGET_WINDOW, SOURCES)
        families.add("requests_spent", [((source,), spent[source]) for source in SOURCES])
        budgets = [((source,), gapfill.daily_budget(settings, source)) for source in SOURCES]
        families.add("daily_request_budget", budgets)

    def _incidents(self, families: _Families, wall: datetime) -> None:
        counts = {(kind, INCIDENT_LEVELS.get(kind, ERROR)): 0 for kind in KINDS}  # every kind, 0 when none
        counts.update(self.db.open_incident_counts())
        families.add("open_incidents", [(key, n) for key, n in sorted(counts.items())])
        families.add("incidents_resolved_last_24h", [((), self.db.incidents_resolved_since(wall - DAY))])

    def _workers(self, families: _Families, now: datetime) -> None:
        workers = self.db.get_workers()
        families.add(
            "workers", [((state.value,), sum(w.state == state for w in workers)) for state in WorkerState]
        )
        ages = [((w.worker_id, w.host), max((now - w.last_beat).total_seconds(), 0.0)) for w in workers]
        families.add("worker_heartbeat_age_seconds", ages)


def families_of_runs(families: _Families, view: RunLogView) -> None:
    """The run-log counters and gauges from one `RunLogView`.

    Every unit that ever ran has a `runs_total` series for each final status, at 0 until a run ends so:
    `increase()` over a series that appears with its first failure sees no increase, which would hide
    exactly the failure an alert is for.

    Waiting is added up in whole microseconds and divided once, as it is served: a float sum would
    depend on the order of the tallies, and could come out a rounding step lower than the last scrape's
    (a counter reset to Prometheus) when the horizon regroups them or the exporter restarts."""
    Labels = tuple[str, str, str]
    runs: dict[tuple[str, str, str, str], int] = {}
    sums: dict[Labels, list[int]] = {}  # requests, retries, microseconds waited
    last_success: dict[Labels, float] = {}
    units = {(s, d, _label(c)) for s, d, c in view.running}
    for tally in view.closed.values():
        unit = (tally.source, tally.data_type, _label(tally.coin))
        units.add(unit)
        runs[(*unit, tally.status)] = tally.runs
        unit_sums = sums.setdefault(unit, [0, 0, 0])
        unit_sums[0] += tally.requests
        unit_sums[1] += tally.retries
        unit_sums[2] += tally.wait_microseconds
        if tally.status == IngestionStatus.SUCCESS and tally.last_finished_at is not None:
            last_success[unit] = tally.last_finished_at.timestamp()
    for unit in units:
        for status in FINAL_STATUSES:
            runs.setdefault((*unit, status.value), 0)
        sums.setdefault(unit, [0, 0, 0])
    families.add("runs", sorted(runs.items()))
    ordered = sorted(sums.items())
    families.add("requests", [(unit, requests) for unit, (requests, _, _) in ordered])
    families.add("retries", [(unit, retries) for unit, (_, retries, _) in ordered])
    families.add("wait_seconds", [(unit, micro / MICRO) for unit, (_, _, micro) in ordered])
    running = sorted(((s, d, _label(c)), n) for (s, d, c), n in view.running.items())
    families.add("runs_running", running)
    families.add("last_success_timestamp_seconds", sorted(last_success.items()))


def freshness_families(
    families: _Families, coins: list[CoinMetadataData], settings: Settings, wall: datetime
) -> None:
    """Block lag and price age per active coin, and the level of each measure (`services.freshness`)."""
    report = freshness_report(coins, settings)
    families.add(
        "blocks_behind_tip",
        [
            ((item.coin,), item.value)
            for item in report
            if item.data_type == "blocks" and item.value is not None
        ],
    )
    # The age in seconds from the same bookmark the report reads (the report rounds it to 0.1 hour).
    families.add(
        "price_age_seconds",
        [
            (
                (coin.coingecko_id,),
                (wall - datetime.combine(coin.price_bookmark, datetime.min.time(), UTC)).total_seconds(),
            )
            for coin in coins
            if coin.coingecko_id and coin.price_bookmark is not None
        ],
    )
    families.add(
        "freshness_level",
        [
            ((item.source, item.data_type, item.coin, level.value), float(item.level == level))
            for item in report
            for level in Level
        ],
    )
