"""The ingestion run log's SQL: one `DataIngestionLog` row per unit, written `running` first and closed once.

`RunLogMixin` gives `DatabaseService` the statements; recording a unit's run around its work (the tally,
the outcome, waiting out an outage to close it) is `pipeline.ingestion.units.record_run`.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select, update

from pipeline.models import DataIngestionLog
from pipeline.schemas import DataIngestionLogData, IngestionStatus
from pipeline.store.engine import DatabaseCore

logger = logging.getLogger(__name__)

# This process, as recorded on its runs and heartbeats (the suffix tells restarts with a reused pid apart).
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class RunSlice:
    """What one unit is asked to ingest, as its run-log row records it; `params` replay exactly this slice."""

    source: str
    data_type: str
    coin: str | None
    params: dict[str, Any]
    start_date: date | None = None
    end_date: date | None = None
    start_height: int | None = None
    end_height: int | None = None


class RunLogMixin(DatabaseCore):
    """Run-log statements of `DatabaseService`."""

    def start_run(
        self,
        run: RunSlice,
        *,
        trigger: str,
        parent_run_id: int | None,
        worker_id: str = WORKER_ID,
    ) -> int:
        """Insert the `running` row and commit it, so a crash still leaves a trace.

        `worker_id` is the run's owner: only it may close the run (`finish_run`), and recovery judges the
        run by that worker's heartbeat. `started_at` is the database's clock, which recovery's cutoffs use.
        """
        row = DataIngestionLog(
            source=run.source,
            data_type=run.data_type,
            coin=run.coin,
            start_date=run.start_date,
            end_date=run.end_date,
            start_height=run.start_height,
            end_height=run.end_height,
            status=IngestionStatus.RUNNING,
            trigger=trigger,
            params=run.params,
            parent_run_id=parent_run_id,
            worker_id=worker_id,
        )
        with self.session_factory.begin() as session:
            row.started_at = self.db_now(session.connection())
            session.add(row)
            session.flush()
            return row.id

    def finish_run(self, run_id: int, *, worker_id: str | None = None, **values: Any) -> DataIngestionLogData:
        """Close a run with its outcome and return it: only while it is `running`, and, given `worker_id`,
        only as its owner.

        A run that recovery marked abandoned (its slice is already queued for a replay) keeps that verdict
        even if its worker was alive after all and finishes it: flipping it to `success` would leave the
        log claiming the slice twice. Then nothing is written, one warning is logged, and the stored run
        is returned as it is. A given `finished_at` is replaced by the database's clock, the one the
        run's `started_at` came from (`duration_seconds` stays the caller's own measurement).
        """
        with self.transaction() as conn:
            if "finished_at" in values:
                values["finished_at"] = self.db_now(conn)
            guard = [DataIngestionLog.id == run_id, DataIngestionLog.status == IngestionStatus.RUNNING]
            if worker_id is not None:
                guard.append(DataIngestionLog.worker_id == worker_id)
            closed = conn.execute(update(DataIngestionLog).where(*guard).values(**values)).rowcount
        run = self.get_run(run_id)
        if not closed:
            logger.warning(
                "run %s not closed (%s) by %s: it is %s%s (owner %s); the stored run stands",
                run_id,
                values.get("status") or ", ".join(values),
                worker_id or "this process",
                run.status.value,
                f"/{run.error_class}" if run.error_class else "",
                run.worker_id,
            )
        return run

    def get_run(self, run_id: int) -> DataIngestionLogData:
        """One run by id; raises LookupError if there is none."""
        with self.session() as session:
            row = session.get(DataIngestionLog, run_id)
            if row is None:
                msg = f"no ingestion run with id {run_id}"
                raise LookupError(msg)
            return DataIngestionLogData.model_validate(row)

    def get_child_runs(self, run_id: int) -> list[DataIngestionLogData]:
        """Reruns made from this run, oldest first."""
        stmt = (
            select(DataIngestionLog)
            .where(DataIngestionLog.parent_run_id == run_id)
            .order_by(DataIngestionLog.id)
        )
        return self._select_models(stmt, DataIngestionLogData)


def requests_sent_since(db: DatabaseCore, source: str, since: datetime) -> int:
    """Requests the run log says were sent to a source since a time (the daily budget's spending)."""
    stmt = select(func.coalesce(func.sum(DataIngestionLog.requests_made), 0)).where(
        DataIngestionLog.source == source, DataIngestionLog.started_at >= since
    )
    with db.engine.connect() as conn:
        return int(conn.scalar(stmt) or 0)
