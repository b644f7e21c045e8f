"""Plan the fewest requests that fill every gap, show what they cost, and queue them for the scheduler.

Prices: one `market_chart/range` request per coin per contiguous window of up to 365 missing days.
Price points: per coin and quote, one request per window of at most 90 whole days that holds missing
hours (within HOURLY_DAYS), since CoinGecko sends hourly points only for windows of up to 90 days.
Blocks: one block-range listing per hole (100 heights per request). Transactions: one listing per range of
incomplete blocks (100 transactions per request). The planned slices are queued as backfill requests, which
the scheduler serves after its regular jobs, so "latest data" keeps priority.

The same cost rules price any slice before it is replayed (the `*_cost` functions, which
`Replayer.estimate` calls), and `check_budget` refuses a slice whose requests would not fit the source's
daily budget next to what the last 24 hours spent: a plan and a replay never disagree about a slice's cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from pydantic import BaseModel

from pipeline.actors import Actor
from pipeline.config import Settings
from pipeline.database import DatabaseService
from pipeline.ranges import (
    MAX_HOURLY_WINDOW,
    contiguous_ranges,
    day_windows,
    hour_windows,
    servable_range,
    utcnow,
)
from pipeline.schemas import CoinMetadataData, ReplayRequestData
from pipeline.services.coverage import (
    HeightRange,
    block_coverage,
    held_height_ranges,
    hourly_window_gaps,
    missing_price_days,
    missing_price_hours,
    price_coverage,
)
from pipeline.sources.blockchair import address_requests
from pipeline.store.coverage import average_transaction_count
from pipeline.store.runs import requests_sent_since

PAGE_SIZE = 100
BUDGET_WINDOW = timedelta(hours=24)
SOURCE_NAMES = {"coingecko": "CoinGecko", "blockchair": "Blockchair"}


def block_requests(heights: int) -> int:
    """Requests a listing of `heights` consecutive blocks costs (one at least, 100 per page)."""
    return max(1, math.ceil(heights / PAGE_SIZE))


def transaction_requests(transactions: int) -> int:
    """Requests reading blocks holding `transactions` transactions costs (one at least, 100 per page)."""
    return max(1, math.ceil(transactions / PAGE_SIZE))


def price_requests(days: Sequence[date]) -> int:
    """Requests fetching these days costs: one `market_chart/range` per window of up to 365 days."""
    return len(day_windows(days))


def daily_budget(settings: Settings, source: str) -> int:
    """The requests a source may be sent per day (COINGECKO_/BLOCKCHAIR_DAILY_REQUEST_BUDGET)."""
    budgets = {
        "coingecko": settings.COINGECKO_DAILY_REQUEST_BUDGET,
        "blockchair": settings.BLOCKCHAIR_DAILY_REQUEST_BUDGET,
    }
    return budgets[source]


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
            requests=price_requests([first, last]),  # one window
            description=f"prices {coverage.coin_id} {first}..{last} ({(last - first).days + 1} days)",
        )
        for first, last in day_windows(gaps)
    ]


def hourly_gap_days(
    db: DatabaseService, settings: Settings, coin: CoinMetadataData, quote: str, now: datetime | None = None
) -> list[tuple[date, date]]:
    """Windows of whole days (at most 90 each, so one request) that hold the hourly gaps
    (`coverage.hourly_window_gaps`)."""
    missing = hourly_window_gaps(db, settings, coin, quote, now)
    return day_windows({h.date() for h in missing}, max_days=MAX_HOURLY_WINDOW.days)


def _hourly_slices(db: DatabaseService, settings: Settings, coin: CoinMetadataData) -> list[PlannedSlice]:
    coin_id = coin.coingecko_id or coin.symbol.lower()
    slices = []
    for quote in settings.QUOTE_CURRENCIES:
        for first, last in hourly_gap_days(db, settings, coin, quote):
            params: dict[str, object] = {
                "coin_id": coin_id,
                "quote": quote,
                "granularity": "hourly",
                "start": first.isoformat(),
                "end": last.isoformat(),
            }
            slices.append(
                PlannedSlice(
                    source="coingecko",
                    data_type="price_points",
                    subject=coin_id,
                    params=params,
                    requests=1,
                    description=f"hourly prices {coin_id}/{quote} {first}..{last}",
                )
            )
    return slices


def _chain_slices(db: DatabaseService, settings: Settings, coin: CoinMetadataData) -> list[PlannedSlice]:
    coverage = block_coverage(db, settings, coin)
    chain = coverage.chain
    slices = [
        PlannedSlice(
            source="blockchair",
            data_type="blocks",
            subject=chain,
            params={"chain": chain, "start_height": hole.start, "end_height": hole.end},
            requests=block_requests(hole.size),
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
                requests=transaction_requests(gap.total),
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
            slices += _hourly_slices(db, settings, coin)
        if coin.blockchair_chain:
            slices += _chain_slices(db, settings, coin)
    by_source = {"coingecko": 0, "blockchair": 0}
    for planned in slices:
        by_source[planned.source] += planned.requests
    rates = {
        "coingecko": settings.COINGECKO_RATE_LIMIT_PER_MINUTE,
        "blockchair": settings.BLOCKCHAIR_RATE_LIMIT_PER_MINUTE,
    }
    return FillPlan(
        slices=slices,
        requests_by_source=by_source,
        minutes_by_source={s: round(n / rates[s], 2) for s, n in by_source.items()},
        daily_share_by_source={s: round(n / daily_budget(settings, s), 4) for s, n in by_source.items()},
    )


def queue_plan(
    db: DatabaseService, plan: FillPlan, requested_by: str, *, actor: Actor | None = None
) -> list[ReplayRequestData]:
    """Queue each planned slice as a backfill request (a slice already queued is not queued twice); with
    `actor`, each slice's request is audited as "fill_gaps" in its own transaction."""
    return [
        db.request_backfill(planned.as_request(), requested_by, actor=actor, action="fill_gaps")
        for planned in plan.slices
    ]


# ---------------------------------------------------------------------------------------------- any slice
#
# What replaying a slice (a run's recorded `params` or a queued backfill) will send, by the same rules as the
# plan above and as the ingestors page: a replay is priced before its first request and refused when it
# does not fit the day's budget.


class SliceCost(BaseModel):
    """The requests one slice will send to its source, and what was priced (for messages)."""

    source: str
    requests: int
    detail: str


class BudgetExceeded(ValueError):
    """A slice whose requests do not fit the source's daily budget; refused before any request is sent."""


def price_range_cost(
    db: DatabaseService,
    settings: Settings,
    coin: CoinMetadataData,
    start: date,
    end: date,
    *,
    today: date | None = None,
) -> SliceCost:
    """Prices of [start, end], clamped to what the plan serves: one request per window of missing days.

    `today` is the ingestor's today (its clock), so that the price and the replay agree on the last day.
    """
    coin_id = coin.coingecko_id or coin.symbol.lower()
    low, high = servable_range(coin, settings, start, end, today or utcnow().date())
    if low > high:
        return SliceCost(
            source="coingecko", requests=0, detail=f"prices {coin_id} {start}..{end} (no day the plan serves)"
        )
    missing = missing_price_days(db, coin_id, low, high)
    clamped = "" if (low, high) == (start, end) else f", clamped to the plan's {low}..{high}"
    return SliceCost(
        source="coingecko",
        requests=price_requests(missing) if missing else 0,
        detail=f"prices {coin_id} {start}..{end} ({len(missing):,} missing days{clamped})",
    )


def price_day_cost(
    settings: Settings, coin: CoinMetadataData, day: date, *, today: date | None = None
) -> SliceCost:
    """One coin-day through `/history`: one request, none when the plan cannot serve the day."""
    low, high = servable_range(coin, settings, day, day, today or utcnow().date())
    coin_id = coin.coingecko_id or coin.symbol.lower()
    return SliceCost(source="coingecko", requests=int(low <= high), detail=f"price of {coin_id} on {day}")


def price_points_cost(
    db: DatabaseService,
    settings: Settings,
    coin: CoinMetadataData,
    start: date,
    end: date,
    *,
    quote: str,
    granularity: str,
    now: datetime | None = None,
) -> SliceCost:
    """Price points of [start, end] in `quote`: one request per window of missing hours (at most 90
    days), or for daily points one per window of missing days (daily USD is `price_range_cost`)."""
    now = now or utcnow()
    coin_id = coin.coingecko_id or coin.symbol.lower()
    if granularity == "daily" and quote == "usd":
        return price_range_cost(db, settings, coin, start, end, today=now.date())
    low, high = servable_range(coin, settings, start, end, now.date())
    label = f"{granularity} prices {coin_id}/{quote} {start}..{end}"
    if low > high:
        return SliceCost(source="coingecko", requests=0, detail=f"{label} (no day the plan serves)")
    if granularity == "daily":
        held = {
            p.ts.date()
            for p in db.get_price_points(
                coin_id=coin_id, start=low, end=high, quote=quote, granularity="daily"
            )
        }
        days = [low + timedelta(days=i) for i in range((high - low).days + 1)]
        missing_days = [d for d in days if d not in held]
        requests = len(day_windows(missing_days))
        return SliceCost(
            source="coingecko", requests=requests, detail=f"{label} ({len(missing_days)} missing days)"
        )
    begin = datetime.combine(low, datetime.min.time(), now.tzinfo)
    hours = missing_price_hours(db, coin_id, quote, begin, begin + timedelta(days=(high - low).days + 1))
    return SliceCost(
        source="coingecko",
        requests=len(hour_windows(hours)),
        detail=f"{label} ({len(hours):,} missing hours)",
    )


def block_range_cost(
    db: DatabaseService, settings: Settings, coin: CoinMetadataData, start: int | None, end: int | None
) -> SliceCost:
    """Blocks [start, end], read whole in pages of 100; open ends resolved the way the ingestor does."""
    chain = coin.blockchair_chain or coin.symbol
    if start is None:
        stored = db.max_block_height(coin.symbol)
        if stored is None:  # a first run: one request for the tip, then the initial depth
            depth = settings.BLOCKS_INITIAL_DEPTH
            return SliceCost(
                source="blockchair",
                requests=1 + block_requests(depth),
                detail=f"blocks {chain}: the newest {depth:,} heights",
            )
        start = max(stored - settings.REORG_DEPTH + 1, 0)
    if end is None:  # up to the tip last seen (the replay pins the tip on its first page)
        end = max(coin.chain_tip_height or start, start)
    heights = max(end - start + 1, 0)
    return SliceCost(
        source="blockchair",
        requests=block_requests(heights),
        detail=f"blocks {chain} {start}..{end} ({heights:,} heights)",
    )


def _average_transactions(db: DatabaseService, coin_symbol: str) -> int:
    """Transactions per stored block of the chain (every block has one at least: its coinbase)."""
    average = average_transaction_count(db, coin_symbol)
    return max(1, math.ceil(average)) if average is not None else 1


def _missing_heights(held: list[HeightRange], low: int, high: int) -> list[tuple[int, int]]:
    """The heights of [low, high] outside the held ranges, as ranges (arithmetic: never one per height)."""
    gaps, cursor = [], low
    for have in held:
        if have.end < cursor or have.start > high:
            continue
        if have.start > cursor:
            gaps.append((cursor, have.start - 1))
        cursor = max(cursor, have.end + 1)
    if cursor <= high:
        gaps.append((cursor, high))
    return gaps


def transaction_range_cost(
    db: DatabaseService, settings: Settings, coin: CoinMetadataData, start: int | None, end: int | None
) -> SliceCost:
    """Transactions of [start, end]: like the ingestor, only blocks that are incomplete or not stored are
    read, each contiguous range whole, 100 transactions per request (a missing block is counted at the
    chain's average, its count being unknown until it is fetched)."""
    chain = coin.blockchair_chain or coin.symbol
    if start is None or end is None:
        top = db.max_block_height(coin.symbol)
        if top is None or settings.TRANSACTIONS_WINDOW_BLOCKS == 0:
            return SliceCost(source="blockchair", requests=0, detail=f"transactions {chain} (no blocks yet)")
        start, end = max(top - settings.TRANSACTIONS_WINDOW_BLOCKS + 1, 0), top
    expected = {height: count for height, count, _stored in db.transaction_deficits(coin.symbol, start, end)}
    average = _average_transactions(db, coin.symbol)
    spans = [(a, b, sum(expected[h] for h in range(a, b + 1))) for a, b in contiguous_ranges(expected)]
    spans += [
        (a, b, (b - a + 1) * average)
        for a, b in _missing_heights(held_height_ranges(db, coin.symbol), start, end)
    ]
    merged: list[list[int]] = []
    for a, b, transactions in sorted(spans):
        if merged and a == merged[-1][1] + 1:  # adjacent ranges are read as one
            merged[-1][1], merged[-1][2] = b, merged[-1][2] + transactions
        else:
            merged.append([a, b, transactions])
    return SliceCost(
        source="blockchair",
        requests=sum(transaction_requests(transactions) for _a, _b, transactions in merged),
        detail=f"transactions {chain} {start}..{end} ({len(merged):,} ranges to read)",
    )


def address_cost(coin: CoinMetadataData, addresses: Sequence[str]) -> SliceCost:
    """Watched-address balances: the ingestor's own batching (100 per request, one each on Ethereum)."""
    chain = coin.blockchair_chain or coin.symbol
    count = sum(1 for _ in address_requests(chain, coin.chain_family, list(addresses)))
    return SliceCost(source="blockchair", requests=count, detail=f"{len(addresses):,} addresses on {chain}")


def requests_spent(db: DatabaseService, source: str, now: datetime | None = None) -> int:
    """Requests the run log says were sent to a source in the last 24 hours."""
    return requests_sent_since(db, source, (now or utcnow()) - BUDGET_WINDOW)


def check_budget(db: DatabaseService, settings: Settings, cost: SliceCost) -> None:
    """Refuse a slice whose requests, added to the last 24 hours', exceed the source's daily budget."""
    budget = daily_budget(settings, cost.source)
    spent = requests_spent(db, cost.source)
    if spent + cost.requests <= budget:
        return
    name = SOURCE_NAMES.get(cost.source, cost.source)
    msg = (
        f"{cost.detail} would take {cost.requests:,} {name} requests; with {spent:,} sent in the last 24 h "
        f"that exceeds the daily budget of {budget:,} ({cost.source.upper()}_DAILY_REQUEST_BUDGET), "
        "so it was refused before any request was sent"
    )
    raise BudgetExceeded(msg)
