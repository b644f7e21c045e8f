"""What both ingestors share: settings, the database, one HTTP client, and the coins table."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from functools import cached_property

from pipeline.config import Settings, get_settings
from pipeline.database import DatabaseService
from pipeline.errors import ConfigError, Interrupted
from pipeline.http.client import ApiClient
from pipeline.http.limits import current_unit, unit_limits
from pipeline.ingestion.units import WORKER_ID, RunSlice, RunTally, record_run
from pipeline.ranges import utcnow
from pipeline.schemas import CoinMetadataData


class Ingestor:
    """Base of the source ingestors; everything is built lazily so that importing costs nothing."""

    source: str = ""

    def __init__(
        self,
        settings: Settings | None = None,
        db: DatabaseService | None = None,
        client: ApiClient | None = None,
        clock: Callable[[], datetime] = utcnow,
        should_stop: Callable[[], bool] = lambda: False,
        worker_id: str = WORKER_ID,
    ) -> None:
        self._settings = settings
        self._db = db
        self._client = client
        self.clock = clock
        self.should_stop = should_stop
        # Recorded on every run, so that runs of a worker whose heartbeat stops can be found.
        self.worker_id = worker_id
        self._world_checked = False

    @cached_property
    def settings(self) -> Settings:
        """The settings given, or the process-wide ones."""
        return self._settings or get_settings()

    @cached_property
    def db(self) -> DatabaseService:
        """The database given, or one built from the settings."""
        return self._db or DatabaseService(settings=self.settings)

    @cached_property
    def client(self) -> ApiClient:
        """The HTTP client given, or the source's client built from the settings."""
        return self._client or self.build_client()

    def recorded(
        self, run: RunSlice, *, trigger: str, parent_run_id: int | None
    ) -> AbstractContextManager[RunTally]:
        """The run-log context one unit of this ingestor runs in, within the unit's time budget.

        Every request of the unit is cut at the end of UNIT_TIME_BUDGET_SECONDS (UnitTimeout) or as
        soon as the process is stopping (Interrupted); either closes the unit as failed.
        """
        return self._recorded(run, trigger=trigger, parent_run_id=parent_run_id)

    @contextmanager
    def _recorded(self, run: RunSlice, *, trigger: str, parent_run_id: int | None) -> Iterator[RunTally]:
        self.check_world()
        with (
            unit_limits(self.settings.UNIT_TIME_BUDGET_SECONDS, self.should_stop),
            record_run(
                self.db,
                self.client,
                run,
                trigger=trigger,
                parent_run_id=parent_run_id,
                worker_id=self.worker_id,
                should_stop=self.should_stop,
            ) as tally,
        ):
            yield tally

    def check_world(self) -> None:
        """Refuse (WorldMismatch) to feed a database stamped with the other world: simulated or real.

        Checked once per ingestor; the first ingestion into a database stamps it.
        """
        if not self._world_checked:
            self.db.claim_world(self.settings.data_world)
            self._world_checked = True

    def check_stop(self) -> None:
        """Between pages: raise Interrupted when the process is stopping, UnitTimeout when the unit's
        time budget is spent (either way the unit closes as failed and its slice can be rerun)."""
        if self.should_stop():
            raise Interrupted
        unit = current_unit()
        if unit is not None and unit.spent():
            raise unit.timeout_error()

    def build_client(self) -> ApiClient:
        """The source's client; subclasses say how."""
        raise NotImplementedError

    def coin(self, name: str) -> CoinMetadataData:
        """A coin by symbol, CoinGecko id or Blockchair chain; unknown names raise ConfigError."""
        wanted = name.strip().lower()
        for coin in self.db.get_coins():
            if wanted in (coin.symbol.lower(), coin.coingecko_id, coin.blockchair_chain):
                return coin
        known = ", ".join(c.coingecko_id or c.symbol for c in self.db.get_coins())
        msg = f"unknown coin {name!r}; known coins: {known} (`crypto-pipeline coins add` adds one)"
        raise ConfigError(msg)
