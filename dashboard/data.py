"""The dashboard's only door to the service layer: one cached `DatabaseService`, cached reads, writes.

Pages never import `pipeline.*` query code or SQLAlchemy; they call these functions. Reads are wrapped in
`st.cache_data` with short TTLs (live panels) or longer ones (history); writes clear the caches they make
stale. One engine per process comes from `st.cache_resource`, keyed by the database URL.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import coverage_frames, gate, incident_frames
from pipeline import actors, rollups
from pipeline.actors import Actor
from pipeline.columns import decimal_to_text
from pipeline.config import Settings, get_settings
from pipeline.database import DatabaseService
from pipeline.errors import DatabaseError
from pipeline.runtime.demo import describe_progress, read_demo_progress
from pipeline.runtime.launcher import read_launcher_state
from pipeline.schemas import (
    AlertDeliveryData,
    AuditEntryData,
    CoinMetadataData,
    DataIngestionLogData,
    HealthStatus,
    IncidentData,
    PricePointData,
    ReplayRequestData,
    SchedulerHeartbeatData,
    WorkerState,
)
from pipeline.services import analytics, coverage, gapfill, quality
from pipeline.services import coins as coin_service
from pipeline.services.freshness import Freshness, freshness_report
from pipeline.simulator.control import SimulatorControl
from pipeline.simulator.faults import FAULT_ENDPOINTS, FAULT_KINDS, FaultRule
from pipeline.store import queries

logger = logging.getLogger(__name__)

LIVE_TTL = 10
HISTORY_TTL = 60
PROGRESS_TTL = 1
WORKERS_TTL = 5
TIMELINE_LIMIT = 20_000  # runs on the timeline at most (the newest of the window)
DEMO_PROGRESS_FILE = "demo.json"  # beside the launcher's state file (pipeline/runtime/demo.py)
SIMULATOR_TIMEOUT = 3.0
DASHBOARD_WORKER = f"dashboard:{socket.gethostname()}:{os.getpid()}"


# ---------------------------------------------------------------------------------------------- resources


def settings() -> Settings:
    """The process-wide settings (raises ConfigError when the environment is invalid)."""
    return get_settings()


def _dispose(db: DatabaseService) -> None:
    db.dispose()


@st.cache_resource(show_spinner=False, on_release=_dispose)
def _service(database_url: str) -> DatabaseService:
    return DatabaseService(database_url, settings=get_settings())


def service() -> DatabaseService:
    """The service (and engine) of the primary database, DATABASE_URL: every write, and the reads that
    must see the writes just made (the replay-request queue), go here."""
    return _service(settings().DATABASE_URL)


# After a write from this dashboard, its pages read the primary for this long: the page drawn right after
# a click must show the click's effect (an acknowledgement, a run made here), and a replica may not have
# replayed it yet; its results then go to the cache, so a replica read could keep a stale page for
# LIVE_TTL. Ten times any lag measured on a healthy replica.
READ_YOUR_WRITES_SECONDS = 30.0
_last_write = [float("-inf")]  # time.monotonic() of this process's last write


def _wrote() -> None:
    """Note a write: reads go to the primary for READ_YOUR_WRITES_SECONDS."""
    _last_write[0] = time.monotonic()


def reader() -> DatabaseService:
    """The service the pages read from: the replica of DATABASE_READ_URL when one is configured (reads
    then scale out without touching the writers), else the primary; the primary too for a while after
    this dashboard wrote (READ_YOUR_WRITES_SECONDS)."""
    url = settings().DATABASE_READ_URL
    if url and time.monotonic() - _last_write[0] > READ_YOUR_WRITES_SECONDS:
        return _service(url)
    return service()


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def replica_lag() -> float | None:
    """Seconds the replica the pages read from trails its primary; None without a replica."""
    if not settings().DATABASE_READ_URL:
        return None
    return reader().replica_lag_seconds()


def redact(text: str | None) -> str | None:
    """Remove configured secrets from a message before it is stored or shown."""
    if text is None:
        return None
    for secret in settings().secrets():
        text = text.replace(secret, "***")
    return text


# ---------------------------------------------------------------------------------------------- health


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def health() -> HealthStatus:
    """Whether the database answers and which schema revision it is at (never raises)."""
    return reader().health_check()


def database_problem() -> str | None:
    """Why the database cannot be read right now, or None when it answers. Never cached: this is the
    probe of the outage banner, which must see the database come back."""
    try:
        reader().schema_revision()
    except DatabaseError as exc:  # its message is one line without a password (pipeline.errors)
        return redact(str(exc))
    except Exception as exc:  # noqa: BLE001 - a driver's own text may quote the URL: name the type only
        return type(exc).__name__
    return None


def launcher_state() -> dict[str, Any] | None:
    """What `crypto-pipeline up` publishes about the processes it supervises (restarts, exit codes);
    None when the dashboard was not started by `up`. A small file, read on every call."""
    return read_launcher_state(get_settings().LAUNCHER_STATE_FILE)


def demo_progress() -> dict[str, Any] | None:
    """What a running `up --demo` scenario has done so far (pipeline.runtime.demo, `demo.json` beside the
    launcher's state file); None outside the demo. A small file, read on every call."""
    state_file = get_settings().LAUNCHER_STATE_FILE
    if not state_file:
        return None
    return read_demo_progress(Path(state_file).parent / DEMO_PROGRESS_FILE)


def demo_line(progress: dict[str, Any]) -> str:
    """One sentence on how far the demo has come ("Demo: step 3 of 6 done — ...")."""
    return describe_progress(progress)


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def coins() -> list[CoinMetadataData]:
    """Known coins."""
    return reader().get_coins()


COIN_STATE_COLUMNS = (
    "Symbol", "Name", "State", "Chain", "Family", "CoinGecko id", "Newest block", "Chain tip",
    "Newest price day", "Listed since",
)  # fmt: skip


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def coin_states() -> pd.DataFrame:
    """Every coin with its state (enabled, disabled by `crypto-pipeline coins disable`, or inactive), where
    it is read from, and how far its data reaches (the bookmarks: newest stored block and price day)."""
    rows = [
        {
            "Symbol": c.symbol,
            "Name": c.name,
            "State": coin_service.state_of(c),
            "Chain": c.blockchair_chain,
            "Family": c.chain_family if c.blockchair_chain else None,
            "CoinGecko id": c.coingecko_id,
            "Newest block": c.block_bookmark,
            "Chain tip": c.chain_tip_height,
            "Newest price day": c.price_bookmark,
            "Listed since": c.listed_since,
        }
        for c in reader().get_coins()
    ]
    # Nullable integers: a coin without blocks yet shows an empty cell, not NaN or a float height.
    frame = pd.DataFrame(rows, columns=list(COIN_STATE_COLUMNS))
    # Days as datetimes: a coin without prices yet shows an empty cell, not "None".
    for column in ("Newest price day", "Listed since"):
        frame[column] = pd.to_datetime(frame[column])
    return frame.astype({"Newest block": "Int64", "Chain tip": "Int64"})


@st.cache_data(ttl=WORKERS_TTL, show_spinner=False)
def workers() -> list[SchedulerHeartbeatData]:
    """Scheduler workers seen in the last week, with state up / stale / down."""
    return reader().get_workers()


def scheduler_alive() -> bool:
    """Whether at least one scheduler worker beats on time."""
    return any(w.state == WorkerState.UP for w in workers())


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def freshness() -> list[Freshness]:
    """Price age and block lag per active coin, with levels ok / warn / fail / unknown."""
    return freshness_report(reader().get_coins(active_only=True), settings())


# ---------------------------------------------------------------------------------------------- runs


def _since(hours: int) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def runs_by_status(hours: int = 24) -> dict[str, int]:
    """Runs started in the last `hours` per status."""
    return queries.runs_by_status(reader(), _since(hours))


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def runs_per_hour(hours: int = 24) -> pd.DataFrame:
    """Runs per hour and status over the last `hours`."""
    return queries.runs_per_hour(reader(), _since(hours))


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def latest_failures(limit: int = 10) -> pd.DataFrame:
    """The newest failed runs that nothing has made good yet, with their stored error."""
    return queries.latest_failures(reader(), limit, unresolved_only=True)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def failures_by_resolution(hours: int = 24) -> dict[str, int]:
    """Failed runs started in the last `hours`: "unresolved" and "made_good" (by a later run)."""
    return queries.failures_by_resolution(reader(), _since(hours))


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def runs(
    sources: tuple[str, ...] = (),
    data_types: tuple[str, ...] = (),
    coins: tuple[str, ...] = (),
    statuses: tuple[str, ...] = (),
    start: date | None = None,
    end: date | None = None,
    limit: int = 500,
) -> pd.DataFrame:
    """Runs matching the filters, newest first."""
    return queries.runs_table(
        reader(),
        sources=sources,
        data_types=data_types,
        coins=coins,
        statuses=statuses,
        start=start,
        end=end,
        limit=limit,
    )


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def run_timeline(hours: int) -> tuple[pd.DataFrame, datetime]:
    """The runs reaching into the last `hours` (and those still running), oldest first, with the columns
    the timeline draws (ids, job, worker, status, start, end and the time split), and the moment they were
    read: the chart's "now", so that it stays the same figure while the read is cached (a new figure is a
    new chart, which would drop the bar just clicked)."""
    now = datetime.now(UTC)
    return queries.run_timeline(reader(), now - timedelta(hours=hours), limit=TIMELINE_LIMIT), now


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def run_facets() -> queries.RunFacets:
    """The sources, data types and coins present in the run log."""
    return queries.run_facets(reader())


@st.cache_data(ttl=PROGRESS_TTL, show_spinner=False)
def run(run_id: int) -> DataIngestionLogData | None:
    """One run, or None when the id is unknown."""
    try:
        return reader().get_run(run_id)
    except LookupError:
        return None


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def child_runs(run_id: int) -> list[DataIngestionLogData]:
    """Reruns made from a run, oldest first."""
    return reader().get_child_runs(run_id)


@st.cache_data(ttl=PROGRESS_TTL, show_spinner=False)
def rerun_request(run_id: int) -> ReplayRequestData | None:
    """The newest rerun request of a run (open or finished), if any."""
    return service().latest_request_for(run_id)


# ---------------------------------------------------------------------------------------------- incidents


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def run_audit(run_ids: tuple[int, ...]) -> dict[int, list[AuditEntryData]]:
    """Run id -> the audited actions about it (a rerun of it) and the one that caused it, oldest first."""
    return reader().audit_for_runs(run_ids)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def audit_log(limit: int = 100) -> list[AuditEntryData]:
    """The newest audited write actions (who reran, filled gaps, acknowledged, silenced, changed a coin)."""
    return reader().audit_entries(limit=limit)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def incidents(open_only: bool = False, limit: int = 200) -> list[IncidentData]:
    """Incidents, open ones first, then newest first."""
    return reader().get_incidents(open_only=open_only, limit=limit)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def resolved_incidents(hours: int = 24) -> list[IncidentData]:
    """Incidents resolved in the last `hours`."""
    return reader().get_incidents(resolved_since=_since(hours), limit=None)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def incident(incident_id: int) -> IncidentData | None:
    """One incident, or None when the id is unknown."""
    return reader().get_incident(incident_id)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def deliveries(incident_id: int) -> list[AlertDeliveryData]:
    """The alert messages of one incident, newest first."""
    return reader().get_deliveries(incident_id=incident_id)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def incident_for_run(run_id: int) -> IncidentData | None:
    """The newest incident a failed run is part of, or None (also when the run is unknown)."""
    try:
        return reader().incident_for_run(run_id)
    except LookupError:
        return None


# ---------------------------------------------------------------------------------------------- prices


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def prices(coin_ids: tuple[str, ...], start: date, end: date) -> pd.DataFrame:
    """Daily prices of the coins in [start, end]."""
    return queries.prices_frame(reader(), coin_ids, start, end)


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def price_coverage(coin_ids: tuple[str, ...], start: date, end: date) -> pd.DataFrame:
    """First/last day, days held and days missing per coin in [start, end]."""
    return queries.price_coverage(reader(), coin_ids, start, end)


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def price_bounds(coin_ids: tuple[str, ...]) -> tuple[date | None, date | None]:
    """First and last stored day over the coins."""
    return queries.price_bounds(reader(), coin_ids)


# ---------------------------------------------------------------------------------------------- chains


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def blocks_per_day(coin_symbol: str, start: date, end: date) -> pd.DataFrame:
    """Blocks, transactions, fees and sizes per day of one chain."""
    return queries.blocks_per_day(reader(), coin_symbol, start, end)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def transactions_per_day(coin_symbol: str, start: date, end: date) -> pd.DataFrame:
    """Chain and stored transactions per day of one chain."""
    return queries.transactions_per_day(reader(), coin_symbol, start, end)


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def first_block_day(coin_symbol: str) -> date | None:
    """The day of a chain's oldest stored block."""
    return queries.first_block_day(reader(), coin_symbol)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def latest_blocks(coin_symbol: str, limit: int = 100) -> pd.DataFrame:
    """The newest blocks of a chain."""
    return queries.latest_blocks(reader(), coin_symbol, limit)


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def block_transactions(coin_symbol: str, block_id: int) -> pd.DataFrame:
    """The stored transactions of one block."""
    return queries.block_transactions(reader(), coin_symbol, block_id)


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def addresses(coin_symbol: str) -> pd.DataFrame:
    """Watched addresses of a chain, balances as exact coin-unit text and USD."""
    rows = queries.addresses(reader(), coin_symbol)
    return pd.DataFrame(
        {
            "address": [a.address for a in rows],
            "balance": [decimal_to_text(a.balance) for a in rows],
            "balance_usd": [float(a.balance_usd) if a.balance_usd is not None else None for a in rows],
            "received": [decimal_to_text(a.received) or "" for a in rows],
            "spent": [decimal_to_text(a.spent) or "" for a in rows],
            "transactions": [a.transaction_count for a in rows],
            "last_seen": [a.last_seen for a in rows],
        }
    )


# ---------------------------------------------------------------------------------------------- coverage


def coverage_window() -> tuple[date, date]:
    """The days coverage is judged over: the last COVERAGE_DAYS days (UTC)."""
    return gapfill.coverage_window(settings())


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def coverage_coins() -> list[CoinMetadataData]:
    """The active coins coverage, gap filling and the checks are about."""
    return reader().get_coins(active_only=True)


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def price_coverage_ranges(start: date, end: date) -> pd.DataFrame:
    """Per coin, runs of days in one state (present / missing / failed / unavailable) over [start, end]."""
    rows = []
    for coin in coverage_coins():
        if coin.coingecko_id:
            found = coverage.price_coverage(reader(), settings(), coin, start, end)
            rows += [(found.coin_id, r.start, r.end, r.state.value, r.days) for r in found.ranges]
    return pd.DataFrame(rows, columns=["coin_id", "start", "end", "state", "days"])


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def block_coverage_ranges() -> pd.DataFrame:
    """Per chain, held height ranges, holes between them, and blocks with incomplete transactions."""
    rows = []
    for coin in coverage_coins():
        if not coin.blockchair_chain:
            continue
        found = coverage.block_coverage(reader(), settings(), coin)
        parts = (("held", found.held), ("hole", found.holes), ("incomplete", found.incomplete_transactions))
        for kind, ranges in parts:
            rows += [
                (coin.symbol, found.chain, kind, r.start, r.end, r.size, getattr(r, "missing", None))
                for r in ranges
            ]
    columns = ["coin_symbol", "chain", "kind", "start", "end", "size", "missing"]
    return pd.DataFrame(rows, columns=columns)


def fill_plan() -> gapfill.FillPlan:
    """The fewest slices that close every gap of the active coins, with their cost (not cached)."""
    return gapfill.plan_fill(reader(), settings(), coverage_coins())


@st.cache_data(ttl=PROGRESS_TTL, show_spinner=False)
def backfill_queue() -> dict[str, int]:
    """Backfill requests per status."""
    return queries.backfill_queue(service())


# ---------------------------------------------------------------------------------------------- quality


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def findings(subjects: tuple[str, ...] = (), limit: int = 200) -> pd.DataFrame:
    """Stored data-quality findings, newest first: all, or the newest `limit` of each subject."""
    if not subjects:
        return coverage_frames.findings_frame(quality.get_findings(reader(), limit=limit))
    rows = [row for s in subjects for row in quality.get_findings(reader(), subject=s, limit=limit)]
    return coverage_frames.findings_frame(rows)


def coin_subjects(coin: CoinMetadataData) -> tuple[str, ...]:
    """The subjects findings about a coin can carry: its CoinGecko id, symbol and chain."""
    names = (coin.coingecko_id, coin.symbol, coin.blockchair_chain)
    return tuple(dict.fromkeys(n for n in names if n))


def price_finding_marks(
    coin_ids: tuple[str, ...], start: date, end: date
) -> tuple[dict[date, list[str]], dict[date, str]]:
    """Days in [start, end] named in findings about these coins (day -> labels, day -> worst severity)."""
    return coverage_frames.finding_marks(findings(coin_ids), "day", low=start, high=end)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def _block_finding_marks(
    coin_symbol: str,
) -> tuple[dict[int, list[str]], dict[int, str], dict[date, list[str]], dict[date, str]]:
    """(height -> labels, height -> severity, day -> labels, day -> severity) of a chain's findings."""
    coin = next((c for c in coins() if c.symbol == coin_symbol), None)
    subjects = coin_subjects(coin) if coin else (coin_symbol,)
    heights, levels = coverage_frames.finding_marks(findings(subjects), "height")
    days = queries.block_days(reader(), coin_symbol, list(heights)) if heights else {}
    return heights, levels, *coverage_frames.by_day(heights, levels, days)


def block_height_marks(coin_symbol: str, low: int, high: int) -> tuple[dict[int, list[str]], dict[int, str]]:
    """Heights in [low, high] named in findings about a chain (height -> labels, height -> severity)."""
    heights, levels, _, _ = _block_finding_marks(coin_symbol)
    return {h: labels for h, labels in heights.items() if low <= h <= high}, levels


def block_day_marks(
    coin_symbol: str, start: date, end: date
) -> tuple[dict[date, list[str]], dict[date, str]]:
    """Days in [start, end] of blocks named in findings about a chain (day -> labels, day -> severity)."""
    _, _, days, levels = _block_finding_marks(coin_symbol)
    return {d: labels for d, labels in days.items() if start <= d <= end}, levels


# ---------------------------------------------------------------------------------------------- storage


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def database_size() -> int | None:
    """Bytes on disk (SQLite file plus WAL, or the PostgreSQL database)."""
    return reader().database_size_bytes()


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def table_counts() -> dict[str, int]:
    """Rows per table, including the scheduler's coordination tables: exact up to
    `queries.EXACT_COUNT_LIMIT` rows, estimated beyond (a `queries.RowCounts`, whose `approximate` names
    the estimated tables), so that the cost does not grow with the tables."""
    return queries.table_row_estimates(reader())


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def date_coverage() -> pd.DataFrame:
    """Price coverage per coin over everything stored."""
    return queries.date_coverage(reader())


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def height_coverage() -> pd.DataFrame:
    """Block height coverage per chain."""
    return queries.height_coverage(reader())


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def run_log(start: date) -> pd.DataFrame:
    """Runs and rows inserted per day, status and data type since a day (one query)."""
    return queries.run_log_per_day(reader(), start)


def log_volume(start: date) -> pd.DataFrame:
    """Run-log rows per day and status since a day."""
    return queries.log_volume_per_day(reader(), start, run_log(start))


def growth(start: date) -> pd.DataFrame:
    """Rows inserted per day and data type since a day (from the run log)."""
    return queries.rows_written_per_day(reader(), start, run_log(start))


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def created_growth(start: date) -> pd.DataFrame:
    """Rows per day of `created_at` and table since a day (scans the tables)."""
    return queries.rows_created_per_day(reader(), start)


# ---------------------------------------------------------------------------------------------- writes


def _require_writes(action: str, *, target: str | None = None, run_id: int | None = None) -> Actor:
    """Refuse a write that the page should not have offered: the pages hide write actions when
    `gate` says no, and this keeps a forgotten check (or a forged request) from turning into an open door.
    The session's role must allow `action` (`pipeline.actors.ACTIONS`); a refusal raises PermissionError
    saying who, in which role, and what is needed, and is recorded in the audit log as "denied".
    `target` and `run_id` name what the refused write was about, so the refusal shows beside its run.
    Returns who writes (the `Actor` the store records)."""
    access = gate.current(settings())
    actor = access.actor()
    if not access.allows(action):
        msg = access.denial(action)
        try:
            service().record_audit(
                actor, action, target=target, outcome="denied", detail=msg, run_id=run_id
            )
        except Exception:  # noqa: BLE001 - the refusal stands whatever keeps its audit row out
            logger.exception("the refusal of %s by %s is not in the audit log", action, actor)
        raise PermissionError(msg)
    return actor


def _requested_by(actor: Actor, how: str | None = None) -> str:
    """The `requested_by` of a replay request queued here: "dashboard", with the user when one logged in
    (the audit log records the OS user of a loopback dashboard without login), and how."""
    named = actor.name not in (actors.os_user(), "dashboard")
    who = f"dashboard ({actor.name})" if named else "dashboard"
    return f"{who}: {how}" if how else who


def _runs_changed() -> None:
    _wrote()
    cached_reads = (
        runs, run, child_runs, rerun_request, open_requests, runs_by_status, runs_per_hour, run_audit,
        audit_log,
    )  # fmt: skip
    for cached in (*cached_reads, latest_failures, failures_by_resolution, run_timeline):
        cached.clear()


def _incidents_changed() -> None:
    _wrote()
    for cached in (incidents, resolved_incidents, incident, incident_for_run, audit_log):
        cached.clear()


def _who(by: str) -> str:
    """The name an acknowledgement or a silence is recorded under (required: the next person on call
    asks them)."""
    name = " ".join(by.split())
    if not name:
        msg = "say who you are: the name is recorded with the incident"
        raise ValueError(msg)
    return name


def acknowledge_incident(incident_id: int, *, by: str, note: str | None = None) -> IncidentData:
    """Record that someone is on an incident (who, and an optional note); its alerts keep their course.
    Raises LookupError for an unknown incident, ValueError without a name."""
    actor = _require_writes("acknowledge", target=f"incident:{incident_id}")
    acknowledged = service().acknowledge_incident(
        incident_id, by=_who(by), note=(note or "").strip() or None, actor=actor
    )
    _incidents_changed()
    return acknowledged


def silence_incident(incident_id: int, *, hours: float | None, by: str) -> IncidentData:
    """Hold back an incident's alerts for `hours`, or until it is resolved (`hours=None`)."""
    actor = _require_writes("silence", target=f"incident:{incident_id}")
    until = incident_frames.UNTIL_RESOLVED if hours is None else datetime.now(UTC) + timedelta(hours=hours)
    silenced = service().silence_incident(incident_id, until=until, by=_who(by), actor=actor)
    _incidents_changed()
    return silenced


def unsilence_incident(incident_id: int, *, by: str) -> IncidentData:
    """Lift an incident's silence: its alerts go out again."""
    actor = _require_writes("unsilence", target=f"incident:{incident_id}")
    lifted = service().silence_incident(incident_id, until=None, by=_who(by), actor=actor)
    _incidents_changed()
    return lifted


def simulator() -> SimulatorControl:
    """The control API of the local simulator the sources point at (the demo points both at it).

    Only with SIMULATED_DATA: otherwise BLOCKCHAIR_BASE_URL is the real API, which has no control API and
    must not be sent one (PermissionError).
    """
    current = settings()
    if not current.SIMULATED_DATA:
        msg = "the simulator panel is only for simulated data (SIMULATED_DATA=true)"
        raise PermissionError(msg)
    return SimulatorControl(current.BLOCKCHAIR_BASE_URL, timeout=SIMULATOR_TIMEOUT)


def simulator_stats() -> dict[str, Any]:
    """The simulator's fault rules (with their counters), request counts per endpoint, tips and reorgs.
    Not cached: the panel shows what a fault just did. Raises OSError when the simulator does not answer."""
    return simulator().stats()


# What the Simulator page offers (the simulator's own lists).
FAULT_KIND_CHOICES = FAULT_KINDS
FAULT_ENDPOINT_CHOICES = FAULT_ENDPOINTS


def add_simulator_fault(kind: str, endpoint: str, chain: str | None, times: int | None) -> None:
    """Arm one fault rule in the simulator (a write: refused when the dashboard is read-only)."""
    actor = _require_writes("simulator_fault")
    simulator().add_fault(FaultRule(kind, endpoint=endpoint, chain=chain, times=times))
    service().record_audit(
        actor, "simulator_fault", target=f"simulator:{endpoint}",
        params={"kind": kind, "endpoint": endpoint, "chain": chain, "times": times},
    )  # fmt: skip


def clear_simulator_faults() -> None:
    """Remove every fault rule of the simulator (a write: refused when the dashboard is read-only)."""
    actor = _require_writes("simulator_fault")
    simulator().clear_faults()
    service().record_audit(actor, "simulator_fault", target="simulator", params={"clear": True})


def settings_rows() -> pd.DataFrame:
    """The effective settings for an admin's view: secrets only as set or not, URL passwords as ***, and
    whether each differs from its default. Refused (PermissionError) below the admin role."""
    access = gate.current(settings())
    if not actors.may_view(access.role, "settings"):
        msg = "the settings view needs the admin role"
        raise PermissionError(msg)
    return pd.DataFrame(settings().describe(), columns=["setting", "value", "changed"])


def set_coin_enabled(symbol: str, enabled: bool) -> bool:
    """Turn a coin's ingestion on or off (admin); the change and its audit row commit together, and the
    scheduler sees it at its next job. Returns whether anything changed."""
    action = "coin_enable" if enabled else "coin_disable"
    actor = _require_writes(action, target=f"coin:{symbol}")
    _coin, changed = coin_service.set_enabled(service(), symbol, enabled, actor=actor)
    _wrote()
    for cached in (coins, coin_states, audit_log):
        cached.clear()
    return changed


def request_rerun(run_id: int) -> ReplayRequestData:
    """Queue a rerun of one run for the scheduler (a second request while one is open returns it)."""
    actor = _require_writes("rerun", target=f"run:{run_id}", run_id=run_id)
    request = service().request_rerun(run_id, requested_by=_requested_by(actor), actor=actor)
    _runs_changed()
    return request


def request_reruns(run_ids: list[int]) -> list[ReplayRequestData]:
    """Queue reruns of several runs; runs that vanished or are running are skipped."""
    actor = _require_writes("rerun")
    requests = []
    for run_id in run_ids:
        try:
            requests.append(
                service().request_rerun(run_id, requested_by=_requested_by(actor, "rerun all"), actor=actor)
            )
        except (LookupError, ValueError) as exc:
            logger.warning("rerun of run %s not queued: %s", run_id, exc)
    _runs_changed()
    return requests


def run_here(run_id: int) -> ReplayRequestData:
    """Replay a run's slice in this process (no scheduler alive) and return its request, finished.

    The same path as the scheduler and `crypto-pipeline rerun` (pipeline.ingestion.requests.serve_here): the
    run's open request is claimed by id, checked against the budget, replayed, and its outcome recorded
    with the error redacted. Raises ValueError with one line when the run is still running, another
    process holds the request or its slice, or the slice was refused (the reason is also on the request).
    """
    from pipeline.ingestion.replay import Replayer
    from pipeline.ingestion.requests import serve_here

    actor = _require_writes("run_here", target=f"run:{run_id}", run_id=run_id)
    db = service()
    try:
        request, _result = serve_here(
            db,
            Replayer(settings(), db),
            run_id,
            requested_by=_requested_by(actor, "run here"),
            actor=actor,
            worker_id=DASHBOARD_WORKER,
        )
    except (LookupError, ValueError):
        raise  # a refusal: the caller shows it
    except Exception:
        logger.exception("run here of run %s failed", run_id)  # recorded on the request too
        raise
    finally:
        _wrote()
        st.cache_data.clear()  # the replay may have written prices, blocks, runs and requests
    return request


def queue_fill(plan: gapfill.FillPlan) -> tuple[int, int]:
    """Queue a previewed plan as backfill requests for the scheduler (requested_by "dashboard").

    Returns (new requests, slices already queued): a slice with an open request is not queued twice.
    """
    actor = _require_writes("fill_gaps")
    since = datetime.now(UTC)
    queued = gapfill.queue_plan(service(), plan, requested_by=_requested_by(actor), actor=actor)
    new = sum(1 for r in queued if r.requested_at >= since)
    _wrote()
    backfill_queue.clear()
    audit_log.clear()
    return new, len(queued) - new


@st.cache_data(ttl=PROGRESS_TTL, show_spinner=False)
def open_requests(run_ids: tuple[int, ...]) -> dict[int, str]:
    """Run id -> status of its open rerun request, for the runs shown."""
    return queries.open_requests(service(), run_ids)


# ---------------------------------------------------------------------------------------------- candles

CANDLE_COLUMNS = [
    "coin_id", "quote", "interval", "start", "open", "high", "low", "close", "volume", "samples", "sampling",
]  # fmt: skip
POINT_COLUMNS = ["coin_id", "quote", "ts", "price", "volume", "market_cap", "sampling"]


def bucket_start(moment: datetime, interval: str) -> datetime:
    """The start of the candle of `interval` that holds `moment` (UTC; weeks start on Monday)."""
    return rollups.bucket_start(moment, interval)


def quote_currencies() -> list[str]:
    """The quote currencies prices are kept in (QUOTE_CURRENCIES; USD when it names none)."""
    return list(settings().QUOTE_CURRENCIES) or ["usd"]


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def candles(
    coin_ids: tuple[str, ...], quote: str, interval: str, start: datetime, end: datetime
) -> pd.DataFrame:
    """The coins' candles of `interval` in `quote` whose bucket starts in [start, end], by coin then
    time; prices and volume stay exact Decimals (the charts convert them, the CSV keeps them)."""
    rows = [
        candle.model_dump()
        for coin in coin_ids
        for candle in reader().get_candles(
            coin_id=coin, interval=interval, start=start, end=end, quote=quote
        )
    ]
    frame = pd.DataFrame(rows, columns=CANDLE_COLUMNS)
    frame["start"] = pd.to_datetime(frame["start"], utc=True)
    return frame


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def daily_points(coin_ids: tuple[str, ...], quote: str, start: date, end: date) -> pd.DataFrame:
    """The coins' daily 00:00 UTC points in `quote` over [start, end] (for USD the seed's daily prices),
    by coin then day; the only prices older than the hourly window."""
    rows = [
        {**point.model_dump(), "volume": point.volume_24h}
        for coin in coin_ids
        for point in reader().get_price_points(
            coin_id=coin, start=start, end=end, quote=quote, granularity="daily"
        )
    ]
    frame = pd.DataFrame(rows, columns=POINT_COLUMNS)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def latest_prices(coin_ids: tuple[str, ...], quote: str) -> dict[str, PricePointData]:
    """The newest intraday (5-minute) point of each coin in `quote`; coins without one are left out."""
    found = {coin: reader().get_latest_price(coin, quote) for coin in coin_ids}
    return {coin: point for coin, point in found.items() if point is not None}


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def candle_quotes() -> list[tuple[str, str]]:
    """The (coin_id, quote) pairs that have candles."""
    return reader().price_point_quotes()


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def price_stats(coin_ids: tuple[str, ...], start: date, end: date) -> pd.DataFrame:
    """Daily return, 30-day volatility, running peak and drawdown of the coins' USD closes in [start, end]."""
    return analytics.price_stats_frame(reader(), coin_ids, start, end)


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def return_correlation(coin_ids: tuple[str, ...], start: date, end: date) -> pd.DataFrame:
    """Coin x coin correlation of daily USD returns over [start, end] (NaN with too few shared days)."""
    return analytics.return_correlation(reader(), coin_ids, start, end)


def chain_decimals(coin_symbol: str) -> int:
    """The decimals of a chain's base unit: 8 (satoshi) for bitcoin-like chains, 18 (wei) for ethereum."""
    coin = next((c for c in coins() if c.symbol == coin_symbol), None)
    return queries.DECIMALS.get(coin.chain_family if coin else "bitcoin", 8)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def chain_stats(coin_symbol: str, start: date, end: date) -> pd.DataFrame:
    """A chain's daily rollups over [start, end]: blocks, transactions, fees in base units (`fees_native`),
    in coin units (`fees`, exact Decimal) and USD, mean block interval and size, first and last height."""
    frame = analytics.chain_stats_frame(reader(), coin_symbol, start, end)
    decimals = chain_decimals(coin_symbol)
    frame["fees"] = pd.Series(
        [Decimal(int(v)).scaleb(-decimals) for v in frame["fees_native"]], index=frame.index, dtype=object
    )
    frame["day"] = pd.to_datetime(frame["day"])
    for column in ("blocks", "transactions", "first_height", "last_height"):
        frame[column] = frame[column].astype("int64")
    return frame
