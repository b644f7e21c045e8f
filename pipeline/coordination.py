"""How scheduler workers share one database: heartbeats, job-slot leases, the rerun queue, abandoned runs.

Everything goes through short write transactions, so several workers (on PostgreSQL) and the dashboard
can act at once: a job slot is run by whoever inserts its lease row; a rerun request is claimed with
`SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL and inside one `BEGIN IMMEDIATE` transaction on SQLite.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from pipeline.models import DataIngestionLog, JobLease, RerunRequest, SchedulerHeartbeat, utcnow
from pipeline.schemas import IngestionStatus, RerunRequestData, SchedulerHeartbeatData, WorkerState

if TYPE_CHECKING:
    from pipeline.database import DatabaseService

ABANDONED = "abandoned"
OPEN_STATUSES = ("pending", "running")


def slice_key(slice_params: dict[str, Any]) -> str:
    """A stable identity for a planned slice, so the same gap is never queued twice."""
    params = slice_params["params"]
    span = "..".join(str(params[k]) for k in ("start", "end", "start_height", "end_height") if k in params)
    subject = params.get("coin_id") or params.get("chain")
    return f"{slice_params['source']}/{slice_params['data_type']}/{subject}/{span}"[:200]


def _insert(conn: Connection, table: type) -> object:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


class CoordinationMixin:
    """Worker coordination queries of `DatabaseService`."""

    # ------------------------------------------------------------------ heartbeats

    def beat(self: DatabaseService, worker_id: str, *, started_at: datetime, current_job: str | None) -> None:
        """Record that a worker is alive (insert or refresh its row)."""
        now = utcnow()
        values = {
            "worker_id": worker_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": started_at,
            "last_beat": now,
            "current_job": current_job,
            "stopped_at": None,
        }
        with self.transaction() as conn:
            stmt = _insert(conn, SchedulerHeartbeat).values(**values)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["worker_id"],
                    set_={
                        "last_beat": now,
                        "current_job": current_job,
                        "stopped_at": None,
                        "pid": values["pid"],
                    },
                )
            )

    def stop_worker(self: DatabaseService, worker_id: str) -> None:
        """Mark a worker as cleanly stopped."""
        with self.transaction() as conn:
            conn.execute(
                update(SchedulerHeartbeat)
                .where(SchedulerHeartbeat.worker_id == worker_id)
                .values(stopped_at=utcnow(), current_job=None)
            )

    def get_workers(
        self: DatabaseService, *, since: timedelta = timedelta(days=7)
    ) -> list[SchedulerHeartbeatData]:
        """Workers seen lately, with their state: up, stale (beats late) or down (stopped or long silent)."""
        stale_after = timedelta(seconds=self.settings.HEARTBEAT_STALE_SECONDS)
        now = utcnow()
        stmt = (
            select(SchedulerHeartbeat)
            .where(SchedulerHeartbeat.last_beat >= now - since)
            .order_by(SchedulerHeartbeat.last_beat.desc())
        )
        workers = self._select_models(stmt, SchedulerHeartbeatData)
        for worker in workers:
            age = now - worker.last_beat
            if worker.stopped_at is not None or age > 10 * stale_after:
                worker.state = WorkerState.DOWN
            else:
                worker.state = WorkerState.STALE if age > stale_after else WorkerState.UP
        return workers

    def scheduler_alive(self: DatabaseService) -> bool:
        """Whether at least one worker beats on time."""
        return any(w.state == WorkerState.UP for w in self.get_workers())

    # ------------------------------------------------------------------ leases

    def take_lease(self: DatabaseService, job_name: str, slot: str, owner: str, ttl: timedelta) -> bool:
        """Claim one slot of a job; True for exactly one caller per (job, slot)."""
        now = utcnow()
        with self.transaction() as conn:
            conn.execute(JobLease.__table__.delete().where(JobLease.expires_at < now - timedelta(days=2)))
            stmt = _insert(conn, JobLease).values(
                job_name=job_name, slot=slot, owner=owner, acquired_at=now, expires_at=now + ttl
            )
            # RETURNING, not rowcount: psycopg reports -1 for a single INSERT ... ON CONFLICT DO NOTHING.
            won = conn.execute(stmt.on_conflict_do_nothing().returning(JobLease.job_name)).scalar()
            return won is not None

    # ------------------------------------------------------------------ rerun queue

    def request_rerun(
        self: DatabaseService, run_id: int, requested_by: str, *, kind: str = "rerun"
    ) -> RerunRequestData:
        """Queue a replay of a recorded run; a second request while one is open returns the open one."""
        run = self.get_run(run_id)  # refuses unknown ids
        if run.status == IngestionStatus.RUNNING:
            msg = f"run {run_id} is still running; it can be rerun once it has ended"
            raise ValueError(msg)
        with self.transaction() as conn:
            stmt = _insert(conn, RerunRequest).values(
                run_id=run_id,
                requested_by=requested_by[:128],
                kind=kind,
                status="pending",
                requested_at=utcnow(),
                created_at=utcnow(),
                updated_at=utcnow(),
            )
            # The partial unique index on open requests makes a duplicate a no-op, even under races.
            conn.execute(stmt.on_conflict_do_nothing())
        return self.open_request_for(run_id) or self.latest_request_for(run_id)  # type: ignore[return-value]

    def request_backfill(
        self: DatabaseService, slice_params: dict[str, Any], requested_by: str
    ) -> RerunRequestData:
        """Queue a planned slice (source, data_type, params) to run after the regular jobs; de-duplicated."""
        key = slice_key(slice_params)
        with self.transaction() as conn:
            stmt = _insert(conn, RerunRequest).values(
                slice_key=key,
                slice_params=slice_params,
                requested_by=requested_by[:128],
                kind="backfill",
                status="pending",
                requested_at=utcnow(),
                created_at=utcnow(),
                updated_at=utcnow(),
            )
            conn.execute(stmt.on_conflict_do_nothing())
            request_id = conn.scalar(
                select(RerunRequest.id)
                .where(RerunRequest.slice_key == key)
                .order_by(RerunRequest.id.desc())
                .limit(1)
            )
        return self.get_rerun_request(request_id)

    def open_request_for(self: DatabaseService, run_id: int) -> RerunRequestData | None:
        """The pending or running request of a run, if any."""
        stmt = select(RerunRequest).where(
            RerunRequest.run_id == run_id, RerunRequest.status.in_(OPEN_STATUSES)
        )
        found = self._select_models(stmt, RerunRequestData)
        return found[0] if found else None

    def latest_request_for(self: DatabaseService, run_id: int) -> RerunRequestData | None:
        """The newest request of a run, whatever its state."""
        stmt = (
            select(RerunRequest)
            .where(RerunRequest.run_id == run_id)
            .order_by(RerunRequest.id.desc())
            .limit(1)
        )
        found = self._select_models(stmt, RerunRequestData)
        return found[0] if found else None

    def get_rerun_request(self: DatabaseService, request_id: int) -> RerunRequestData:
        """One request by id."""
        found = self._select_models(
            select(RerunRequest).where(RerunRequest.id == request_id), RerunRequestData
        )
        if not found:
            msg = f"no rerun request with id {request_id}"
            raise LookupError(msg)
        return found[0]

    def get_rerun_requests(
        self: DatabaseService, *, status: str | None = None, limit: int = 100
    ) -> list[RerunRequestData]:
        """Requests, newest first."""
        stmt = select(RerunRequest).order_by(RerunRequest.id.desc()).limit(limit)
        if status:
            stmt = stmt.where(RerunRequest.status == status)
        return self._select_models(stmt, RerunRequestData)

    def claim_rerun_request(
        self: DatabaseService, worker_id: str, *, kinds: tuple[str, ...] = ("rerun",)
    ) -> RerunRequestData | None:
        """Take the oldest pending request of the given kinds; None when there is none."""
        with self.transaction() as conn:
            stmt = (
                select(RerunRequest.id)
                .where(RerunRequest.status == "pending", RerunRequest.kind.in_(kinds))
                .order_by(RerunRequest.requested_at, RerunRequest.id)
                .limit(1)
            )
            if conn.dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            request_id = conn.scalar(stmt)
            if request_id is None:
                return None
            conn.execute(
                update(RerunRequest)
                .where(RerunRequest.id == request_id)
                .values(status="running", claimed_by=worker_id, claimed_at=utcnow(), updated_at=utcnow())
            )
        return self.get_rerun_request(request_id)

    def finish_rerun_request(
        self: DatabaseService,
        request_id: int,
        *,
        status: str,
        result_run_id: int | None,
        error: str | None = None,
    ) -> None:
        """Record a request's outcome."""
        with self.transaction() as conn:
            conn.execute(
                update(RerunRequest)
                .where(RerunRequest.id == request_id)
                .values(
                    status=status,
                    result_run_id=result_run_id,
                    error_message=error,
                    finished_at=utcnow(),
                    updated_at=utcnow(),
                )
            )

    # ------------------------------------------------------------------ stuck work

    def _release_dead_claims(self: DatabaseService, conn: Connection, alive: Any, cutoff: datetime) -> None:
        """Requests claimed by a dead worker: back to pending, unless the run they started was abandoned.

        A request whose replay had started has a child run (now abandoned); that child gets a request of
        its own, so this one is closed. One claimed moment before the worker died has no child and is
        simply served again.
        """
        dead = and_(
            RerunRequest.status == "running",
            RerunRequest.claimed_at < cutoff,
            or_(RerunRequest.claimed_by.is_(None), RerunRequest.claimed_by.not_in(alive)),
        )
        started = (
            select(DataIngestionLog.id)
            .where(
                DataIngestionLog.parent_run_id == RerunRequest.run_id,
                DataIngestionLog.started_at >= RerunRequest.claimed_at,
            )
            .exists()
        )
        now = utcnow()
        conn.execute(
            update(RerunRequest)
            .where(dead, started)
            .values(status="failed", error_message=ABANDONED, finished_at=now, updated_at=now)
        )
        conn.execute(
            update(RerunRequest)
            .where(dead)
            .values(status="pending", claimed_by=None, claimed_at=None, updated_at=now)
        )

    def recover_abandoned(self: DatabaseService, *, requeue: bool = True) -> list[int]:
        """Fail runs and requests left `running` by workers whose heartbeat stopped; requeue their slices.

        A requeued slice runs as a child of the abandoned run, so the log links the two.
        """
        cutoff = utcnow() - timedelta(seconds=self.settings.HEARTBEAT_STALE_SECONDS)
        untracked_cutoff = utcnow() - timedelta(hours=self.settings.UNTRACKED_RUN_TIMEOUT_HOURS)
        beating = select(SchedulerHeartbeat.worker_id)
        alive = beating.where(SchedulerHeartbeat.last_beat >= cutoff, SchedulerHeartbeat.stopped_at.is_(None))
        stuck = and_(
            DataIngestionLog.status == IngestionStatus.RUNNING,
            DataIngestionLog.started_at < cutoff,
            or_(
                # A scheduler's run: its worker stopped beating.
                and_(DataIngestionLog.worker_id.in_(beating), DataIngestionLog.worker_id.not_in(alive)),
                # A run of a process that never beats (a CLI command): only after a long time.
                and_(
                    or_(DataIngestionLog.worker_id.is_(None), DataIngestionLog.worker_id.not_in(beating)),
                    DataIngestionLog.started_at < untracked_cutoff,
                ),
            ),
        )
        with self.transaction() as conn:
            run_ids = list(conn.scalars(select(DataIngestionLog.id).where(stuck)))
            if run_ids:
                conn.execute(
                    update(DataIngestionLog)
                    .where(DataIngestionLog.id.in_(run_ids))
                    .values(
                        status=IngestionStatus.FAILED,
                        error_class="Abandoned",
                        error_message=ABANDONED,
                        finished_at=utcnow(),
                    )
                )
            self._release_dead_claims(conn, alive, cutoff)
        if requeue:
            for run_id in run_ids:
                self.request_rerun(run_id, "scheduler: abandoned run")
        return run_ids
