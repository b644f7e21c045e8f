"""Serving a rerun or backfill request: the one path every replay takes.

The scheduler (`Scheduler.serve_reruns`), `crypto-pipeline rerun RUN_ID` and the dashboard's "Run here" all
replay a slice the same way:

1. a request holds the slice (`request_rerun` / `request_backfill`: one open request per run or slice);
2. one process claims it atomically (`claim_next_request` for the scheduler, `claim_request` by id for the
   CLI and the dashboard): whoever loses is told who holds it, and a slice is replayed by one at a time;
3. `serve_request` checks the slice's parameters, prices it by the gap-fill cost rules and refuses it if it
   would overrun the source's daily request budget, all before the first request; then replays it and
   records the outcome on the request, with the error redacted.

`serve_here` is steps 1-3 in this process, for the CLI and the dashboard.
"""

from __future__ import annotations

import logging
import threading
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import Any

from pydantic import ValidationError

from pipeline.actors import Actor
from pipeline.config import Settings
from pipeline.database import DatabaseService
from pipeline.errors import DatabaseUnavailable
from pipeline.http.redact import scrub_query_secrets
from pipeline.ingestion.replay import Replayer
from pipeline.ingestion.units import IngestionResult
from pipeline.outage import PROCESS_OUTAGE
from pipeline.schemas import IngestionStatus, ReplayRequestData

logger = logging.getLogger(__name__)

MAX_ERROR_CHARS = 500


class RequestRefused(ValueError):
    """A request refused before any request was sent to the source (its run is still running, its
    parameters are invalid, or it would overrun the daily budget); the reason is stored on the request."""


def redact(settings: Settings, text: str) -> str:
    """One line, without any configured key (raw or as a query parameter), short enough to store."""
    for secret in settings.secrets():
        text = text.replace(secret, "***")
    return " ".join(scrub_query_secrets(text).split())[:MAX_ERROR_CHARS]


def _unreadable(run_id: int, exc: ValidationError) -> RequestRefused:
    """A run-log row that does not load (e.g. params that are not an object), as one line."""
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return RequestRefused(f"run {run_id} cannot be replayed: its log row is invalid ({problems})")


def _slice_of(db: DatabaseService, request: ReplayRequestData) -> tuple[str, str, Any, int | None, str]:
    """(source, data_type, params, parent run, trigger) of the slice a request replays."""
    if request.run_id is not None:
        try:
            run = db.get_run(request.run_id)
        except ValidationError as exc:
            raise _unreadable(request.run_id, exc) from None
        if run.status == IngestionStatus.RUNNING:
            msg = f"run {run.id} is still running; it can be rerun once it has ended"
            raise RequestRefused(msg)
        return run.source, run.data_type, run.params, run.id, "rerun"
    planned = request.slice_params if isinstance(request.slice_params, dict) else {}
    return (
        str(planned.get("source")),
        str(planned.get("data_type")),
        planned.get("params"),
        None,
        "backfill",
    )


def _label(request: ReplayRequestData) -> str:
    if request.run_id is not None:
        return f"rerun of run {request.run_id}"
    return f"backfill request #{request.id}"


class _ClaimKeeper(AbstractContextManager["_ClaimKeeper"]):
    """Refreshes the claim of a process without a heartbeat while it replays (see `keep_claim`)."""

    def __init__(self, db: DatabaseService, request_id: int, worker_id: str) -> None:
        self.db, self.request_id, self.worker_id = db, request_id, worker_id
        settings = db.settings
        self.interval = min(settings.HEARTBEAT_SECONDS, settings.HEARTBEAT_STALE_SECONDS / 3)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"claim-{request_id}", daemon=True)

    def _run(self) -> None:
        # The first refresh is at once: whatever ran since the claim (a slow query) counts against it.
        while True:
            try:
                if not self.db.keep_claim(self.request_id, self.worker_id):
                    if not self.done.is_set():  # (once served, the claim has ended as it should)
                        logger.warning(
                            "request %s is no longer claimed by %s", self.request_id, self.worker_id
                        )
                    return
            except Exception:  # noqa: BLE001 - a missed refresh must not stop the replay
                logger.warning("could not refresh the claim of request %s", self.request_id, exc_info=True)
            if self.done.wait(self.interval):
                return

    def __enter__(self) -> _ClaimKeeper:
        self.thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.done.set()
        self.thread.join(timeout=10)


def serve_request(
    db: DatabaseService,
    replayer: Replayer,
    request: ReplayRequestData,
    worker_id: str,
    *,
    keep_claim: bool = False,
) -> IngestionResult | None:
    """Serve a request `worker_id` has claimed: check, price and replay its slice, record the outcome.

    Returns the replay's run (None when the slice had nothing left to do). A refusal is recorded on the
    request (status `failed`, the reason redacted) and raised as RequestRefused before any request is
    sent. Any other exception is recorded the same way and re-raised, except DatabaseUnavailable, which
    cannot be recorded and is left to the caller's outage handling. `keep_claim` refreshes the claim while
    the replay runs, for processes without a heartbeat.
    """
    keeper: AbstractContextManager[Any] = (
        _ClaimKeeper(db, request.id, worker_id) if keep_claim else nullcontext()
    )
    with keeper:
        return _serve(db, replayer, request, worker_id)


def _serve(
    db: DatabaseService, replayer: Replayer, request: ReplayRequestData, worker_id: str
) -> IngestionResult | None:
    settings, label = db.settings, _label(request)
    stop = replayer.should_stop

    def finish(status: str, result_run_id: int | None, error: str | None) -> None:
        # The outcome is recorded even if the database is away for a while: a request left `running`
        # under a live worker would never be served again.
        PROCESS_OUTAGE.call(
            lambda: db.finish_replay_request(
                request.id, status=status, result_run_id=result_run_id, error=error
            ),
            should_stop=stop,
        )

    try:
        source, data_type, params, parent, trigger = _slice_of(db, request)
        cost = replayer.admit(source, data_type, params)
    except (LookupError, ValueError) as exc:  # RequestRefused, InvalidSlice, BudgetExceeded, a vanished run
        reason = redact(settings, f"{label} refused: {exc}")
        finish("failed", None, reason)
        raise RequestRefused(reason) from None
    logger.info("%s: %s, %d requests at most", label, cost.detail, cost.requests)
    try:
        result = replayer.run_slice(source, data_type, params, trigger=trigger, parent_run_id=parent)
    except DatabaseUnavailable:
        # The replay's run could not be opened (or closed, while stopping): hand the request back so it
        # is served once the database returns. While stopping, the dead-claim recovery does that.
        PROCESS_OUTAGE.call(lambda: db.release_request(request.id, worker_id), should_stop=stop)
        return None
    except Exception as exc:
        finish("failed", None, redact(settings, f"{type(exc).__name__}: {exc}"))
        raise
    failed = result is not None and result.status == IngestionStatus.FAILED
    error = redact(settings, result.error_message or "") if failed and result else None
    finish("failed" if failed else "done", result.id if result else None, error)
    return result


def serve_here(
    db: DatabaseService,
    replayer: Replayer,
    run_id: int,
    *,
    requested_by: str,
    worker_id: str,
    actor: Actor | None = None,
) -> tuple[ReplayRequestData, IngestionResult | None]:
    """Queue a rerun of `run_id` (or join its open request), claim that request and serve it here; with
    `actor`, the request is audited as "run_here".

    Raises ValueError with one line: the run is still running (`request_rerun`), another process holds the
    request or replays the slice (RequestBusy, naming it), or the slice was refused (RequestRefused).
    """
    try:
        request = db.request_rerun(run_id, requested_by, actor=actor, action="run_here")
    except ValidationError as exc:  # the run's row does not load: nothing to queue
        raise _unreadable(run_id, exc) from None
    claimed = db.claim_request(request.id, worker_id)
    result = serve_request(db, replayer, claimed, worker_id, keep_claim=True)
    return db.get_replay_request(request.id), result
