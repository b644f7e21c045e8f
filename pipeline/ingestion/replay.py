"""Rerun a recorded run: replay exactly the slice its `params` describe, linked to it as parent.

Only slices the system recorded can be replayed: the parameters come from the run log (or a planned
backfill), never from the caller, so a rerun request cannot be used to run arbitrary work. The stored
parameters are still checked before use, because a database row can be corrupted or tampered with: every
field must have its type and range (heights are whole numbers >= 0, dates are ISO dates, start <= end,
the coin is known), and `admit` prices the slice by the gap-fill cost rules and refuses it when it does
not fit the source's daily request budget, all before the first request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any, TypedDict

from pipeline.config import Settings
from pipeline.database import DatabaseService
from pipeline.errors import ConfigError
from pipeline.ingestion.base import Ingestor
from pipeline.ingestion.blockchair import BlockchairIngestor
from pipeline.ingestion.coingecko import GRANULARITIES, CoinGeckoIngestor
from pipeline.ingestion.units import IngestionResult
from pipeline.schemas import QUOTE_PATTERN, CoinMetadataData, DataIngestionLogData
from pipeline.services.gapfill import (
    SliceCost,
    address_cost,
    block_range_cost,
    check_budget,
    price_day_cost,
    price_points_cost,
    price_range_cost,
    transaction_range_cost,
)

DATA_TYPES = {
    "blockchair": ("blocks", "transactions", "addresses"),
    "coingecko": ("prices", "price_by_date", "price_points"),
}
MAX_HEIGHT = 2**63 - 1  # the BIGINT columns heights are stored in
MAX_ADDRESS_CHARS = 128


class _RunLink(TypedDict):
    """The keywords every ingest method takes to record why a run happened and which run it repeats."""

    trigger: str
    parent_run_id: int | None


class InvalidSlice(ValueError):
    """Replay parameters that do not describe a slice this pipeline can run (corrupt or tampered)."""


@dataclass(frozen=True)
class Slice:
    """A checked slice: its source, data type, coin, and the typed fields its data type uses."""

    source: str
    data_type: str
    coin: CoinMetadataData
    start_height: int | None = None
    end_height: int | None = None
    start: date | None = None
    end: date | None = None
    addresses: tuple[str, ...] = ()
    quote: str = "usd"
    granularity: str = "hourly"

    def days(self) -> tuple[date, date]:
        """The date range of a price slice."""
        if self.start is None or self.end is None:
            msg = f"{self.source}/{self.data_type} has no date range"
            raise InvalidSlice(msg)
        return self.start, self.end


def _height(params: dict[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None  # an open end: the ingestor resolves it (stored height, tip, window)
    # bool is an int subclass; True is not a height.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_HEIGHT:
        msg = f"{name} must be a whole number from 0 to {MAX_HEIGHT}, not {value!r}"
        raise InvalidSlice(msg)
    return value


def _date(params: dict[str, Any], name: str) -> date:
    value = params.get(name)
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    msg = f"{name} must be a date (YYYY-MM-DD), not {value!r}"
    raise InvalidSlice(msg)


def _addresses(params: dict[str, Any]) -> tuple[str, ...]:
    value = params.get("addresses")
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(a, str) and 0 < len(a) <= MAX_ADDRESS_CHARS for a in value)
    ):
        msg = f"addresses must be a non-empty list of addresses of up to {MAX_ADDRESS_CHARS} characters"
        raise InvalidSlice(msg)
    return tuple(value)


class Replayer:
    """Replays runs with one ingestor per source (and so one HTTP client and rate limit per source)."""

    def __init__(
        self,
        settings: Settings,
        db: DatabaseService,
        *,
        blockchair: BlockchairIngestor | None = None,
        coingecko: CoinGeckoIngestor | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.blockchair = blockchair or BlockchairIngestor(settings=settings, db=db)
        self.coingecko = coingecko or CoinGeckoIngestor(settings=settings, db=db)

    def should_stop(self) -> bool:
        """Whether the process is stopping (the scheduler's stop flag, shared by both ingestors)."""
        return self.blockchair.should_stop()

    # ------------------------------------------------------------------ checks

    def check(self, source: str, data_type: str, params: Any) -> Slice:
        """The slice `params` describe, typed; InvalidSlice (one line) when a field is wrong."""
        if source not in DATA_TYPES or data_type not in DATA_TYPES[source]:
            msg = f"unknown slice {source!r}/{data_type!r}; replayable: " + ", ".join(
                f"{s}/{t}" for s, types in DATA_TYPES.items() for t in types
            )
            raise InvalidSlice(msg)
        if not isinstance(params, dict):
            msg = f"replay parameters must be an object, not {type(params).__name__}"
            raise InvalidSlice(msg)
        if source == "blockchair":
            coin = self._coin(self.blockchair, params, "chain")
            if data_type == "addresses":
                return Slice(source, data_type, coin, addresses=_addresses(params))
            low, high = _height(params, "start_height"), _height(params, "end_height")
            if low is not None and high is not None and low > high:
                msg = f"start_height {low} is above end_height {high}"
                raise InvalidSlice(msg)
            return Slice(source, data_type, coin, start_height=low, end_height=high)
        coin = self._coin(self.coingecko, params, "coin_id")
        if data_type == "price_by_date":
            day = _date(params, "date")
            return Slice(source, data_type, coin, start=day, end=day)
        start, end = _date(params, "start"), _date(params, "end")
        if start > end:
            msg = f"start {start} is after end {end}"
            raise InvalidSlice(msg)
        if data_type == "price_points":
            quote, granularity = params.get("quote", "usd"), params.get("granularity", "hourly")
            if not isinstance(quote, str) or not re.fullmatch(QUOTE_PATTERN, quote):
                msg = f"quote must be a currency code such as usd, not {quote!r}"
                raise InvalidSlice(msg)
            if granularity not in GRANULARITIES:
                msg = f"granularity must be hourly or daily, not {granularity!r}"
                raise InvalidSlice(msg)
            return Slice(source, data_type, coin, start=start, end=end, quote=quote, granularity=granularity)
        return Slice(source, data_type, coin, start=start, end=end)

    @staticmethod
    def _coin(ingestor: Ingestor, params: dict[str, Any], field: str) -> CoinMetadataData:
        name = params.get(field)
        if not isinstance(name, str) or not name.strip():
            msg = f"{field} must name a coin, not {name!r}"
            raise InvalidSlice(msg)
        try:
            coin = ingestor.coin(name)
        except ConfigError as exc:
            raise InvalidSlice(str(exc)) from None
        wanted = coin.blockchair_chain if field == "chain" else coin.coingecko_id
        if not wanted:
            msg = f"coin {coin.symbol} has no {'Blockchair chain' if field == 'chain' else 'CoinGecko id'}"
            raise InvalidSlice(msg)
        return coin

    def estimate(self, checked: Slice) -> SliceCost:
        """The requests replaying the slice will send, by the gap-fill cost rules (services.gapfill)."""
        coin = checked.coin
        if checked.data_type == "prices":
            # Priced by the ingestor that will replay it: its settings, database and clock (its today).
            gecko = self.coingecko
            today = gecko.clock().date()
            return price_range_cost(gecko.db, gecko.settings, coin, *checked.days(), today=today)
        if checked.data_type == "price_points":
            gecko = self.coingecko
            return price_points_cost(
                gecko.db,
                gecko.settings,
                coin,
                *checked.days(),
                quote=checked.quote,
                granularity=checked.granularity,
                now=gecko.clock(),
            )
        if checked.data_type == "price_by_date":
            gecko = self.coingecko
            return price_day_cost(gecko.settings, coin, checked.days()[0], today=gecko.clock().date())
        if checked.data_type == "addresses":
            return address_cost(coin, checked.addresses)
        cost = block_range_cost if checked.data_type == "blocks" else transaction_range_cost
        return cost(self.db, self.settings, coin, checked.start_height, checked.end_height)

    def admit(self, source: str, data_type: str, params: Any) -> SliceCost:
        """Check a slice and its cost against the daily budget; raises InvalidSlice or BudgetExceeded."""
        cost = self.estimate(self.check(source, data_type, params))
        check_budget(self.db, self.settings, cost)
        return cost

    # ------------------------------------------------------------------ running

    def replay(self, run: DataIngestionLogData, *, trigger: str = "rerun") -> IngestionResult | None:
        """Run the slice of `run` again, as its child; None when the slice has nothing left to do."""
        return self.run_slice(run.source, run.data_type, run.params, trigger=trigger, parent_run_id=run.id)

    def run_slice(
        self,
        source: str,
        data_type: str,
        params: dict[str, Any],
        *,
        trigger: str,
        parent_run_id: int | None = None,
    ) -> IngestionResult | None:
        """Run a slice described the way runs record it (`params` of a run, or a planned backfill)."""
        checked = self.check(source, data_type, params)
        kwargs: _RunLink = {"trigger": trigger, "parent_run_id": parent_run_id}
        coin = checked.coin
        if data_type == "addresses":
            return self.blockchair.ingest_addresses(coin, addresses=list(checked.addresses), **kwargs)
        if source == "blockchair":
            heights = {"start_height": checked.start_height, "end_height": checked.end_height}
            return self.blockchair.ingest(coin, data_type, **heights, **kwargs)
        start, end = checked.days()
        if data_type == "price_by_date":
            return self.coingecko.ingest_price_for_date(coin, start, **kwargs)
        if data_type == "price_points":
            return self.coingecko.ingest_price_points(
                coin, start, end, quote=checked.quote, granularity=checked.granularity, **kwargs
            )
        return self.coingecko.ingest_price_range(coin, start, end, **kwargs)
