"""Reports over the whole store: coverage and gaps (and the plan that fills them), freshness,
statistics, and the correlation of coins' daily returns. Each is one document, computed by the same
service functions the dashboard calls."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, StringConstraints

from pipeline.api.context import ApiContext, Ctx, IsoDay, check_order, day_param
from pipeline.api.models import CoinCoverage, CoinGaps, Correlation, HourRange, Item
from pipeline.api.problems import bad_parameter
from pipeline.api.routes.common import CoinPath, documented, reply
from pipeline.ranges import HOUR, contiguous_hours
from pipeline.schemas import CoinMetadataData, DatabaseStats
from pipeline.services import analytics, coverage, gapfill
from pipeline.services.freshness import Freshness, freshness_report

router = APIRouter(tags=["reports"])

MAX_SPAN_DAYS = 20_000
MAX_COINS = 20
StartDay = Annotated[IsoDay | None, Query(description="First day (default: COVERAGE_DAYS before today).")]
EndDay = Annotated[IsoDay | None, Query(description="Last day, included (default: today).")]


class CoverageReport(BaseModel):
    """Coverage of every active coin over [start, end]."""

    start: date
    end: date
    coins: list[CoinCoverage]


class GapsReport(BaseModel):
    """What every active coin misses in the coverage window (and HOURLY_DAYS for hourly points)."""

    start: date
    end: date
    coins: list[CoinGaps]


def _window(ctx: ApiContext, start: date | None, end: date | None) -> tuple[date, date]:
    """[start, end] of a coverage report: the parameters, or the last COVERAGE_DAYS days."""
    default_start, default_end = gapfill.coverage_window(ctx.settings)
    start, end = day_param(start, "start") or default_start, day_param(end, "end") or default_end
    check_order(start, end)
    if (end - start).days >= MAX_SPAN_DAYS:
        raise bad_parameter("start", f"the range may span at most {MAX_SPAN_DAYS} days")
    return start, end


def _coin_coverage(ctx: ApiContext, coin: CoinMetadataData, start: date, end: date) -> CoinCoverage:
    prices = coverage.price_coverage(ctx.db, ctx.settings, coin, start, end) if coin.coingecko_id else None
    blocks = coverage.block_coverage(ctx.db, ctx.settings, coin) if coin.blockchair_chain else None
    return CoinCoverage(coin=coin.symbol, prices=prices, blocks=blocks)


@router.get("/coverage", response_model=Item[CoverageReport], responses=documented(400))
def coverage_report(request: Request, ctx: Ctx, start: StartDay = None, end: EndDay = None) -> Response:
    """Per active coin: its price days by state (present, missing, failed, unavailable) and its block
    heights held, the holes between them and the blocks with missing transactions."""
    low, high = _window(ctx, start, end)
    coins = [_coin_coverage(ctx, coin, low, high) for coin in ctx.db.get_coins(active_only=True)]
    report = CoverageReport(start=low, end=high, coins=coins)
    return reply(request, ctx, Item[CoverageReport](data=report, data_as_of=ctx.db.pipeline_updated_at()))


@router.get("/coins/{coin}/coverage", response_model=Item[CoinCoverage], responses=documented(400, 404))
def coin_coverage(
    request: Request, ctx: Ctx, coin: CoinPath, start: StartDay = None, end: EndDay = None
) -> Response:
    """One coin's coverage (see /v1/coverage)."""
    found = ctx.coin(coin)
    low, high = _window(ctx, start, end)
    document = Item[CoinCoverage](
        data=_coin_coverage(ctx, found, low, high), data_as_of=ctx.db.pipeline_updated_at()
    )
    return reply(request, ctx, document)


def _hour_ranges(hours: list[datetime]) -> list[HourRange]:
    return [  # contiguous_hours gives [first, end) spans; a range names its last hour
        HourRange(start=first, end=end - HOUR, hours=int((end - first) / HOUR))
        for first, end in contiguous_hours(hours)
    ]


def _gaps(ctx: ApiContext, coin: CoinMetadataData, start: date, end: date) -> CoinGaps:
    gaps = CoinGaps(
        coin=coin.symbol, price_days=[], block_holes=[], incomplete_transactions=[], missing_hours={}
    )
    if coin.coingecko_id:
        gaps.price_days = coverage.price_coverage(ctx.db, ctx.settings, coin, start, end).gaps
        gaps.missing_hours = {
            quote: _hour_ranges(coverage.hourly_window_gaps(ctx.db, ctx.settings, coin, quote))
            for quote in ctx.settings.QUOTE_CURRENCIES
        }
    if coin.blockchair_chain:
        blocks = coverage.block_coverage(ctx.db, ctx.settings, coin)
        gaps.block_holes, gaps.incomplete_transactions = blocks.holes, blocks.incomplete_transactions
    return gaps


@router.get("/gaps", response_model=Item[GapsReport], responses=documented())
def gaps_report(request: Request, ctx: Ctx) -> Response:
    """Per active coin, what is missing: price days (in the coverage window), block holes, blocks with
    missing transactions, and hours without a price point per quote (in HOURLY_DAYS)."""
    low, high = gapfill.coverage_window(ctx.settings)
    coins = [_gaps(ctx, coin, low, high) for coin in ctx.db.get_coins(active_only=True)]
    report = GapsReport(start=low, end=high, coins=coins)
    return reply(request, ctx, Item[GapsReport](data=report, data_as_of=ctx.db.pipeline_updated_at()))


@router.get("/gaps/plan", response_model=Item[gapfill.FillPlan], responses=documented())
def fill_plan(request: Request, ctx: Ctx) -> Response:
    """The fewest requests that close every gap of the active coins, and what they cost (nothing is
    queued: `crypto-pipeline fill-gaps` or the dashboard does that)."""
    plan = gapfill.plan_fill(ctx.db, ctx.settings, ctx.db.get_coins(active_only=True))
    return reply(request, ctx, Item[gapfill.FillPlan](data=plan, data_as_of=ctx.db.pipeline_updated_at()))


@router.get("/freshness", response_model=Item[list[Freshness]], responses=documented())
def freshness(request: Request, ctx: Ctx) -> Response:
    """Per active coin: block lag behind the chain tip and age of the newest daily price, each with its
    level (ok, warn, fail, unknown) from the thresholds in the settings."""
    report = freshness_report(ctx.db.get_coins(active_only=True), ctx.settings)
    return reply(request, ctx, Item[list[Freshness]](data=report, data_as_of=ctx.db.coins_updated_at()))


@router.get("/stats", response_model=Item[DatabaseStats], responses=documented())
def stats(request: Request, ctx: Ctx) -> Response:
    """Rows per table, block and price coverage per coin, failures in the last 24 hours, size on disk."""
    document = Item[DatabaseStats](data=ctx.db.get_database_stats(), data_as_of=ctx.db.pipeline_updated_at())
    return reply(request, ctx, document)


@router.get("/analytics/correlation", response_model=Item[Correlation], responses=documented(400))
def correlation(
    request: Request,
    ctx: Ctx,
    coin: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] | None,
        Query(max_length=MAX_COINS, description="Coins (repeat; default: every active priced coin)."),
    ] = None,
    start: Annotated[IsoDay | None, Query(description="First day (default: 365 days before end).")] = None,
    end: EndDay = None,
) -> Response:
    """Pearson correlation of the coins' daily returns over [start, end] (`analytics.return_correlation`);
    null for a pair with fewer than 10 shared days."""
    if coin:
        coins = [ctx.coin(name, location="query") for name in coin]
    else:
        coins = [c for c in ctx.db.get_coins(active_only=True) if c.coingecko_id]
    ids = list(dict.fromkeys(ctx.price_id(c) for c in coins))
    end = day_param(end, "end") or gapfill.coverage_window(ctx.settings)[1]
    start = day_param(start, "start") or end - timedelta(days=364)
    check_order(start, end)
    if (end - start).days >= MAX_SPAN_DAYS:
        raise bad_parameter("start", f"the range may span at most {MAX_SPAN_DAYS} days")
    matrix = analytics.return_correlation(ctx.db, ids, start, end).reindex(index=ids, columns=ids)
    values = [[None if math.isnan(float(v)) else float(v) for v in row] for row in matrix.to_numpy()]
    document = Item[Correlation](
        data=Correlation(coins=ids, start=start, end=end, matrix=values),
        data_as_of=ctx.db.daily_stats_updated_at(ids, start, end) if ids else None,
    )
    return reply(request, ctx, document)


__all__ = ["router"]
