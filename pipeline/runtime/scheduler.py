"""The long-lived scheduler process: runs the ingestors on `schedule`, serves rerun requests, beats.

Design points (see the `schedule` notes in the README):
- `schedule` re-raises a job's exception and keeps re-firing it, starving the jobs after it; every job is
  wrapped so that a failure is logged and recorded in its run, and the loop goes on.
- Several workers may share a PostgreSQL database: each job slot is claimed with a lease row first, so a
  slot runs once whichever worker gets there first; rerun requests are claimed with SKIP LOCKED.
- SIGTERM/SIGINT set a stop flag: the running unit stops at its next page and is closed as failed
  ("interrupted"), its slice is queued for a rerun, and nothing is left `running`.
- A heartbeat thread records the worker as alive (also during long jobs) and fails runs abandoned by
  workers that died, queueing their slices again.
- The database may go away (a restart, a failover, a write lock held by another process): every touch in
  the loop and the heartbeat rides it out with backoff and one log line per outage (`pipeline.outage`);
  a unit it cut short is closed `failed` (DatabaseUnavailable) once the database is back and requeued.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import schedule

from pipeline.config import Settings
from pipeline.database import DatabaseService
from pipeline.errors import DatabaseReplaced, DatabaseUnavailable
from pipeline.ingestion.blockchair import BlockchairIngestor
from pipeline.ingestion.coingecko import CoinGeckoIngestor
from pipeline.ingestion.replay import Replayer
from pipeline.ingestion.requests import RequestRefused, serve_request
from pipeline.ingestion.units import WORKER_ID, IngestionResult
from pipeline.outage import PROCESS_OUTAGE
from pipeline.ranges import utcnow
from pipeline.runtime.watch import Watcher
from pipeline.schemas import CoinMetadataData, ReplayRequestData
from pipeline.services.coins import named_by_coins_setting

logger = logging.getLogger(__name__)

SCHEDULE_TRIGGER = "schedule"
DAILY_CHECK_MINUTES = 5


@dataclass(frozen=True)
class Job:
    """A scheduled job: its name, how often, which coins, and what it runs for one coin."""

    name: str
    every_minutes: float
    coins: Callable[[], list[CoinMetadataData]]
    action: Callable[[CoinMetadataData], IngestionResult | None]
    # For a daily job: the slot is the date, and it runs only once the UTC time has passed this.
    daily_after: Callable[[datetime], bool] | None = None

    def slot(self, now: datetime) -> str:
        """The slot `now` falls in; a lease on (job:coin, slot) lets one worker run that unit."""
        if self.daily_after is not None:
            return now.date().isoformat()
        return str(int(now.timestamp() // (self.every_minutes * 60)))

    def run_all_coins(self) -> list[IngestionResult | None]:
        """Run the job for every coin now, without leases (for callers that schedule it themselves)."""
        return [self.action(coin) for coin in self.coins()]


class Scheduler:
    """One scheduler worker."""

    def __init__(self, settings: Settings, db: DatabaseService, *, worker_id: str | None = None) -> None:
        self.settings = settings
        self.db = db
        self.worker_id = worker_id or WORKER_ID
        self.stop_event = threading.Event()
        self.started_at = utcnow()
        self.current_job: str | None = None
        stop = self.stop_event.is_set
        self.blockchair = BlockchairIngestor(
            settings=settings, db=db, should_stop=stop, worker_id=self.worker_id
        )
        self.coingecko = CoinGeckoIngestor(
            settings=settings, db=db, should_stop=stop, worker_id=self.worker_id
        )
        self.replayer = Replayer(settings, db, blockchair=self.blockchair, coingecko=self.coingecko)
        self.jobs = self._jobs()
        self.jobs_by_name = {job.name: job for job in self.jobs}
        # Jobs to run as soon as the database answers (an ordered set: dict keys).
        self.missed_jobs: dict[str, None] = {}
        self.interrupted_runs: list[int] = []
        self.outage = PROCESS_OUTAGE
        self.exit_code = 0
        self.database_lost = False  # the SQLite file was deleted or replaced: write nothing more

    # ------------------------------------------------------------------ jobs

    def _jobs(self) -> list[Job]:
        s = self.settings
        daily_at = s.DAILY_PRICES_AT_UTC
        chains = lambda: self._coins("blockchair_chain")  # noqa: E731 - evaluated at each run
        priced = lambda: self._coins("coingecko_id")  # noqa: E731

        def blockchair(data_type: str) -> Callable[[CoinMetadataData], IngestionResult | None]:
            return lambda coin: self.blockchair.ingest(coin, data_type, trigger=SCHEDULE_TRIGGER)

        def price_points(quote: str) -> Callable[[CoinMetadataData], IngestionResult | None]:
            return lambda coin: self.coingecko.ingest_latest_points(coin, quote, trigger=SCHEDULE_TRIGGER)

        # One job per quote currency: hourly points, and within the last day 5-minute ones (the latest
        # intraday price); one request per coin and quote per run once the window is filled.
        points = [
            Job(f"price_points_{quote}", s.LATEST_PRICE_INTERVAL_MINUTES, priced, price_points(quote))
            for quote in s.QUOTE_CURRENCIES
        ]
        return [
            Job("blocks", s.BLOCKS_INTERVAL_MINUTES, chains, blockchair("blocks")),
            Job("transactions", s.TRANSACTIONS_INTERVAL_MINUTES, chains, blockchair("transactions")),
            Job("addresses", s.ADDRESSES_INTERVAL_MINUTES, chains, blockchair("addresses")),
            Job("latest_prices", s.LATEST_PRICE_INTERVAL_MINUTES, priced, self._latest_price),
            Job(
                "daily_prices",
                DAILY_CHECK_MINUTES,
                priced,
                self._daily_price,
                daily_after=lambda now: (now.hour, now.minute) >= (daily_at.hour, daily_at.minute),
            ),
            *points,
        ]

    def _coins(self, attribute: str) -> list[CoinMetadataData]:
        # Read at every run of a job, so a coin added or disabled (`crypto-pipeline coins ...`) is picked
        # up or dropped at its next run, without a restart; COINS, when set, narrows it further.
        coins = [c for c in self.db.get_coins(active_only=True) if getattr(c, attribute)]
        return [c for c in coins if named_by_coins_setting(self.settings, c)]

    def _latest_price(self, coin: CoinMetadataData) -> IngestionResult | None:
        return self.coingecko.ingest_latest(coin, trigger=SCHEDULE_TRIGGER)

    def _daily_price(self, coin: CoinMetadataData) -> IngestionResult | None:
        yesterday = utcnow().date() - timedelta(days=1)
        first = yesterday - timedelta(days=self.settings.PRICE_BACKFILL_DAYS - 1)
        return self.coingecko.ingest_price_range(coin, first, yesterday, trigger=SCHEDULE_TRIGGER)

    def run_job(self, job: Job) -> list[IngestionResult | None]:
        """Run the units of one job slot this worker wins a lease for; never raises (failures are logged).

        Leases are per coin, so a worker killed in the middle of a job leaves the other coins' units of
        that slot to whichever worker runs the job next. A job the database's absence cut short is run
        again as soon as the database is back, not an interval later.
        """
        try:
            # The slot (and a daily job's date) on the database's clock: workers whose clocks disagree
            # must still agree on which slot a lease is for, or a slot would run once per clock.
            now = self.db.db_now()
        except DatabaseUnavailable as exc:
            self.outage.failed(exc)
            self.missed_jobs[job.name] = None
            return []
        if job.daily_after is not None and not job.daily_after(now):
            return []
        ttl = timedelta(minutes=max(job.every_minutes, 1) * 2)
        results: list[IngestionResult | None] = []
        try:
            for coin in job.coins():
                if self.stop_event.is_set():
                    break
                if not self.db.take_lease(f"{job.name}:{coin.symbol}", job.slot(now), self.worker_id, ttl):
                    logger.debug("job %s for %s: slot %s is taken", job.name, coin.symbol, job.slot(now))
                    continue
                self.current_job = f"{job.name} {coin.symbol}"
                results.append(job.action(coin))
        except DatabaseUnavailable as exc:
            self.outage.failed(exc)
            self.missed_jobs[job.name] = None
        except Exception:  # noqa: BLE001 - one job's failure must not stop the loop or starve the others
            logger.exception("job %s failed", job.name)
        finally:
            self.current_job = None
        self._note_interrupted(results)
        self._requeue_outage_runs(results)
        return results

    def _requeue_outage_runs(self, results: list[IngestionResult | None]) -> None:
        """Queue the slices of units the database's absence failed, so that none is left incomplete."""
        for result in results:
            if result is None or result.error_class != DatabaseUnavailable.__name__:
                continue
            try:
                self.db.request_rerun(result.id, "scheduler: database outage")
            except DatabaseUnavailable as exc:  # gone again: the run stays failed, visible for a rerun
                self.outage.failed(exc)
                return

    def _run_missed_jobs(self) -> None:
        """Run the jobs an outage cut short (and, at start, every job once), oldest first."""
        for name in list(self.missed_jobs):
            if self.stop_event.is_set() or self.outage.down:
                return
            del self.missed_jobs[name]
            self.run_job(self.jobs_by_name[name])

    def _note_interrupted(self, results: list[IngestionResult | None]) -> None:
        self.interrupted_runs += [r.id for r in results if r is not None and r.error_class == "Interrupted"]

    # ------------------------------------------------------------------ reruns

    def serve_reruns(self, *, kinds: tuple[str, ...] = ("rerun",), limit: int = 10) -> int:
        """Serve pending requests until none is left, a job is due, or `limit` were served.

        Requests are claimed and served by the same code as `crypto-pipeline rerun` and the dashboard's
        "Run here" (pipeline.ingestion.requests); a request whose slice another process is replaying waits.
        """
        served = 0
        while served < limit and not self.stop_event.is_set():
            request = self.db.claim_next_request(self.worker_id, kinds=kinds)
            if request is None:
                break
            self.current_job = f"{request.kind} request {request.id}"
            try:
                result = self._serve(request)
            except RequestRefused as exc:  # recorded on the request; nothing was sent
                logger.warning("%s request %s: %s", request.kind, request.id, exc)
            except DatabaseUnavailable:
                raise  # run() rides out the outage (the outcome could not be recorded meanwhile)
            except Exception:  # noqa: BLE001 - recorded on the request; the loop goes on
                logger.exception("%s request %s failed", request.kind, request.id)
            else:
                self._note_interrupted([result])
                self._requeue_outage_runs([result])
            finally:
                self.current_job = None
            served += 1
        return served

    def _serve(self, request: ReplayRequestData) -> IngestionResult | None:
        return serve_request(self.db, self.replayer, request, self.worker_id)

    # ------------------------------------------------------------------ loop

    def _heartbeat_loop(self) -> None:
        while not self.stop_event.is_set():
            wait = self.settings.HEARTBEAT_SECONDS
            try:
                self.db.check_file_identity()
                self.db.beat(self.worker_id, started_at=self.started_at, current_job=self.current_job)
                self.db.recover_abandoned()
            except DatabaseUnavailable as exc:
                wait = min(wait, self.outage.failed(exc))
            except DatabaseReplaced as exc:
                # Writing on would go into an unlinked file or a stranger's database: stop the process.
                logger.error("%s", exc)
                self.exit_code = exc.exit_code
                self.database_lost = True
                self.stop_event.set()
                return
            except Exception:  # noqa: BLE001 - a missed beat must not kill the thread
                logger.exception("heartbeat failed")
            else:
                self.outage.recovered()
            self.stop_event.wait(wait)

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT ask the loop to stop: the running unit ends at once, closed as interrupted.

        Setting the flag is enough even during a stuck request: Python resumes a blocking read after the
        handler returns (PEP 475), but the HTTP client never blocks longer than a fraction of a second
        between checks of the ingestors' `should_stop` (this flag), so it abandons the request and the
        unit closes as failed (Interrupted) and is queued for a rerun.
        """

        def _stop(signum: int, _frame: object) -> None:
            logger.info("received signal %s; abandoning the current request and stopping", signum)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)

    def run(self) -> int:
        """Run until stopped: every job once, then on schedule, serving reruns between jobs.

        Returns the process's exit code. A database outage never ends the loop: the loop waits, with
        backoff, and resumes (missed jobs first) when the database answers again.
        """
        logger.info("scheduler %s starting", self.worker_id)
        # Refused at once (WorldMismatch, exit 11), rather than failing every job: a database of the
        # simulator is never fed from the real APIs, nor the reverse.
        self.db.claim_world(self.settings.data_world)
        beat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        beat.start()
        # Incident rules and alert delivery in their own thread: a dead alert channel never delays a unit.
        Watcher(
            self.settings, self.db, worker_id=self.worker_id, stop_event=self.stop_event, outage=self.outage
        ).start()
        timer = schedule.Scheduler()
        for job in self.jobs:
            # schedule annotates `interval` as int, but turns it into timedelta(seconds=interval), which
            # takes the fractional seconds of sub-minute intervals (the process tests run 3 s jobs).
            every = timer.every(job.every_minutes * 60)  # type: ignore[arg-type]
            every.seconds.do(self.run_job, job).tag(job.name)
        self.missed_jobs.update(dict.fromkeys(self.jobs_by_name))  # what `schedule` calls run_all
        while not self.stop_event.is_set():
            try:
                if self.outage.down and not self._database_back():
                    continue
                self._run_missed_jobs()
                timer.run_pending()
                self.serve_reruns()
                if not self._job_due(timer):
                    self.serve_reruns(kinds=("backfill",), limit=1)  # backfills yield to the regular jobs
            except DatabaseUnavailable as exc:
                self.stop_event.wait(self.outage.failed(exc))
                continue
            idle = timer.idle_seconds
            self.stop_event.wait(1.0 if idle is None else min(max(idle, 0.0), 1.0))
        self._shutdown(beat)
        return self.exit_code

    def _database_back(self) -> bool:
        """Probe the database during an outage; waits out the backoff and returns False while it is away."""
        try:
            self.db.schema_revision()
        except DatabaseUnavailable as exc:
            self.stop_event.wait(self.outage.failed(exc))
            return False
        self.outage.recovered()
        return True

    @staticmethod
    def _job_due(timer: schedule.Scheduler) -> bool:
        idle = timer.idle_seconds
        return idle is not None and idle <= 0

    def _shutdown(self, beat: threading.Thread) -> None:
        beat.join(timeout=5)
        if self.database_lost:
            logger.info("scheduler %s stopped without signing off: its database file is gone", self.worker_id)
            return
        try:
            for run_id in self.interrupted_runs:
                self.db.request_rerun(run_id, "scheduler: interrupted")
            self.db.stop_worker(self.worker_id)
        except DatabaseUnavailable as exc:
            # The next worker finds this one's heartbeat stale and requeues what it left running.
            logger.warning("scheduler %s stopped without signing off: %s", self.worker_id, exc)
        else:
            logger.info("scheduler %s stopped cleanly", self.worker_id)
