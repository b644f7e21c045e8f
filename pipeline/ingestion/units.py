"""Recording one ingestion unit's run around its work: written `running` first, closed honestly.

`record_run` is the context manager every ingestion unit runs inside. A unit that raises is closed as
`failed` with the error class and a redacted message; one that rejected records or got less than it asked
for is `partial`; only a complete unit is `success`. The statements are `pipeline.store.runs`; this module
decides what they record, and waits through database outages (`pipeline.outage`) to record it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pipeline.errors import DatabaseUnavailable, Interrupted, PipelineError
from pipeline.outage import PROCESS_OUTAGE
from pipeline.ranges import utcnow
from pipeline.schemas import DataIngestionLogData, IngestionStatus, Reject, UpsertResult
from pipeline.store.runs import WORKER_ID, RunLogMixin, RunSlice

if TYPE_CHECKING:
    from pipeline.http.client import ApiClient

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_REJECT_SAMPLES",
    "WORKER_ID",
    "IngestionResult",
    "RunSlice",
    "RunTally",
    "record_run",
    "stop_now",
]

MAX_REJECT_SAMPLES = 5


class IngestionResult(DataIngestionLogData):
    """The outcome of one unit, as returned to callers (the same fields as its run log row)."""


@dataclass
class RunTally:
    """Counts a unit accumulates while it runs."""

    fetched: int = 0
    written: UpsertResult = field(default_factory=UpsertResult)
    rejects: list[Reject] = field(default_factory=list)
    rejected: int = 0
    shortfalls: list[str] = field(default_factory=list)
    # Facts learnt while running that complete the slice's description (the tip reached, reorgs seen).
    slice_updates: dict[str, Any] = field(default_factory=dict)
    run_id: int | None = None
    result: IngestionResult | None = None  # set when the unit's log row is closed

    def add_rejects(self, rejects: list[Reject]) -> None:
        """Count rejects and keep the first few as samples for the operator."""
        self.rejected += len(rejects)
        room = MAX_REJECT_SAMPLES - len(self.rejects)
        self.rejects.extend(rejects[: max(room, 0)])

    def shortfall(self, reason: str) -> None:
        """Note that the unit got less than it asked for (it cannot end as `success`)."""
        self.shortfalls.append(reason)


def _status(tally: RunTally) -> IngestionStatus:
    return IngestionStatus.PARTIAL if tally.rejected or tally.shortfalls else IngestionStatus.SUCCESS


@contextmanager
def record_run(
    db: RunLogMixin,
    client: ApiClient,
    run: RunSlice,
    *,
    trigger: str = "manual",
    parent_run_id: int | None = None,
    worker_id: str = WORKER_ID,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[RunTally]:
    """Run one unit inside a log row; exceptions are recorded (not re-raised), except interrupts.

    After the block, `tally.result` holds the closed run. A unit that failed because the database went
    away is closed once it is back (`should_stop` ends the wait when the process is stopping; the run is
    then left to the abandoned-run recovery of the next worker, never silently `running` for good).
    """
    run_id = db.start_run(run, trigger=trigger, parent_run_id=parent_run_id, worker_id=worker_id)
    client.reset_stats()
    started = utcnow()
    tally = RunTally(run_id=run_id)
    error: BaseException | None = None
    try:
        yield tally
    except Exception as exc:  # noqa: BLE001 - the run log is where unit failures go
        error = exc
    except BaseException as exc:  # KeyboardInterrupt, SystemExit: record, then let them stop the process
        error = exc
        try:
            tally.result = _close(db, client, run_id, started, tally, exc, worker_id=worker_id, stop=stop_now)
        except DatabaseUnavailable:
            logger.warning("run %s left running: the database is unavailable while stopping", run_id)
        raise
    tally.result = _close(db, client, run_id, started, tally, error, worker_id=worker_id, stop=should_stop)


def _close(
    db: RunLogMixin,
    client: ApiClient,
    run_id: int,
    started: datetime,
    tally: RunTally,
    error: BaseException | None,
    *,
    worker_id: str,
    stop: Callable[[], bool],
) -> IngestionResult:
    """Close the run with its outcome, waiting out a database outage unless `stop` says not to."""
    interrupted = error is not None and not isinstance(error, Exception)
    finished = utcnow()
    stats = client.stats
    values: dict[str, Any] = {
        "status": IngestionStatus.FAILED if error is not None else _status(tally),
        "error_class": None,
        "error_message": None,
        "records_fetched": tally.fetched,
        "records_inserted": tally.written.inserted,
        "records_updated": tally.written.updated,
        "records_rejected": tally.rejected,
        "requests_made": stats.requests,
        "retries": stats.retries,
        "wait_seconds": round(stats.wait_seconds, 3),
        "http_seconds": round(stats.http_seconds, 3),
        "finished_at": finished,
        "duration_seconds": round((finished - started).total_seconds(), 3),
        "rejected_samples": [r.sample() for r in tally.rejects] or None,
        **tally.slice_updates,
    }
    if error is not None:
        values["error_class"] = "Interrupted" if interrupted else _error_class(error)
        values["error_message"] = "interrupted" if interrupted else client.redact(str(error))[:2000]
        if isinstance(error, Interrupted):
            values["error_message"] = "interrupted"
        logger.error("run %s failed: %s", run_id, values["error_message"])
    elif tally.shortfalls or tally.rejected:
        problems = [*tally.shortfalls]
        if tally.rejected:
            problems.append(f"{tally.rejected} records rejected (first: {tally.rejects[0].reason})")
        values["error_message"] = client.redact("; ".join(problems))[:2000]
    closed = PROCESS_OUTAGE.call(
        lambda: db.finish_run(run_id, worker_id=worker_id, **values), should_stop=stop
    )
    result = IngestionResult.model_validate(closed, from_attributes=True)
    logger.info(
        "run %s %s %s %s: %s fetched=%s inserted=%s updated=%s rejected=%s requests=%s",
        run_id, result.source, result.data_type, result.coin, result.status.value, result.records_fetched,
        result.records_inserted, result.records_updated, result.records_rejected, result.requests_made,
    )  # fmt: skip
    return result


def stop_now() -> bool:
    """A `should_stop` for a process that is already stopping: do not wait for anything."""
    return True


def _error_class(error: BaseException) -> str:
    return error.kind if isinstance(error, PipelineError) else type(error).__name__
