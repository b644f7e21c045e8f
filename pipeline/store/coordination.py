"""How scheduler workers share one database: heartbeats, job-slot leases, the rerun queue, abandoned runs.

Everything goes through short write transactions, so several workers (on PostgreSQL) and the dashboard
can act at once: a job slot is run by whoever inserts its lease row; a rerun request is claimed with
`SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL and inside one `BEGIN IMMEDIATE` transaction on SQLite.

One clock: every timestamp these statements write or compare (beats, leases, claims, cutoffs, the start of
a run) is the database's (`db_now`), never the writing process's. Workers on several hosts share one
PostgreSQL server but not a clock: a worker whose clock ran ahead would otherwise take every other worker
for silent and abandon their running units, and one whose clock lagged would itself look dead.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, func, or_, select, update

from pipeline.actors import Actor
from pipeline.models import DataIngestionLog, JobLease, ReplayRequest, SchedulerHeartbeat
from pipeline.schemas import IngestionStatus, ReplayRequestData, SchedulerHeartbeatData, WorkerState
from pipeline.store.audit import AuditLogMixin
from pipeline.store.engine import dialect_insert
from pipeline.store.runs import RunLogMixin

ABANDONED = "abandoned"
OPEN_STATUSES = ("pending", "running")


def slice_key(slice_params: dict[str, Any]) -> str:
    """A stable identity for a planned slice, so the same gap is never queued twice."""
    params = slice_params["params"]
    span = "..".join(str(params[k]) for k in ("start", "end", "start_height", "end_height") if k in params)
    subject = params.get("coin_id") or params.get("chain")
    return f"{slice_params['source']}/{slice_params['data_type']}/{subject}/{span}"[:200]


class CoordinationMixin(RunLogMixin, AuditLogMixin):
    """Worker coordination queries of `DatabaseService` (built on the run log: a rerun replays a run)."""

    # ------------------------------------------------------------------ heartbeats

    def beat(
        self,
        worker_id: str,
        *,
        current_job: str | None,
        started_at: datetime | None = None,
    ) -> None:
        """Record that a worker is alive (insert or refresh its row), on the database's clock.

        `started_at` (the caller's clock) is accepted for old callers but not stored: the row's
        `started_at` is the database's time of the worker's first beat, comparable with every other row's.
        """
        del started_at
        with self.transaction() as conn:
            now = self.db_now(conn)
            values = {
                "worker_id": worker_id,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started_at": now,
                "last_beat": now,
                "current_job": current_job,
                "stopped_at": None,
            }
            stmt = dialect_insert(conn, SchedulerHeartbeat).values(**values)
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

    def stop_worker(self, worker_id: str) -> None:
        """Mark a worker as cleanly stopped."""
        with self.transaction() as conn:
            conn.execute(
                update(SchedulerHeartbeat)
                .where(SchedulerHeartbeat.worker_id == worker_id)
                .values(stopped_at=self.db_now(conn), current_job=None)
            )

    def get_workers(self, *, since: timedelta = timedelta(days=7)) -> list[SchedulerHeartbeatData]:
        """Workers seen lately, with their state: up, stale (beats late), down (long silent without
        stopping cleanly) or stopped (cleanly)."""
        stale_after = timedelta(seconds=self.settings.HEARTBEAT_STALE_SECONDS)
        now = self.db_now()  # ages are measured against the clock the beats were written with
        stmt = (
            select(SchedulerHeartbeat)
            .where(SchedulerHeartbeat.last_beat >= now - since)
            .order_by(SchedulerHeartbeat.last_beat.desc())
        )
        workers = self._select_models(stmt, SchedulerHeartbeatData)
        for worker in workers:
            age = now - worker.last_beat
            if worker.stopped_at is not None:
                worker.state = WorkerState.STOPPED
            elif age > 10 * stale_after:
                worker.state = WorkerState.DOWN
            else:
                worker.state = WorkerState.STALE if age > stale_after else WorkerState.UP
        return workers

    def scheduler_alive(self) -> bool:
        """Whether at least one worker beats on time."""
        return any(w.state == WorkerState.UP for w in self.get_workers())

    # ------------------------------------------------------------------ leases

    def take_lease(self, job_name: str, slot: str, owner: str, ttl: timedelta) -> bool:
        """Claim one slot of a job; True for exactly one caller per (job, slot)."""
        with self.transaction() as conn:
            now = self.db_now(conn)
            conn.execute(delete(JobLease).where(JobLease.expires_at < now - timedelta(days=2)))
            stmt = dialect_insert(conn, JobLease).values(
                job_name=job_name, slot=slot, owner=owner, acquired_at=now, expires_at=now + ttl
            )
            # RETURNING, not rowcount: psycopg reports -1 for a single INSERT ... ON CONFLICT DO NOTHING.
            won = conn.execute(stmt.on_conflict_do_nothing().returning(JobLease.job_name)).scalar()
            return won is not None

    # ------------------------------------------------------------------ rerun queue

    def request_rerun(
        self,
        run_id: int,
        requested_by: str,
        *,
        kind: str = "rerun",
        actor: Actor | None = None,
        action: str | None = None,
    ) -> ReplayRequestData:
        """Queue a replay of a recorded run; a second request while one is open returns the open one.

        With `actor`, the request and its audit row (`action`, by default `kind`) commit together."""
        run = self.get_run(run_id)  # refuses unknown ids
        if run.status == IngestionStatus.RUNNING:
            msg = f"run {run_id} is still running; it can be rerun once it has ended"
            raise ValueError(msg)
        with self.transaction() as conn:
            request_id, inserted = self._queue_request(
                conn, ReplayRequest.run_id == run_id, run_id=run_id, requested_by=requested_by, kind=kind
            )
            if actor is not None:
                self.record_audit(
                    actor,
                    action or kind,
                    target=f"run:{run_id}",
                    params={"run_id": run_id, "source": run.source, "data_type": run.data_type,
                            "coin": run.coin},
                    detail=None if inserted else f"request #{request_id} was already queued",
                    run_id=run_id,
                    request_id=request_id,
                    conn=conn,
                )
        return self.get_replay_request(request_id)

    def request_backfill(
        self,
        slice_params: dict[str, Any],
        requested_by: str,
        *,
        actor: Actor | None = None,
        action: str = "backfill",
    ) -> ReplayRequestData:
        """Queue a planned slice (source, data_type, params) to run after the regular jobs; de-duplicated.

        With `actor`, the request and its audit row (`action`: "backfill", or "fill_gaps" for a slice of
        a gap-fill plan) commit together."""
        key = slice_key(slice_params)
        with self.transaction() as conn:
            request_id, inserted = self._queue_request(
                conn,
                ReplayRequest.slice_key == key,
                slice_key=key,
                slice_params=slice_params,
                requested_by=requested_by,
                kind="backfill",
            )
            if actor is not None:
                self.record_audit(
                    actor,
                    action,
                    target=f"slice:{key}"[:200],
                    params=slice_params,
                    detail=None if inserted else f"request #{request_id} was already queued",
                    request_id=request_id,
                    conn=conn,
                )
        return self.get_replay_request(request_id)

    def _queue_request(
        self, conn: Connection, same: Any, *, requested_by: str, **values: Any
    ) -> tuple[int, bool]:
        """Insert a pending request; returns (its id, True), or when an open request for the same run or
        slice made the insert a no-op (the partial unique indexes on open requests, even under races),
        (that request's id, False). `same` selects the requests of that run or slice."""
        now = self.db_now(conn)
        stmt = dialect_insert(conn, ReplayRequest).values(
            requested_by=requested_by[:128],
            status="pending",
            requested_at=now,
            created_at=now,
            updated_at=now,
            **values,
        )
        inserted = conn.execute(stmt.on_conflict_do_nothing().returning(ReplayRequest.id)).scalar()
        if inserted is not None:
            return inserted, True
        existing = conn.execute(
            select(ReplayRequest.id).where(same).order_by(ReplayRequest.id.desc()).limit(1)
        ).scalar_one()
        return existing, False

    def open_request_for(self, run_id: int) -> ReplayRequestData | None:
        """The pending or running request of a run, if any."""
        stmt = select(ReplayRequest).where(
            ReplayRequest.run_id == run_id, ReplayRequest.status.in_(OPEN_STATUSES)
        )
        found = self._select_models(stmt, ReplayRequestData)
        return found[0] if found else None

    def latest_request_for(self, run_id: int) -> ReplayRequestData | None:
        """The newest request of a run, whatever its state."""
        stmt = (
            select(ReplayRequest)
            .where(ReplayRequest.run_id == run_id)
            .order_by(ReplayRequest.id.desc())
            .limit(1)
        )
        found = self._select_models(stmt, ReplayRequestData)
        return found[0] if found else None

    def get_replay_request(self, request_id: int) -> ReplayRequestData:
        """One request by id."""
        found = self._select_models(
            select(ReplayRequest).where(ReplayRequest.id == request_id), ReplayRequestData
        )
        if not found:
            msg = f"no rerun request with id {request_id}"
            raise LookupError(msg)
        return found[0]

    def get_replay_requests(self, *, status: str | None = None, limit: int = 100) -> list[ReplayRequestData]:
        """Requests, newest first."""
        stmt = select(ReplayRequest).order_by(ReplayRequest.id.desc()).limit(limit)
        if status:
            stmt = stmt.where(ReplayRequest.status == status)
        return self._select_models(stmt, ReplayRequestData)

    def finish_replay_request(
        self,
        request_id: int,
        *,
        status: str,
        result_run_id: int | None,
        error: str | None = None,
    ) -> None:
        """Record a request's outcome."""
        with self.transaction() as conn:
            now = self.db_now(conn)
            conn.execute(
                update(ReplayRequest)
                .where(ReplayRequest.id == request_id)
                .values(
                    status=status,
                    result_run_id=result_run_id,
                    error_message=error,
                    finished_at=now,
                    updated_at=now,
                )
            )

    # ------------------------------------------------------------------ stuck work

    def _release_dead_claims(self, conn: Connection, alive: Any, cutoff: datetime) -> None:
        """Requests claimed by a dead worker: back to pending, unless the run they started was abandoned.

        A request whose replay had started has a child run (now abandoned); that child gets a request of
        its own, so this one is closed. One claimed moment before the worker died has no child and is
        simply served again.
        """
        dead = and_(
            ReplayRequest.status == "running",
            ReplayRequest.claimed_at < cutoff,
            or_(ReplayRequest.claimed_by.is_(None), ReplayRequest.claimed_by.not_in(alive)),
        )
        started = (
            select(DataIngestionLog.id)
            .where(
                DataIngestionLog.parent_run_id == ReplayRequest.run_id,
                DataIngestionLog.started_at >= ReplayRequest.claimed_at,
            )
            .exists()
        )
        now = self.db_now(conn)
        conn.execute(
            update(ReplayRequest)
            .where(dead, started)
            .values(status="failed", error_message=ABANDONED, finished_at=now, updated_at=now)
        )
        conn.execute(
            update(ReplayRequest)
            .where(dead)
            .values(status="pending", claimed_by=None, claimed_at=None, updated_at=now)
        )

    def recover_abandoned(self, *, requeue: bool = True) -> list[int]:
        """Fail runs and requests left `running` by workers whose heartbeat stopped; requeue their slices.

        A requeued slice runs as a child of the abandoned run, so the log links the two.
        """
        with self.transaction() as conn:
            # Cutoffs on the clock the beats and run starts were written with (see db_now).
            now = self.db_now(conn)
            cutoff = now - timedelta(seconds=self.settings.HEARTBEAT_STALE_SECONDS)
            untracked_cutoff = now - timedelta(hours=self.settings.UNTRACKED_RUN_TIMEOUT_HOURS)
            beating = select(SchedulerHeartbeat.worker_id)
            alive = beating.where(
                SchedulerHeartbeat.last_beat >= cutoff, SchedulerHeartbeat.stopped_at.is_(None)
            )
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
            # One UPDATE ... RETURNING rather than select-then-update: on PostgreSQL the status test is
            # re-checked on a row its owner closed meanwhile, so a run that just ended is never flipped.
            run_ids = sorted(
                conn.scalars(
                    update(DataIngestionLog)
                    .where(stuck)
                    .values(
                        status=IngestionStatus.FAILED,
                        error_class="Abandoned",
                        error_message=ABANDONED,
                        finished_at=now,
                    )
                    .returning(DataIngestionLog.id)
                )
            )
            self._release_dead_claims(conn, alive, cutoff)
        if requeue:
            for run_id in run_ids:
                self.request_rerun(run_id, "scheduler: abandoned run")
        return run_ids

    # ------------------------------------------------------------------ claims of every replay path
    #
    # The scheduler, `crypto-pipeline rerun` and the dashboard's "Run here" all replay through a claimed
    # request: a claim turns one `pending` request `running` in a single statement, so exactly one process
    # wins it, and it is refused while another running request replays the same slice (the slice of a rerun
    # is its run's params; of a backfill, its planned params). Claims are serialized (BEGIN IMMEDIATE on
    # SQLite, a transaction-scoped advisory lock on PostgreSQL), so two claims cannot both miss each other.

    def _serialize_claims(self, conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(CLAIM_LOCK)))

    @staticmethod
    def _with_slice(stmt: Any) -> Any:
        """Join a request query to the run a rerun replays, for the slice it covers."""
        return stmt.outerjoin(DataIngestionLog, DataIngestionLog.id == ReplayRequest.run_id)

    def _replaying(self, conn: Connection, *, besides: int | None) -> dict[str, Any]:
        """Slice key -> the running request replaying it (other than `besides`)."""
        stmt = self._with_slice(
            select(*_SLICE_COLUMNS, ReplayRequest.claimed_by, ReplayRequest.claimed_at).where(
                ReplayRequest.status == "running"
            )
        )
        if besides is not None:
            stmt = stmt.where(ReplayRequest.id != besides)
        return {_request_slice_key(row): row for row in conn.execute(stmt)}

    def claim_request(self, request_id: int, worker_id: str) -> ReplayRequestData:
        """Claim this pending request for `worker_id`; RequestBusy (naming the holder) when another process
        holds it, has served it, or replays the same slice (then the request stays pending)."""
        now = self.db_now()  # the database clock: claims are judged against it (see db_now)
        with self.transaction() as conn:
            self._serialize_claims(conn)
            won = conn.scalar(
                update(ReplayRequest)
                .where(ReplayRequest.id == request_id, ReplayRequest.status == "pending")
                .values(status="running", claimed_by=worker_id[:128], claimed_at=now, updated_at=now)
                .returning(ReplayRequest.id)
            )
            if won is not None:
                mine = conn.execute(
                    self._with_slice(select(*_SLICE_COLUMNS).where(ReplayRequest.id == request_id))
                ).one()
                holder = self._replaying(conn, besides=request_id).get(_request_slice_key(mine))
                if holder is not None:  # raising rolls the claim back
                    msg = (
                        f"the slice of {_what(mine)} is being replayed by request #{holder.id}"
                        f" ({holder.claimed_by}); request #{request_id} stays queued"
                    )
                    raise RequestBusy(msg)
        if won is None:  # lost: say who has it (read after the transaction: LookupError if none)
            raise RequestBusy(_held_by(self.get_replay_request(request_id)))
        return self.get_replay_request(request_id)

    def claim_next_request(
        self, worker_id: str, *, kinds: tuple[str, ...] = ("rerun",), scan: int = 50
    ) -> ReplayRequestData | None:
        """Claim the oldest pending request of these kinds whose slice nobody is replaying; None if none."""
        now = self.db_now()  # the database clock: claims are judged against it (see db_now)
        with self.transaction() as conn:
            self._serialize_claims(conn)
            busy = self._replaying(conn, besides=None)
            stmt = self._with_slice(
                select(*_SLICE_COLUMNS)
                .where(ReplayRequest.status == "pending", ReplayRequest.kind.in_(kinds))
                .order_by(ReplayRequest.requested_at, ReplayRequest.id)
                .limit(scan)
            )
            if conn.dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True, of=ReplayRequest)
            chosen = next((row.id for row in conn.execute(stmt) if _request_slice_key(row) not in busy), None)
            if chosen is None:
                return None
            conn.execute(
                update(ReplayRequest)
                .where(ReplayRequest.id == chosen)
                .values(status="running", claimed_by=worker_id[:128], claimed_at=now, updated_at=now)
            )
        return self.get_replay_request(chosen)

    def keep_claim(self, request_id: int, worker_id: str) -> bool:
        """Refresh a claim held by a process that does not beat (the CLI, the dashboard), so that recovery
        does not take it for a dead worker's and hand the slice to another; False if it is no longer ours."""
        now = self.db_now()  # the database clock: claims are judged against it (see db_now)
        with self.transaction() as conn:
            kept = conn.execute(
                update(ReplayRequest)
                .where(
                    ReplayRequest.id == request_id,
                    ReplayRequest.claimed_by == worker_id[:128],
                    ReplayRequest.status == "running",
                )
                .values(claimed_at=now, updated_at=now)
            )
            return kept.rowcount == 1

    def release_request(self, request_id: int, worker_id: str) -> None:
        """Hand a claimed request back to the queue (nothing was replayed: the database went away before
        its run could be opened), so that it is served again instead of held by a live worker."""
        now = self.db_now()
        with self.transaction() as conn:
            conn.execute(
                update(ReplayRequest)
                .where(
                    ReplayRequest.id == request_id,
                    ReplayRequest.claimed_by == worker_id[:128],
                    ReplayRequest.status == "running",
                )
                .values(status="pending", claimed_by=None, claimed_at=None, updated_at=now)
            )


# ---------------------------------------------------------------------------------------------- claims

# Any constant: the key of the advisory lock that serializes request claims on PostgreSQL ("REPLAY").
CLAIM_LOCK = 0x5245504C4159
_SLICE_COLUMNS = (
    ReplayRequest.id,
    ReplayRequest.run_id,
    ReplayRequest.slice_params,
    DataIngestionLog.source,
    DataIngestionLog.data_type,
    DataIngestionLog.params,
)


class RequestBusy(ValueError):
    """A request, or the slice it replays, is held by another process; the message names the holder."""


def replay_slice_key(source: object, data_type: object, params: object) -> str:
    """The identity of the slice a replay covers (a backfill's `slice_key`, plus the day of a by-date run)."""
    p = params if isinstance(params, dict) else {}
    key = slice_key({"source": source, "data_type": data_type, "params": p})
    return f"{key}/{p['date']}" if "date" in p else key


def _request_slice_key(row: Any) -> str:
    if row.run_id is not None:
        return replay_slice_key(row.source, row.data_type, row.params)
    planned = row.slice_params if isinstance(row.slice_params, dict) else {}
    return replay_slice_key(planned.get("source"), planned.get("data_type"), planned.get("params"))


def _what(row: Any) -> str:
    return f"run {row.run_id}" if row.run_id is not None else f"backfill request #{row.id}"


def _held_by(request: ReplayRequestData) -> str:
    what = f"rerun of run {request.run_id}" if request.run_id is not None else "backfill"
    who = request.claimed_by or "another process"
    if request.status == "running":
        since = f" since {request.claimed_at:%Y-%m-%d %H:%M:%S} UTC" if request.claimed_at else ""
        return f"request #{request.id} ({what}) is already being served by {who}{since}"
    return f"request #{request.id} ({what}) was already served by {who}: {request.status}"
