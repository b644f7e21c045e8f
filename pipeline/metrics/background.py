"""The exporter's figures that walk the stored data, refreshed in the background rather than on every
scrape: the gaps, the rows per table and the size of the database on disk.

Finding gaps walks what is stored (`services.coverage`: the stored days and hours of every coin, the
heights of every chain), so its cost grows with the data: about 75 ms at 100,000 blocks and ten coins on
SQLite, against 25 ms for everything else a scrape reads. The row counts read up to 10,000 rows of every
table before they estimate (10 ms on PostgreSQL at 1,000,000 transactions), and `pg_database_size` stats
every file of the database (9 ms). They all change with runs, minutes apart, so the exporter computes
them at most every `REFRESH_SECONDS`, in a thread of its own, and every scrape serves the newest figures
with the time they were computed (`crypto_pipeline_background_refreshed_timestamp_seconds`). Only the
exporter's start (or its first scrape that can read the database) waits for them.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from pipeline.config import Settings
from pipeline.database import DatabaseService
from pipeline.errors import DatabaseError
from pipeline.ranges import contiguous_hours, utcnow
from pipeline.services import coverage, gapfill
from pipeline.store import queries

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 60.0
GapLabels = tuple[str, str, str]  # coin, kind, quote


@dataclass
class SlowFigures:
    """Per coin and kind of gap, how many gaps (ranges) are open and what they miss; the rows per table
    (`queries.table_row_estimates`) and the database's size on disk (None for a database without one);
    as of `computed_at`."""

    computed_at: datetime
    table_rows: dict[str, int] = field(default_factory=dict)
    database_size_bytes: int | None = None
    ranges: dict[GapLabels, int] = field(default_factory=dict)
    missing: dict[GapLabels, int] = field(default_factory=dict)

    def add(self, coin: str, kind: str, quote: str, ranges: int, missing: int) -> None:
        """Record one coin's gaps of one kind."""
        self.ranges[(coin, kind, quote)] = ranges
        self.missing[(coin, kind, quote)] = missing


def read_slow_figures(db: DatabaseService, settings: Settings) -> SlowFigures:
    """The rows per table, the database's size, and the open gaps per active coin and kind as
    `crypto-pipeline gaps` and the API's /v1/gaps find them: price days in the coverage window (kind
    `price_days`), hours without a price point per quote in HOURLY_DAYS (`price_hours`), holes between
    stored blocks (`block_heights`), and blocks missing transactions in the transaction window
    (`transactions`)."""
    figures = SlowFigures(
        computed_at=utcnow(),
        table_rows=dict(queries.table_row_estimates(db)),
        database_size_bytes=db.database_size_bytes(),
    )
    low, high = gapfill.coverage_window(settings)
    for coin in db.get_coins(active_only=True):
        if coin.coingecko_id:
            prices = coverage.price_coverage(db, settings, coin, low, high)
            figures.add(prices.coin_id, "price_days", "", len(prices.gaps), sum(r.days for r in prices.gaps))
            for quote in settings.QUOTE_CURRENCIES:
                hours = coverage.hourly_window_gaps(db, settings, coin, quote)
                figures.add(prices.coin_id, "price_hours", quote, len(contiguous_hours(hours)), len(hours))
        if coin.blockchair_chain:
            blocks = coverage.block_coverage(db, settings, coin)
            holes = blocks.holes
            figures.add(blocks.chain, "block_heights", "", len(holes), sum(h.size for h in holes))
            incomplete = blocks.incomplete_transactions
            figures.add(blocks.chain, "transactions", "", len(incomplete), blocks.missing_transactions)
    return figures


class BackgroundFigures:
    """The newest `SlowFigures` of one database, recomputed in a background thread once they are
    `refresh_seconds` old (one refresh at a time). Safe to share between the server's threads."""

    def __init__(self, db: DatabaseService, settings: Settings, refresh_seconds: float = REFRESH_SECONDS):
        self.db = db
        self.settings = settings
        self.refresh_seconds = refresh_seconds
        self._figures: SlowFigures | None = None
        self._computed = 0.0  # time.monotonic() of the newest figures
        self._lock = threading.Lock()  # guards the figures and the flag below
        self._first = threading.Lock()  # one synchronous first computation at a time
        self._refreshing = False
        self._problem: str | None = None

    def get(self) -> SlowFigures:
        """The newest figures (computed now if there are none yet: raises then when the database cannot
        be read); starts a background refresh when they are due for one."""
        with self._lock:
            figures = self._figures
        if figures is None:
            with self._first:
                if self._figures is None:
                    self._store(read_slow_figures(self.db, self.settings))
                assert self._figures is not None
                return self._figures
        with self._lock:
            due = time.monotonic() - self._computed >= self.refresh_seconds and not self._refreshing
            if due:
                self._refreshing = True
        if due:
            threading.Thread(target=self._refresh, name="metrics-background", daemon=True).start()
        return figures

    def refresh_now(self) -> SlowFigures:
        """Compute the figures now, in this thread (tests, and the exporter's start)."""
        self._store(read_slow_figures(self.db, self.settings))
        assert self._figures is not None
        return self._figures

    def _store(self, figures: SlowFigures) -> None:
        with self._lock:
            self._figures, self._computed = figures, time.monotonic()

    def _refresh(self) -> None:
        try:
            self._store(read_slow_figures(self.db, self.settings))
            if self._problem is not None:
                logger.info("background figures refreshed again")
                self._problem = None
        except Exception as exc:  # noqa: BLE001 - a failed refresh keeps the old figures (their time shows)
            shown = str(exc) if isinstance(exc, DatabaseError) else type(exc).__name__
            if shown != self._problem:
                logger.warning("gaps and database size not refreshed: %s; serving the previous ones", shown)
                self._problem = shown
        finally:
            with self._lock:
                self._refreshing = False
