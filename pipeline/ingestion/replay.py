"""Rerun a recorded run: replay exactly the slice its `params` describe, linked to it as parent.

Only slices the system recorded can be replayed: the parameters come from the run log, never from the
caller, so a rerun request cannot be used to run arbitrary work.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pipeline.config import Settings
from pipeline.database import DatabaseService
from pipeline.errors import ConfigError
from pipeline.ingestion.blockchair import BlockchairIngestor
from pipeline.ingestion.coingecko import CoinGeckoIngestor
from pipeline.runlog import IngestionResult
from pipeline.schemas import DataIngestionLogData


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
        self.blockchair = blockchair or BlockchairIngestor(settings=settings, db=db)
        self.coingecko = coingecko or CoinGeckoIngestor(settings=settings, db=db)

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
        p = params
        kwargs = {"trigger": trigger, "parent_run_id": parent_run_id}
        if source == "blockchair":
            coin = self.blockchair.coin(p["chain"])
            if data_type == "addresses":
                return self.blockchair.ingest_addresses(coin, addresses=list(p["addresses"]), **kwargs)
            heights = {"start_height": p.get("start_height"), "end_height": p.get("end_height")}
            return self.blockchair.ingest(coin, data_type, **heights, **kwargs)
        if source == "coingecko":
            coin = self.coingecko.coin(p["coin_id"])
            if data_type == "price_by_date":
                return self.coingecko.ingest_price_for_date(coin, date.fromisoformat(p["date"]), **kwargs)
            start, end = date.fromisoformat(p["start"]), date.fromisoformat(p["end"])
            return self.coingecko.ingest_price_range(coin, start, end, **kwargs)
        msg = f"unknown source {source!r}; the slice cannot be run"
        raise ConfigError(msg)
