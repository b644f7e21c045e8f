"""Plan the fewest requests that fill every gap, show what they cost, and queue them for the scheduler.

Prices: one `market_chart/range` request per coin per contiguous window of up to 365 missing days.
Blocks: one block-range listing per hole (100 heights per request). Transactions: one listing per range of
incomplete blocks (100 transactions per request). The planned slices are queued as backfill requests, which
the scheduler serves after its regular jobs, so "latest data" keeps priority.
"""

from __future__ import annotations

import math
from datetime import date, timedelta

from pydantic import BaseModel

from pipeline.config import Settings
from pipeline.coverage import block_coverage, price_coverage
from pipeline.database import DatabaseService
from pipeline.ingestion.coingecko import day_windows
from pipeline.models import utcnow
from pipeline.schemas import CoinMetadataData, RerunRequestData

PAGE_SIZE = 100


class PlannedSlice(BaseModel):
    """One slice to fetch and the requests it will spend."""

    source: str
    data_type: str
    subject: str
    params: dict[str, object]
    requests: int
    description: str

    def as_request(self) -> dict[str, object]:
        """The form a backfill request carries."""
        return {"source": self.source, "data_type": self.data_type, "params": self.params}


class FillPlan(BaseModel):
    """Every slice, with the budget it uses."""

    slices: list[PlannedSlice]
    requests_by_source: dict[str, int]
    minutes_by_source: dict[str, float]
    daily_share_by_source: dict[str, float]

    @property
    def requests(self) -> int:
        """Requests in total."""
        return sum(s.requests for s in self.slices)


def coverage_window(settings: Settings, today: date | None = None) -> tuple[date, date]:
    """The date range coverage is judged over: the last COVERAGE_DAYS days."""
    today = today or utcnow().date()
    return today - timedelta(days=settings.COVERAGE_DAYS - 1), today


def _price_slices(db: DatabaseService, settings: Settings, coin: CoinMetadataData) -> list[PlannedSlice]:
    start, end = coverage_window(settings)
    coverage = price_coverage(db, settings, coin, start, end)
    gaps = [r.start + timedelta(days=i) for r in coverage.gaps for i in range(r.days)]
    return [
        PlannedSlice(
            source="coingecko",
            data_type="prices",
            subject=coverage.coin_id,
            params={"coin_id": coverage.coin_id, "start": first.isoformat(), "end": last.isoformat()},
            requests=1,
            description=f"prices {coverage.coin_id} {first}..{last} ({(last - first).days + 1} days)",
        )
        for first, last in day_windows(gaps)
    ]


def _chain_slices(db: DatabaseService, settings: Settings, coin: CoinMetadataData) -> list[PlannedSlice]:
    coverage = block_coverage(db, settings, coin)
    chain = coverage.chain
    slices = [
        PlannedSlice(
            source="blockchair",
            data_type="blocks",
            subject=chain,
            params={"chain": chain, "start_height": hole.start, "end_height": hole.end},
            requests=math.ceil(hole.size / PAGE_SIZE),
            description=f"blocks {chain} {hole.start}..{hole.end} ({hole.size} heights)",
        )
        for hole in coverage.holes
    ]
    for gap in coverage.incomplete_transactions:
        slices.append(
            PlannedSlice(
                source="blockchair",
                data_type="transactions",
                subject=chain,
                params={"chain": chain, "start_height": gap.start, "end_height": gap.end},
                # The incomplete blocks are read whole: all their transactions, 100 per request.
                requests=max(1, math.ceil(gap.total / PAGE_SIZE)),
                description=f"transactions {chain} {gap.start}..{gap.end} ({gap.missing} missing)",
            )
        )
    return slices


def plan_fill(db: DatabaseService, settings: Settings, coins: list[CoinMetadataData]) -> FillPlan:
    """The minimal set of slices that closes every gap of these coins."""
    slices: list[PlannedSlice] = []
    for coin in coins:
        if coin.coingecko_id:
            slices += _price_slices(db, settings, coin)
        if coin.blockchair_chain:
            slices += _chain_slices(db, settings, coin)
    by_source = {"coingecko": 0, "blockchair": 0}
    for planned in slices:
        by_source[planned.source] += planned.requests
    rates = {
        "coingecko": settings.COINGECKO_RATE_LIMIT_PER_MINUTE,
        "blockchair": settings.BLOCKCHAIR_RATE_LIMIT_PER_MINUTE,
    }
    daily = {
        "coingecko": settings.COINGECKO_DAILY_REQUEST_BUDGET,
        "blockchair": settings.BLOCKCHAIR_DAILY_REQUEST_BUDGET,
    }
    return FillPlan(
        slices=slices,
        requests_by_source=by_source,
        minutes_by_source={s: round(n / rates[s], 2) for s, n in by_source.items()},
        daily_share_by_source={s: round(n / daily[s], 4) for s, n in by_source.items()},
    )


def queue_plan(db: DatabaseService, plan: FillPlan, requested_by: str) -> list[RerunRequestData]:
    """Queue each planned slice as a backfill request (a slice already queued is not queued twice)."""
    return [db.request_backfill(planned.as_request(), requested_by) for planned in plan.slices]
