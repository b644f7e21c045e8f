"""The incident rules: what is wrong now, turned into incidents that open and resolve by themselves.

Every rule reads the database only, so any process can evaluate it: the scheduler after its units and
`crypto-pipeline watch`, which must notice a dead scheduler. Kinds and what opens / resolves them:

- unit (error): a run of the unit failed for a reason that needs a person; resolves when later runs
  made every such failure good (the next incremental success, or a successful replay of the slice), or
  when the coin is taken out of ingestion.
- freshness (error): a coin's newest block or price is past its fail threshold; resolves under it.
- quality (error): an error-level data-quality finding in the last 24 hours; resolves after 24 hours
  without a new one.
- scheduler (error): no scheduler beats and the last one seen did not stop cleanly; resolves on a new
  beat (or once the last one seen is one that stopped cleanly).
- quota (warning): a source's requests of the last 24 hours reach QUOTA_WARN_RATIO of its daily budget;
  resolves when they fall below it.

A unit is source x data type x coin. A failure "needs a person" unless the pipeline repairs it itself
(a unit cut short by SIGTERM, an abandoned unit, a database outage: their slices are requeued at once);
a fault that the unit's own retries cured never failed the run, so it opens nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from datetime import timedelta

from pipeline.config import Settings
from pipeline.database import DatabaseService
from pipeline.ranges import utcnow
from pipeline.schemas import DataIngestionLogData, WorkerState
from pipeline.services.freshness import Level, freshness_report
from pipeline.services.gapfill import daily_budget, requests_spent
from pipeline.store.incidents import IncidentFinding, Reconciled, unit_key
from pipeline.store.quality import select_findings

ERROR, WARNING = "error", "warning"
KINDS = ("unit", "freshness", "quality", "scheduler", "quota")
QUALITY_WINDOW = timedelta(hours=24)
SOURCES = ("blockchair", "coingecko")
SUMMARY_CHARS = 400


def unit_findings(db: DatabaseService) -> list[IncidentFinding]:
    """One finding per unit of an active coin with failed runs that nothing has made good yet.

    A coin taken out of ingestion (inactive or disabled) is never run again, so its failures could never
    be made good: they stop counting, and its incident resolves.
    """
    db.resolve_fixed_runs()
    active = {c.symbol for c in db.get_coins(active_only=True)}
    retired = {
        name
        for coin in db.get_coins()
        if coin.symbol not in active
        for name in (coin.symbol, coin.coingecko_id, coin.blockchair_chain)
        if name
    }
    by_unit: dict[tuple[str, str, str | None], list[DataIngestionLogData]] = defaultdict(list)
    for run in db.unresolved_failures():
        if run.coin not in retired:
            by_unit[(run.source, run.data_type, run.coin)].append(run)
    findings = []
    for (source, data_type, coin), runs in by_unit.items():
        first, last = runs[0], runs[-1]
        error = f"{last.error_class or 'error'}: {last.error_message or 'no message'}"
        count = "1 failed run" if len(runs) == 1 else f"{len(runs)} failed runs"
        findings.append(
            IncidentFinding(
                kind="unit",
                key=unit_key(source, data_type, coin),
                level=ERROR,
                summary=f"{count} not made good yet; latest #{last.id}: {error}"[:SUMMARY_CHARS],
                since=first.finished_at or first.started_at,
                source=source,
                data_type=data_type,
                coin=coin,
                first_run_id=first.id,
                last_run_id=last.id,
            )
        )
    return findings


def freshness_findings(db: DatabaseService, settings: Settings) -> list[IncidentFinding]:
    """One finding per coin and measure past its fail threshold."""
    return [
        IncidentFinding(
            kind="freshness",
            key=f"{item.source}/{item.data_type}/{item.coin}",
            level=ERROR,
            summary=f"{item.coin} {item.data_type} stale: {item.value:g} {item.unit} ({item.detail})",
            source=item.source,
            data_type=item.data_type,
            coin=item.coin,
        )
        for item in freshness_report(db.get_coins(active_only=True), settings)
        if item.level == Level.FAIL
    ]


def quality_findings(db: DatabaseService) -> list[IncidentFinding]:
    """One finding per (check, subject) with an error-level finding in the last 24 hours."""
    newest: dict[tuple[str, str], dict[str, object]] = {}
    for row in select_findings(db, severity="error", since=utcnow() - QUALITY_WINDOW, limit=1000):
        newest.setdefault((str(row["check_name"]), str(row["subject"])), row)  # rows come newest first
    return [
        IncidentFinding(
            kind="quality",
            key=f"{check}/{subject}",
            level=ERROR,
            summary=f"{check} on {subject} {row['slice']}: {row['observed']}"[:SUMMARY_CHARS],
            last_run_id=row["run_id"] if isinstance(row["run_id"], int) else None,
        )
        for (check, subject), row in newest.items()
    ]


def scheduler_findings(db: DatabaseService) -> list[IncidentFinding]:
    """A finding when no scheduler beats and the last one seen did not stop cleanly (it died)."""
    workers = db.get_workers()
    if not workers or any(w.state == WorkerState.UP for w in workers):
        return []
    last = max(workers, key=lambda w: w.last_beat)
    if last.stopped_at is not None:
        return []  # the last scheduler was stopped on purpose (an older one's death is history)
    return [
        IncidentFinding(
            kind="scheduler",
            key="scheduler",
            level=ERROR,
            summary=f"no live scheduler: the last, {last.worker_id}, stopped beating at "
            f"{last.last_beat:%Y-%m-%d %H:%M:%S} UTC without stopping cleanly",
            since=last.last_beat,
        )
    ]


def quota_findings(db: DatabaseService, settings: Settings) -> list[IncidentFinding]:
    """A finding per source whose requests of the last 24 hours near its daily budget."""
    findings = []
    for source in SOURCES:
        spent, budget = requests_spent(db, source), daily_budget(settings, source)
        if spent >= settings.QUOTA_WARN_RATIO * budget:
            findings.append(
                IncidentFinding(
                    kind="quota",
                    key=source,
                    level=WARNING,
                    summary=f"{source}: {spent:,} requests in the last 24 h of a daily budget of {budget:,}"
                    f" ({source.upper()}_DAILY_REQUEST_BUDGET)",
                    source=source,
                )
            )
    return findings


def evaluate(db: DatabaseService, settings: Settings, kinds: Collection[str] = KINDS) -> Reconciled:
    """Run the rules of `kinds` and open / resolve incidents to match what they find."""
    observed_at = db.db_now()  # before reading: see reconcile_incidents
    findings: list[IncidentFinding] = []
    if "unit" in kinds:
        findings += unit_findings(db)
    if "freshness" in kinds:
        findings += freshness_findings(db, settings)
    if "quality" in kinds:
        findings += quality_findings(db)
    if "scheduler" in kinds:
        findings += scheduler_findings(db)
    if "quota" in kinds:
        findings += quota_findings(db, settings)
    return db.reconcile_incidents(kinds, findings, observed_at=observed_at)


def is_error_level_open(db: DatabaseService) -> bool:
    """Whether any error-level incident is open (`status` exits 1 then)."""
    return any(i.level == ERROR for i in db.get_incidents(open_only=True, limit=None))
