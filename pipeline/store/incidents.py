"""Incidents and alert deliveries: which failed runs were made good, what is open, what was sent.

The rules that decide what is wrong live in `pipeline.services.incidents`; this module only stores their
verdicts, in a way that several schedulers and watchers can share:

- at most one open incident per (kind, key), by a partial unique index, and every reconciliation runs
  serialized (BEGIN IMMEDIATE on SQLite, a transaction-scoped advisory lock on PostgreSQL), so two
  watchers never both open or both resolve the same incident;
- one delivery row per (incident, event, channel): whoever inserts it sends the message, so each channel
  gets one FIRING and one RESOLVED message however many processes deliver.

Times are the database's clock (`db_now`), like the run log's and the heartbeats'.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from pipeline.actors import Actor
from pipeline.models import AlertDelivery, DataIngestionLog, Incident
from pipeline.schemas import AlertDeliveryData, DataIngestionLogData, IncidentData, IngestionStatus
from pipeline.store.audit import AuditLogMixin
from pipeline.store.runs import RunLogMixin

# Failures the pipeline repairs by itself: the slice is requeued as a child run at once, so they page
# nobody; if the replay fails too, that failure does.
SELF_HEALING = ("Interrupted", "Abandoned", "DatabaseUnavailable")
# Incremental runs start from the unit's bookmark, so a later success of one of them covers what an
# earlier one failed to fetch (for a date range, if it spans the failed one's days). Replays and backfills
# cover only their own slice.
INCREMENTAL_TRIGGERS = ("schedule", "manual")
MADE_GOOD_BY = (IngestionStatus.SUCCESS, IngestionStatus.PARTIAL)
RECONCILE_LOCK = 0x494E4344  # "INCD"
# A resolved incident is still owed its RESOLVED messages for this long (a watcher that was down).
RESOLVED_LOOKBACK = timedelta(days=7)


@dataclass(frozen=True)
class IncidentFinding:
    """One thing a rule finds wrong now; reconciling a set of findings opens and resolves incidents."""

    kind: str
    key: str
    level: str
    summary: str
    since: datetime | None = None  # when the condition began, if known (the first failed run's end)
    source: str | None = None
    data_type: str | None = None
    coin: str | None = None
    first_run_id: int | None = None
    last_run_id: int | None = None


@dataclass
class Reconciled:
    """What one reconciliation changed."""

    opened: list[IncidentData]
    resolved: list[IncidentData]


class IncidentMixin(RunLogMixin, AuditLogMixin):
    """Incident and alert-delivery statements of `DatabaseService` (built on the run log)."""

    # ------------------------------------------------------------------ failed runs made good

    def resolve_fixed_runs(self) -> int:
        """Mark each failed run that a later run made good with that run's id; returns how many changed.

        A failed incremental run (scheduled or `ingest`) is made good by the next successful incremental
        run of its unit, which started from the same bookmark; any failed run by a successful replay of
        its slice (a child run), directly or through a chain of failed replays.
        """
        with self.transaction() as conn:
            return _resolve_fixed_runs(conn)

    def unresolved_failures(self) -> list[DataIngestionLogData]:
        """Failed runs nothing has made good yet, except those the pipeline is already repairing itself."""
        stmt = (
            select(DataIngestionLog)
            .where(
                DataIngestionLog.status == IngestionStatus.FAILED,
                DataIngestionLog.resolved_by_run_id.is_(None),
                or_(
                    DataIngestionLog.error_class.is_(None), DataIngestionLog.error_class.not_in(SELF_HEALING)
                ),
            )
            .order_by(DataIngestionLog.id)
        )
        return self._select_models(stmt, DataIngestionLogData)

    # ------------------------------------------------------------------ open and resolve

    def reconcile_incidents(
        self,
        kinds: Collection[str],
        findings: Sequence[IncidentFinding],
        *,
        observed_at: datetime | None = None,
    ) -> Reconciled:
        """Make the open incidents of `kinds` match `findings`: open what is new, refresh what goes on,
        resolve what is no longer found. Serialized, so concurrent watchers agree.

        `observed_at` is when the findings were read (the database's clock): findings older than another
        watcher's verdict neither reopen an incident it resolved since, nor resolve one it opened since.
        """
        wanted = {(f.kind, f.key): f for f in findings if f.kind in kinds}
        opened: list[int] = []
        resolved: list[int] = []
        with self.transaction() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(RECONCILE_LOCK)))
            now = self.db_now(conn)
            current = conn.execute(
                select(
                    Incident.id,
                    Incident.kind,
                    Incident.key,
                    Incident.last_run_id,
                    Incident.summary,
                    Incident.level,
                    Incident.opened_at,
                ).where(Incident.resolved_at.is_(None), Incident.kind.in_(kinds))
            ).all()
            if observed_at is not None:
                for kind, key in conn.execute(
                    select(Incident.kind, Incident.key).where(
                        Incident.kind.in_(kinds), Incident.resolved_at >= observed_at
                    )
                ):
                    wanted.pop((kind, key), None)  # resolved by someone who saw newer data
            for row in current:
                finding = wanted.pop((row.kind, row.key), None)
                if finding is None and observed_at is not None and row.opened_at >= observed_at:
                    continue  # opened by someone who saw newer data
                if finding is None:
                    conn.execute(
                        update(Incident)
                        .where(Incident.id == row.id)
                        .values(resolved_at=now, **_resolution(conn, row.id, row.kind))
                    )
                    resolved.append(row.id)
                elif (finding.last_run_id, finding.summary, finding.level) != (
                    row.last_run_id,
                    row.summary,
                    row.level,
                ):
                    conn.execute(
                        update(Incident)
                        .where(Incident.id == row.id)
                        .values(last_run_id=finding.last_run_id, summary=finding.summary, level=finding.level)
                    )
            for finding in wanted.values():
                values = {
                    "kind": finding.kind,
                    "key": finding.key[:200],
                    "level": finding.level,
                    "summary": finding.summary,
                    "source": finding.source,
                    "data_type": finding.data_type,
                    "coin": finding.coin,
                    "first_run_id": finding.first_run_id,
                    "last_run_id": finding.last_run_id,
                    "opened_at": min(finding.since, now) if finding.since else now,
                }
                opened.append(
                    conn.execute(insert(Incident).values(**values).returning(Incident.id)).scalar_one()
                )
        return Reconciled(opened=self._incidents_by_id(opened), resolved=self._incidents_by_id(resolved))

    def _incidents_by_id(self, ids: list[int]) -> list[IncidentData]:
        if not ids:
            return []
        return self._select_models(
            select(Incident).where(Incident.id.in_(ids)).order_by(Incident.id), IncidentData
        )

    # ------------------------------------------------------------------ reads

    def get_incidents(
        self,
        *,
        open_only: bool = False,
        resolved_since: datetime | None = None,
        kind: str | None = None,
        limit: int | None = 200,
    ) -> list[IncidentData]:
        """Incidents, open ones first, then newest first. `resolved_since` keeps only those resolved since."""
        stmt = select(Incident).order_by(Incident.resolved_at.is_not(None), Incident.opened_at.desc())
        if open_only:
            stmt = stmt.where(Incident.resolved_at.is_(None))
        if resolved_since is not None:
            stmt = stmt.where(Incident.resolved_at >= resolved_since)
        if kind:
            stmt = stmt.where(Incident.kind == kind)
        if limit is not None:
            stmt = stmt.limit(limit)
        return self._select_models(stmt, IncidentData)

    def get_incident(self, incident_id: int) -> IncidentData | None:
        """One incident, or None."""
        found = self._select_models(select(Incident).where(Incident.id == incident_id), IncidentData)
        return found[0] if found else None

    def incident_for_run(self, run_id: int) -> IncidentData | None:
        """The newest incident a failed run is part of (same unit, opened by it or by an earlier failure)."""
        run = self.get_run(run_id)
        stmt = (
            select(Incident)
            .where(
                Incident.kind == "unit",
                Incident.key == unit_key(run.source, run.data_type, run.coin),
                Incident.first_run_id <= run_id,
                Incident.last_run_id >= run_id,
            )
            .order_by(Incident.id.desc())
            .limit(1)
        )
        found = self._select_models(stmt, IncidentData)
        return found[0] if found else None

    # ------------------------------------------------------------------ people

    def acknowledge_incident(
        self, incident_id: int, *, by: str, note: str | None = None, actor: Actor | None = None
    ) -> IncidentData:
        """Record that someone is on it (who, and a note); alerts keep their course. With `actor`, the
        acknowledgement and its audit row commit together."""
        with self.transaction() as conn:
            changed = conn.execute(
                update(Incident)
                .where(Incident.id == incident_id)
                .values(acknowledged_at=self.db_now(conn), acknowledged_by=by[:128], ack_note=note)
            ).rowcount
            if actor is not None and changed:
                self.record_audit(
                    actor, "acknowledge", target=f"incident:{incident_id}",
                    params={"incident_id": incident_id, "by": by, "note": note}, conn=conn,
                )  # fmt: skip
        return self._existing(incident_id)

    def silence_incident(
        self, incident_id: int, *, until: datetime | None, by: str, actor: Actor | None = None
    ) -> IncidentData:
        """Hold back its alerts until `until` (None lifts the silence). A silenced incident that resolves
        before its FIRING message was sent sends no RESOLVED message either. With `actor`, the change and
        its audit row (action "silence" or "unsilence") commit together."""
        with self.transaction() as conn:
            changed = conn.execute(
                update(Incident)
                .where(Incident.id == incident_id)
                .values(silenced_until=until, silenced_by=by[:128] if until else None)
            ).rowcount
            if actor is not None and changed:
                self.record_audit(
                    actor, "silence" if until else "unsilence", target=f"incident:{incident_id}",
                    params={"incident_id": incident_id, "by": by,
                            "until": until.isoformat() if until else None},
                    conn=conn,
                )  # fmt: skip
        return self._existing(incident_id)

    def _existing(self, incident_id: int) -> IncidentData:
        incident = self.get_incident(incident_id)
        if incident is None:
            msg = f"no incident #{incident_id}"
            raise LookupError(msg)
        return incident

    # ------------------------------------------------------------------ deliveries

    def alerts_due(
        self,
        *,
        after: timedelta,
        channels: Collection[str],
        retry_after: timedelta = timedelta(minutes=5),
        max_attempts: int = 15,
    ) -> list[tuple[IncidentData, str]]:
        """(incident, event) pairs some channel still owes a message for.

        FIRING: open at least `after`, not silenced, and some channel has no settled firing row. RESOLVED:
        resolved lately, and some channel that sent its FIRING message has no settled resolved row. A row
        is settled once sent, while it is being sent or failed lately (`retry_after`), or once it has had
        `max_attempts` attempts: a failed message is tried again later, but not for ever.
        """
        if not channels:
            return []
        now = self.db_now()

        def settled(row: type[AlertDelivery]) -> Any:
            return or_(
                row.status == "sent", row.updated_at >= now - retry_after, row.attempts >= max_attempts
            )

        firing_rows = (
            select(func.count())
            .where(
                AlertDelivery.incident_id == Incident.id,
                AlertDelivery.event == "firing",
                AlertDelivery.channel.in_(channels),
                settled(AlertDelivery),
            )
            .scalar_subquery()
        )
        firing = select(Incident).where(
            Incident.resolved_at.is_(None),
            Incident.opened_at <= now - after,
            or_(Incident.silenced_until.is_(None), Incident.silenced_until <= now),
            firing_rows < len(channels),
        )
        sent = aliased(AlertDelivery)
        told = aliased(AlertDelivery)
        owed = exists().where(
            sent.incident_id == Incident.id,
            sent.event == "firing",
            sent.status == "sent",
            sent.channel.in_(channels),
            # Correlated with the outer incident and `sent`: left alone, SQLAlchemy would make `incidents`
            # a FROM of its own here, and one RESOLVED message anywhere would hide every other one owed.
            ~exists()
            .where(
                told.incident_id == Incident.id,
                told.event == "resolved",
                told.channel == sent.channel,
                settled(told),
            )
            .correlate_except(told),
        )
        resolved = select(Incident).where(Incident.resolved_at >= now - RESOLVED_LOOKBACK, owed)
        due = [(i, "firing") for i in self._select_models(firing.order_by(Incident.id), IncidentData)]
        due += [(i, "resolved") for i in self._select_models(resolved.order_by(Incident.id), IncidentData)]
        return due

    def claim_delivery(
        self,
        incident_id: int,
        event: str,
        channel: str,
        worker_id: str,
        *,
        retry_after: timedelta,
        max_attempts: int,
    ) -> int | None:
        """Take the right to send one message: insert its row (the unique key makes one process win).

        A row left `sending` by a process that died, or `failed` a while ago with attempts to spare, is
        taken over after `retry_after`. Returns the row's id, or None when the message is not ours to send.
        For a RESOLVED message, only channels that sent the FIRING message are owed one.
        """
        with self.transaction() as conn:
            now = self.db_now(conn)
            if event == "resolved" and not conn.scalar(
                select(func.count()).where(
                    AlertDelivery.incident_id == incident_id,
                    AlertDelivery.event == "firing",
                    AlertDelivery.channel == channel,
                    AlertDelivery.status == "sent",
                )
            ):
                return None
            try:
                with conn.begin_nested():
                    claimed: int = conn.execute(
                        insert(AlertDelivery)
                        .values(
                            incident_id=incident_id,
                            event=event,
                            channel=channel,
                            status="sending",
                            attempts=0,
                            claimed_by=worker_id,
                            created_at=now,
                            updated_at=now,
                        )
                        .returning(AlertDelivery.id)
                    ).scalar_one()
                    return claimed
            except IntegrityError:
                pass
            taken: int | None = conn.execute(
                update(AlertDelivery)
                .where(
                    AlertDelivery.incident_id == incident_id,
                    AlertDelivery.event == event,
                    AlertDelivery.channel == channel,
                    AlertDelivery.status.in_(("sending", "failed")),
                    AlertDelivery.updated_at < now - retry_after,
                    AlertDelivery.attempts < max_attempts,
                )
                .values(status="sending", claimed_by=worker_id, updated_at=now)
                .returning(AlertDelivery.id)
            ).scalar()
            return taken

    def finish_delivery(
        self,
        delivery_id: int,
        *,
        sent: bool,
        attempts: int,
        error: str | None,
        worker_id: str | None = None,
        give_up: int | None = None,
    ) -> None:
        """Record how a delivery ended; the first sent FIRING message marks its incident notified.

        Given `worker_id`, only while that worker still holds the claim. `give_up` (a failure that no
        later attempt can cure, such as a 404) records that many attempts (the most a message is given), so
        it is not tried again.
        """
        guard = [AlertDelivery.id == delivery_id]
        if worker_id is not None:
            guard += [AlertDelivery.claimed_by == worker_id, AlertDelivery.status == "sending"]
        with self.transaction() as conn:
            now = self.db_now(conn)
            tried = AlertDelivery.attempts + attempts
            row = conn.execute(
                update(AlertDelivery)
                .where(*guard)
                .values(
                    status="sent" if sent else "failed",
                    attempts=tried if give_up is None else give_up,
                    error=None if sent else error,
                    updated_at=now,
                    sent_at=now if sent else None,
                )
                .returning(AlertDelivery.incident_id, AlertDelivery.event)
            ).one_or_none()
            if row is None:
                return  # taken over meanwhile: the new holder records its own outcome
            if sent and row.event == "firing":
                conn.execute(
                    update(Incident)
                    .where(Incident.id == row.incident_id, Incident.notified_at.is_(None))
                    .values(notified_at=now)
                )

    def get_deliveries(self, *, incident_id: int | None = None, limit: int = 200) -> list[AlertDeliveryData]:
        """Deliveries, newest first."""
        stmt = select(AlertDelivery).order_by(AlertDelivery.id.desc()).limit(limit)
        if incident_id is not None:
            stmt = stmt.where(AlertDelivery.incident_id == incident_id)
        return self._select_models(stmt, AlertDeliveryData)


def unit_key(source: str, data_type: str, coin: str | None) -> str:
    """The key of a unit's incident: "source/data_type/coin"."""
    return f"{source}/{data_type}/{coin or '-'}"


def _resolution(conn: Connection, incident_id: int, kind: str) -> dict[str, object]:
    """How an incident ended: for a failing unit, the run that made its failures good."""
    if kind != "unit":
        return {"resolution": "the condition cleared"}
    incident = conn.execute(
        select(
            Incident.first_run_id, Incident.last_run_id, Incident.source, Incident.data_type, Incident.coin
        ).where(Incident.id == incident_id)
    ).one()
    by = conn.scalar(
        select(func.max(DataIngestionLog.resolved_by_run_id)).where(
            DataIngestionLog.id.between(incident.first_run_id or 0, incident.last_run_id or 0),
            DataIngestionLog.source == incident.source,
            DataIngestionLog.data_type == incident.data_type,
            DataIngestionLog.coin.is_not_distinct_from(incident.coin),
            DataIngestionLog.status == IngestionStatus.FAILED,
        )
    )
    text = f"run #{by} succeeded" if by else "its failed runs no longer count (made good or removed)"
    return {"resolution": text, "resolved_by_run_id": by}


def _resolve_fixed_runs(conn: Connection) -> int:
    failed = DataIngestionLog
    later = aliased(DataIngestionLog)
    open_failure = and_(failed.status == IngestionStatus.FAILED, failed.resolved_by_run_id.is_(None))
    # 1. The next successful incremental run of the unit.
    next_incremental = (
        select(func.min(later.id))
        .where(
            later.source == failed.source,
            later.data_type == failed.data_type,
            later.coin.is_not_distinct_from(failed.coin),
            later.trigger.in_(INCREMENTAL_TRIGGERS),
            later.status.in_(MADE_GOOD_BY),
            later.id > failed.id,
            # A run of a date range (prices) covers the failed one's days; block runs start from the
            # bookmark the failed run did not move, so they always do.
            or_(
                failed.start_date.is_(None),
                and_(
                    later.start_date <= failed.start_date,
                    or_(failed.end_date.is_(None), later.end_date >= failed.end_date),
                ),
            ),
        )
        .scalar_subquery()
    )
    changed = conn.execute(
        update(failed)
        .where(open_failure, failed.trigger.in_(INCREMENTAL_TRIGGERS), next_incremental.is_not(None))
        .values(resolved_by_run_id=next_incremental)
    ).rowcount
    # 2. A successful replay of the slice, or a made-good failed replay (a chain of replays): repeat
    # until nothing changes, one link of the chain per pass.
    for _ in range(50):
        made_good_child = (
            select(func.min(func.coalesce(later.resolved_by_run_id, later.id)))
            .where(
                later.parent_run_id == failed.id,
                or_(later.status.in_(MADE_GOOD_BY), later.resolved_by_run_id.is_not(None)),
            )
            .scalar_subquery()
        )
        step = conn.execute(
            update(failed)
            .where(open_failure, made_good_child.is_not(None))
            .values(resolved_by_run_id=made_good_child)
        ).rowcount
        changed += step
        if not step:
            break
    return changed
