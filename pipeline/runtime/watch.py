"""The watcher: evaluate the incident rules and deliver the alerts they owe, every WATCH_INTERVAL_SECONDS.

It runs in two places. Every scheduler runs one in a thread of its own (so a slow or dead alert channel
never holds up a unit), and `crypto-pipeline watch` runs one as a process (started by `up`): the rules
read only the database, so a process that is not the scheduler notices when no scheduler beats. Several
watchers are safe: incidents are reconciled under one lock, and each message is claimed in the database
before it is sent (see pipeline/store/incidents.py).
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field

from pipeline.alerts import Channel, configured_channels
from pipeline.config import Settings
from pipeline.database import DatabaseService
from pipeline.errors import DatabaseError, DatabaseUnavailable
from pipeline.outage import Outage
from pipeline.services.alerting import Delivered, deliver_due
from pipeline.services.incidents import KINDS, evaluate
from pipeline.store.runs import WORKER_ID

logger = logging.getLogger(__name__)


@dataclass
class WatchRound:
    """What one round opened, resolved and delivered (incident ids)."""

    opened: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    delivered: list[Delivered] = field(default_factory=list)


class Watcher:
    """Evaluates the incident rules and delivers alerts until stopped."""

    def __init__(
        self,
        settings: Settings,
        db: DatabaseService,
        *,
        worker_id: str | None = None,
        stop_event: threading.Event | None = None,
        outage: Outage | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.worker_id = worker_id or f"{WORKER_ID}:watch"
        self.stop_event = stop_event or threading.Event()
        self.outage = outage or Outage()
        self.channels: list[Channel] = configured_channels(settings)  # a bad setting fails at start
        self.exit_code = 0

    def round(self) -> WatchRound:
        """One evaluation of every rule, then one delivery of everything owed."""
        reconciled = evaluate(self.db, self.settings, KINDS)
        for incident in reconciled.opened:
            logger.warning(
                "incident #%s opened: %s %s: %s", incident.id, incident.kind, incident.key, incident.summary
            )
        for incident in reconciled.resolved:
            logger.info(
                "incident #%s resolved: %s %s (%s)",
                incident.id,
                incident.kind,
                incident.key,
                incident.resolution,
            )
        delivered = deliver_due(
            self.db,
            self.settings,
            self.channels,
            self.worker_id,
            sleep=self._backoff,
            stopping=self.stop_event.is_set,
        )
        return WatchRound(
            opened=[i.id for i in reconciled.opened],
            resolved=[i.id for i in reconciled.resolved],
            delivered=delivered,
        )

    def _backoff(self, seconds: float) -> None:
        # A retry's wait ends early when the process stops, so SIGTERM is never held up by a dead channel.
        self.stop_event.wait(seconds)

    def run(self) -> None:
        """Rounds until the stop event is set; a database outage or a failing round never ends the loop."""
        while not self.stop_event.is_set():
            wait = self.settings.WATCH_INTERVAL_SECONDS
            try:
                self.round()
            except DatabaseUnavailable as exc:
                wait = min(wait, self.outage.failed(exc))
            except DatabaseError as exc:  # replaced, corrupt, a newer schema: waiting will not help
                # The loop ends (the `watch` process exits with the cause's code); the event is left
                # alone, since in a scheduler it is the scheduler's, which judges its database itself.
                logger.error("watcher %s stops: %s", self.worker_id, exc)
                self.exit_code = exc.exit_code
                return
            except Exception:  # noqa: BLE001 - a watcher must outlive any one bad round
                logger.exception("watch round failed")
            else:
                self.outage.recovered()
            self.stop_event.wait(wait)

    def start(self) -> threading.Thread:
        """Run in a daemon thread (the scheduler's)."""
        thread = threading.Thread(target=self.run, name="watch", daemon=True)
        thread.start()
        return thread


def run_watch(settings: Settings) -> int:
    """`crypto-pipeline watch`: a watcher process until SIGTERM or SIGINT; returns the exit code."""
    db = DatabaseService(settings=settings)
    db.require_persistent()
    db.create_tables()  # like the scheduler: a watcher started first finds the schema ready
    watcher = Watcher(settings, db)

    def _stop(signum: int, _frame: object) -> None:
        logger.info("received signal %s; stopping the watcher", signum)
        watcher.stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    channels = ", ".join(c.name for c in watcher.channels) or "none (incidents are recorded, not sent)"
    logger.info("watcher %s starting; alert channels: %s", watcher.worker_id, channels)
    watcher.run()
    logger.info("watcher %s stopped", watcher.worker_id)
    db.dispose()
    return watcher.exit_code
