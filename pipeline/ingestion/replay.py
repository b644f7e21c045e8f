"""Rerun a recorded run: replay exactly the slice its `params` describe, linked to it as parent.

Only slices the system recorded can be replayed: the parameters come from the run log, never from the
caller, so a rerun request cannot be used to run arbitrary work.
"""

from __future__ import annotations

from datetime import date

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
        """Run the slice of `run` again; None when the slice has nothing left to do."""
        p = run.params
        kwargs = {"trigger": trigger, "parent_run_id": run.id}
        if run.source == "blockchair":
            coin = self.blockchair.coin(p["chain"])
            if run.data_type == "addresses":
                return self.blockchair.ingest_addresses(coin, addresses=list(p["addresses"]), **kwargs)
            heights = {"start_height": p.get("start_height"), "end_height": p.get("end_height")}
            return self.blockchair.ingest(coin, run.data_type, **heights, **kwargs)
        if run.source == "coingecko":
            coin = self.coingecko.coin(p["coin_id"])
            if run.data_type == "price_by_date":
                return self.coingecko.ingest_price_for_date(coin, date.fromisoformat(p["date"]), **kwargs)
            start, end = date.fromisoformat(p["start"]), date.fromisoformat(p["end"])
            return self.coingecko.ingest_price_range(coin, start, end, **kwargs)
        msg = f"run {run.id} has an unknown source {run.source!r}; it cannot be replayed"
        raise ConfigError(msg)
