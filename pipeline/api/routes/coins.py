"""Coins, and per coin its prices: daily USD snapshots, price points in any quote, candles, the latest
price, and the analytics read from the rollups (daily returns and drawdown, chain days)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Query, Request, Response

from pipeline import rollups
from pipeline.api import convert
from pipeline.api.context import EARLIEST, Ctx, IsoDay, IsoTime, check_order, day_param, utc_time
from pipeline.api.models import Candle, ChainDay, Coin, DailyPrice, DailyStats, Item, Page, PricePoint
from pipeline.api.pagination import (
    DEFAULT_LIMIT,
    CursorParam,
    Limit,
    decode_cursor,
    encode_cursor,
    from_micros,
    micros,
)
from pipeline.api.problems import not_found
from pipeline.api.routes.common import DAY_RANGE, TIME_RANGE, CoinPath, documented, midnight, reply
from pipeline.api.series import MICRO, Grid, series_page
from pipeline.schemas import PricePointData

router = APIRouter(tags=["coins and prices"])
T = TypeVar("T")

Quote = Annotated[
    str,
    Query(pattern=r"^[A-Za-z0-9]{2,10}$", description="A quote currency (usd, or one of QUOTE_CURRENCIES)."),
]
Granularity = Annotated[
    Literal["5m", "hourly", "daily"],
    Query(description="`5m` every sample, `hourly` the last of each hour, `daily` the 00:00 UTC snapshots."),
]
Interval = Annotated[
    Literal["1h", "4h", "1d", "1w"], Query(description="Candle size; weeks start on Monday.")
]
FirstDay = Annotated[IsoDay | None, Query(description="First day (default: `limit` days before end).")]
LastDay = Annotated[
    IsoDay | None, Query(description="Last day, included (default: today, pinned by the cursor).")
]
GRIDS: dict[str, Grid] = {
    "5m": Grid(timedelta(minutes=5)),
    "hourly": Grid(timedelta(hours=1), bucketed=True),
    "daily": Grid(timedelta(days=1), bucketed=True),
}
Start = Annotated[
    IsoTime | None,
    Query(description="First instant, ISO 8601, UTC without an offset (default: `limit` steps before end)."),
]
End = Annotated[
    IsoTime | None, Query(description="Last instant, included (default: now, pinned by the cursor).")
]


@router.get("/coins", response_model=Page[Coin], responses=documented(400))
def list_coins(
    request: Request, ctx: Ctx, limit: Limit = DEFAULT_LIMIT, cursor: CursorParam = None
) -> Response:
    """The coins the pipeline knows, by symbol."""
    coins = sorted(ctx.db.get_coins(), key=lambda c: c.symbol)  # the order the cursor compares in
    if cursor:
        after = decode_cursor(cursor, "coins", {}, [str]).key[0]
        coins = [c for c in coins if c.symbol > str(after)]
    page, more = coins[:limit], len(coins) > limit
    document = Page[Coin](
        data=[convert.coin(c) for c in page],
        next_cursor=encode_cursor("coins", {}, [page[-1].symbol]) if more else None,
        limit=limit,
        data_as_of=ctx.db.coins_updated_at(),
    )
    return reply(request, ctx, document)


@router.get("/coins/{coin}", response_model=Item[Coin], responses=documented(400, 404))
def get_coin(request: Request, ctx: Ctx, coin: CoinPath) -> Response:
    """One coin, by symbol, CoinGecko id or chain."""
    symbol = ctx.coin(coin).symbol  # resolved from the cached names; its bookmarks are read fresh
    found = next((c for c in ctx.db.get_coins() if c.symbol == symbol), None)
    if found is None:  # removed a moment ago
        raise not_found("coin", f"no coin {coin!r} is known")
    return reply(request, ctx, Item[Coin](data=convert.coin(found), data_as_of=ctx.db.coins_updated_at()))


@router.get("/coins/{coin}/prices/daily", response_model=Page[DailyPrice], responses=documented(400, 404))
def daily_prices(
    request: Request,
    ctx: Ctx,
    coin: CoinPath,
    start: Annotated[IsoDay | None, Query(description="First day (default: the oldest stored).")] = None,
    end: Annotated[
        IsoDay | None, Query(description="Last day, included (default: the newest stored).")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Response:
    """A coin's daily USD snapshots (the seed's `market_prices`), newest first."""
    found = ctx.coin(coin)
    coin_id = ctx.price_id(found)
    start, end = day_param(start, "start"), day_param(end, "end")
    check_order(start, end)
    scope = {"coin": found.symbol, "start": start, "end": end}
    upper = end
    if cursor:
        last = decode_cursor(cursor, "daily-prices", scope, [DAY_RANGE]).key[0]
        upper = date.fromordinal(int(last)) - timedelta(days=1)
    rows = ctx.db.get_market_prices(coin_id=coin_id, start_date=start, end_date=upper, limit=limit + 1)
    page, more = rows[:limit], len(rows) > limit
    document = Page[DailyPrice](
        data=[convert.daily_price(p) for p in page],
        next_cursor=(
            encode_cursor("daily-prices", scope, [page[-1].price_date.toordinal()]) if more else None
        ),
        limit=limit,
        data_as_of=(
            ctx.db.market_prices_updated_at(coin_id, page[-1].price_date, page[0].price_date)
            if page
            else None
        ),
    )
    return reply(request, ctx, document)


def _window(
    cursor: str | None,
    resource: str,
    scope: Mapping[str, object],
    grid: Grid,
    start: datetime | None,
    end: datetime | None,
    limit: int,
) -> tuple[datetime, datetime]:
    """Where a series page starts and the pinned end of the series: from the cursor, or (first page) the
    parameters, `end` defaulting to now and `start` to about `limit` steps before it."""
    if cursor:
        found = decode_cursor(cursor, resource, scope, [TIME_RANGE], pin=TIME_RANGE)
        return from_micros(int(found.key[0])), from_micros(int(found.pin or 0))
    upper = end or datetime.now(UTC)
    if start is None:
        start = max(grid.floor(upper) - grid.step * (limit - 1), EARLIEST)
    return start, upper


def _series(
    request: Request,
    ctx: Ctx,
    *,
    resource: str,
    scope: Mapping[str, object],
    grid: Grid,
    bounds: tuple[datetime, datetime],
    limit: int,
    fetch: Callable[[datetime, datetime], Sequence[T]],
    stamp: Callable[[T], datetime],
    page_type: type[Page[Any]],
    convert_one: Callable[[T], Any],
    as_of: Callable[[T, T], datetime | None],
) -> Response:
    """One page of a time series as the response."""
    position, upper = bounds
    items, resume = series_page(fetch, stamp, grid, start=position, end=upper, limit=limit)
    document = page_type(
        data=[convert_one(item) for item in items],
        next_cursor=encode_cursor(resource, scope, [micros(resume)], pin=micros(upper)) if resume else None,
        limit=limit,
        data_as_of=as_of(items[0], items[-1]) if items else None,
    )
    return reply(request, ctx, document)


@router.get("/coins/{coin}/prices/points", response_model=Page[PricePoint], responses=documented(400, 404))
def price_points(
    request: Request,
    ctx: Ctx,
    coin: CoinPath,
    quote: Quote = "usd",
    granularity: Granularity = "hourly",
    start: Start = None,
    end: End = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Response:
    """A coin's price points in a quote currency, oldest first (`db.get_price_points`)."""
    found = ctx.coin(coin)
    coin_id, quote = ctx.price_id(found), ctx.check_quote(quote)
    start, end = utc_time(start, "start"), utc_time(end, "end")
    check_order(start, end)
    grid = GRIDS[granularity]
    scope = {"coin": found.symbol, "quote": quote, "granularity": granularity, "start": start, "end": end}
    usd_daily = granularity == "daily" and quote == "usd"

    def fetch(low: datetime, high: datetime) -> list[PricePointData]:
        # The daily USD points are the seed's market_prices, read by day: a whole day up to `high`.
        until = high + MICRO if usd_daily else high
        return ctx.db.get_price_points(
            coin_id=coin_id, start=low, end=until, quote=quote, granularity=granularity
        )

    def as_of(first: PricePointData, last: PricePointData) -> datetime | None:
        low, high = grid.floor(first.ts), last.ts
        if usd_daily:
            return ctx.db.market_prices_updated_at(coin_id, low.date(), high.date())
        return ctx.db.price_points_updated_at(coin_id, quote, low, high)

    return _series(
        request, ctx, resource="price-points", scope=scope, grid=grid,
        bounds=_window(cursor, "price-points", scope, grid, start, end, limit), limit=limit,
        fetch=fetch, stamp=lambda p: p.ts, page_type=Page[PricePoint], convert_one=convert.price_point,
        as_of=as_of,
    )  # fmt: skip


@router.get(
    "/coins/{coin}/prices/latest", response_model=Item[PricePoint | None], responses=documented(400, 404)
)
def latest_price(request: Request, ctx: Ctx, coin: CoinPath, quote: Quote = "usd") -> Response:
    """A coin's newest intraday price point in a quote (null when none is stored)."""
    found = ctx.coin(coin)
    coin_id, quote = ctx.price_id(found), ctx.check_quote(quote)
    point = ctx.db.get_latest_price(coin_id, quote)
    as_of = ctx.db.price_points_updated_at(coin_id, quote, point.ts, point.ts) if point else None
    document = Item[PricePoint | None](data=convert.price_point(point) if point else None, data_as_of=as_of)
    return reply(request, ctx, document)


@router.get("/coins/{coin}/candles", response_model=Page[Candle], responses=documented(400, 404))
def candles(
    request: Request,
    ctx: Ctx,
    coin: CoinPath,
    quote: Quote = "usd",
    interval: Interval = "1d",
    start: Start = None,
    end: End = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Response:
    """A coin's OHLC candles of an interval whose start lies in [start, end], oldest first."""
    found = ctx.coin(coin)
    coin_id, quote = ctx.price_id(found), ctx.check_quote(quote)
    start, end = utc_time(start, "start"), utc_time(end, "end")
    check_order(start, end)
    grid = Grid(rollups.INTERVALS[interval])
    scope = {"coin": found.symbol, "quote": quote, "interval": interval, "start": start, "end": end}
    return _series(
        request, ctx, resource="candles", scope=scope, grid=grid,
        bounds=_window(cursor, "candles", scope, grid, start, end, limit), limit=limit,
        fetch=lambda low, high: ctx.db.get_candles(
            coin_id=coin_id, interval=interval, start=low, end=high, quote=quote
        ),
        stamp=lambda c: c.start, page_type=Page[Candle], convert_one=convert.candle,
        as_of=lambda first, last: ctx.db.candles_updated_at(
            coin_id, quote, interval, first.start, last.start
        ),
    )  # fmt: skip


def _day_bounds(start: date | None, end: date | None) -> tuple[datetime | None, datetime | None]:
    start, end = day_param(start, "start"), day_param(end, "end")
    check_order(start, end)
    return (midnight(start) if start else None), (midnight(end) if end else None)


DAY_GRID = Grid(timedelta(days=1), bucketed=True)


@router.get("/coins/{coin}/analytics/daily", response_model=Page[DailyStats], responses=documented(400, 404))
def daily_analytics(
    request: Request,
    ctx: Ctx,
    coin: CoinPath,
    start: FirstDay = None,
    end: LastDay = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Response:
    """A coin's daily return, 30-day volatility, running peak and drawdown of its USD close, oldest first
    (`db.get_daily_price_stats`)."""
    found = ctx.coin(coin)
    coin_id = ctx.price_id(found)
    low, high = _day_bounds(start, end)
    scope = {"coin": found.symbol, "start": low, "end": high}
    return _series(
        request, ctx, resource="daily-analytics", scope=scope, grid=DAY_GRID,
        bounds=_window(cursor, "daily-analytics", scope, DAY_GRID, low, high or _today(), limit),
        limit=limit,
        fetch=lambda lo, hi: ctx.db.get_daily_price_stats([coin_id], lo.date(), hi.date()),
        stamp=lambda s: midnight(s.day), page_type=Page[DailyStats], convert_one=convert.daily_stats,
        as_of=lambda first, last: ctx.db.daily_stats_updated_at([coin_id], first.day, last.day),
    )  # fmt: skip


@router.get(
    "/coins/{coin}/analytics/chain-days", response_model=Page[ChainDay], responses=documented(400, 404)
)
def chain_days(
    request: Request,
    ctx: Ctx,
    coin: CoinPath,
    start: FirstDay = None,
    end: LastDay = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Response:
    """A chain's blocks, transactions, fees, mean block interval and size per UTC day, oldest first
    (`db.get_chain_daily_stats`)."""
    found = ctx.coin(coin)
    symbol = ctx.chain(found)
    low, high = _day_bounds(start, end)
    scope = {"coin": found.symbol, "start": low, "end": high}
    return _series(
        request, ctx, resource="chain-days", scope=scope, grid=DAY_GRID,
        bounds=_window(cursor, "chain-days", scope, DAY_GRID, low, high or _today(), limit), limit=limit,
        fetch=lambda lo, hi: ctx.db.get_chain_daily_stats(symbol, lo.date(), hi.date()),
        stamp=lambda s: midnight(s.day), page_type=Page[ChainDay], convert_one=convert.chain_day,
        as_of=lambda first, last: ctx.db.chain_days_updated_at(symbol, first.day, last.day),
    )  # fmt: skip


def _today() -> datetime:
    return midnight(datetime.now(UTC).date())


__all__ = ["router"]
